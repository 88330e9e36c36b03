import { describe, expect, it } from 'vitest';
import { AckTracker } from '../../src/amqp/ack-tracker.js';

function tracker() {
  const frames: string[] = [];
  const t = new AckTracker({
    ack: (tag, multiple) => frames.push(`ack ${tag}${multiple ? ' multiple' : ''}`),
    nack: (tag) => frames.push(`nack ${tag}`),
  });
  return { t, frames };
}

describe('AckTracker', () => {
  it('acks in one frame everything finished in order', () => {
    const { t, frames } = tracker();
    for (const tag of [1, 2, 3]) t.delivered(tag);
    t.ack(1);
    t.ack(2);
    t.ack(3);
    expect(frames).toEqual(['ack 1 multiple', 'ack 2 multiple', 'ack 3 multiple']);
    expect(t.pending).toBe(0);
  });

  it('never acks past an unfinished delivery: a later batch waits for the earlier one', () => {
    const { t, frames } = tracker();
    for (let tag = 1; tag <= 6; tag++) t.delivered(tag);
    t.ack(4);
    t.ack(5);
    t.ack(6);
    expect(frames).toEqual([]);
    t.ack(2);
    t.ack(3);
    expect(frames).toEqual([]);
    t.ack(1);
    expect(frames).toEqual(['ack 6 multiple']);
    expect(t.pending).toBe(0);
  });

  it('a requeued delivery is nacked alone and does not block later acks', () => {
    const { t, frames } = tracker();
    for (let tag = 1; tag <= 4; tag++) t.delivered(tag);
    t.ack(1);
    t.requeue(2);
    t.ack(4);
    expect(frames).toEqual(['ack 1 multiple', 'nack 2']);
    t.ack(3);
    expect(frames).toEqual(['ack 1 multiple', 'nack 2', 'ack 4 multiple']);
  });

  it('does not send an ack when only requeued deliveries moved the frontier', () => {
    const { t, frames } = tracker();
    t.delivered(1);
    t.delivered(2);
    t.requeue(1);
    t.requeue(2);
    expect(frames).toEqual(['nack 1', 'nack 2']);
    expect(t.pending).toBe(0);
  });

  it('stays correct across compaction of a long stream', () => {
    const { t, frames } = tracker();
    for (let tag = 1; tag <= 20_000; tag++) {
      t.delivered(tag);
      if (tag % 2 === 0) {
        t.ack(tag);
        t.ack(tag - 1);
      }
    }
    expect(frames.at(-1)).toBe('ack 20000 multiple');
    expect(t.pending).toBe(0);
  });
});
