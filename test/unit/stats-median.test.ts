import { describe, expect, it } from 'vitest';
import { medianOf } from '../../src/stats/median.js';

describe('medianOf', () => {
  it('the middle figure; for an even count the lower middle one, never an average; 0 for none', () => {
    expect(medianOf([6_914, 6_898, 6_958])).toBe(6_914);
    expect(medianOf([30, 4, 29, 61])).toBe(29);
    expect(medianOf([5])).toBe(5);
    expect(medianOf([])).toBe(0);
  });

  it('leaves its input as it was', () => {
    const values = [3, 1, 2];
    medianOf(values);
    expect(values).toEqual([3, 1, 2]);
  });
});
