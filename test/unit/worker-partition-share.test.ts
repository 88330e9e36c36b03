import { describe, expect, it } from 'vitest';
import { fairShare } from '../../src/worker/partition-leases.js';

describe('fairShare (the partitions each live worker holds)', () => {
  const shares = (partitions: number, workers: string[]) => workers.map((w) => fairShare(partitions, workers, w));

  it('adds up to the partition count, every worker within one of the others', () => {
    for (let partitions = 1; partitions <= 16; partitions++) {
      for (let live = 1; live <= 6; live++) {
        const workers = Array.from({ length: live }, (_, i) => `w${i}`);
        const s = shares(partitions, workers);
        expect(s.reduce((a, b) => a + b, 0)).toBe(partitions);
        expect(Math.max(...s) - Math.min(...s)).toBeLessThanOrEqual(1);
      }
    }
  });

  it('gives 4 partitions over 3 workers as 2 + 1 + 1 (ceil for everyone would leave one with none)', () => {
    expect(shares(4, ['a', 'b', 'c'])).toEqual([2, 1, 1]);
    expect(shares(4, ['a', 'b'])).toEqual([2, 2]);
    expect(shares(4, ['a'])).toEqual([4]);
  });

  it('ranks workers by id whatever order the list is in', () => {
    expect(fairShare(5, ['c', 'a', 'b'], 'a')).toBe(2);
    expect(fairShare(5, ['c', 'a', 'b'], 'b')).toBe(2);
    expect(fairShare(5, ['c', 'a', 'b'], 'c')).toBe(1);
  });

  it('counts a worker whose own heartbeat is not listed yet', () => {
    expect(fairShare(4, ['a'], 'b')).toBe(2);
    expect(fairShare(3, [], 'a')).toBe(3);
  });

  it('leaves workers beyond the partition count with none', () => {
    expect(shares(2, ['a', 'b', 'c'])).toEqual([1, 1, 0]);
  });
});
