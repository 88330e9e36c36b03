import type { Channel } from 'amqplib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import { rebindingStatsQueue } from '../../src/watch/stats-subscriber.js';

/**
 * The periodic bind that keeps a long-running stats reader (watch, the dashboard) hearing the
 * workers after its namespace's stats exchange was deleted and declared again (a reset): only the
 * queue of the channel in use is bound, a failed bind is left to the channel's own failure path.
 */

/** A channel that records its binds; `bindQueue` fails once `exchangeGone` is set (the broker's 404). */
function fakeChannel(queue: string) {
  const binds: string[] = [];
  const state = { exchangeGone: false };
  const channel = {
    checkExchange: () => Promise.resolve({}),
    assertQueue: () => Promise.resolve({ queue, messageCount: 0, consumerCount: 0 }),
    bindQueue: (q: string, exchange: string) => {
      binds.push(`${q}→${exchange}`);
      return state.exchangeGone ? Promise.reject(Object.assign(new Error('NOT_FOUND - no exchange'), { code: 404 })) : Promise.resolve({});
    },
  };
  return { channel: channel as unknown as Channel, binds, state };
}

const log = createLogger('silent', { pretty: false });

beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

describe('rebindingStatsQueue', () => {
  it('binds the current channel’s queue to the exchange again every interval, until stopped', async () => {
    const a = fakeChannel('amq.gen-a');
    const managed = { channel: a.channel as Channel | null };
    const sub = rebindingStatsQueue(managed, 'ns.stats', log, 1_000);
    expect(await sub.queue(a.channel)).toBe('amq.gen-a');
    expect(a.binds).toEqual(['amq.gen-a→ns.stats']);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(a.binds).toHaveLength(4);
    sub.stop();
    await vi.advanceTimersByTimeAsync(3_000);
    expect(a.binds).toHaveLength(4);
  });

  it('leaves a replaced channel’s queue alone, and binds nothing while no channel is open', async () => {
    const a = fakeChannel('amq.gen-a');
    const b = fakeChannel('amq.gen-b');
    const managed = { channel: a.channel as Channel | null };
    const sub = rebindingStatsQueue(managed, 'ns.stats', log, 1_000);
    await sub.queue(a.channel);
    managed.channel = null;
    await vi.advanceTimersByTimeAsync(2_000);
    expect(a.binds).toHaveLength(1);
    // A new channel, not yet subscribed: the old queue is gone with the old channel, nothing to bind.
    managed.channel = b.channel;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(a.binds).toHaveLength(1);
    await sub.queue(b.channel);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(b.binds).toEqual(['amq.gen-b→ns.stats', 'amq.gen-b→ns.stats']);
    sub.stop();
  });

  it('takes a failed bind (the exchange is gone) without throwing, and goes on binding', async () => {
    const a = fakeChannel('amq.gen-a');
    const sub = rebindingStatsQueue({ channel: a.channel }, 'ns.stats', log, 1_000);
    await sub.queue(a.channel);
    a.state.exchangeGone = true;
    await vi.advanceTimersByTimeAsync(2_000);
    expect(a.binds).toHaveLength(3);
    sub.stop();
  });
});
