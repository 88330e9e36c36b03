import { afterEach, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import { appliedAll, startWorkerHarness, topology, until, type Harness } from './worker-harness.js';

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

/** What mysql2 throws when the server is gone. */
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:3306'), { code: 'ECONNREFUSED' });

describe('worker database pause', () => {
  it('hands everything back without spending an attempt, stops consuming, and resumes by itself', async () => {
    let databaseUp = false;
    let pings = 0;
    h = await startWorkerHarness({
      worker: { batchSizeMax: 4, batchWaitMs: 0, transactionsMax: 1, prefetchCount: 8 },
      apply: (items) => (databaseUp ? Promise.resolve(appliedAll(items)) : Promise.reject(refused())),
      ping: () => {
        pings++;
        return databaseUp ? Promise.resolve() : Promise.reject(refused());
      },
    });
    const consumeChannel = () => h!.broker.consumersOf(topology.processQueue)[0];
    await until(() => consumeChannel() !== undefined, 'the consumer');
    const channel = consumeChannel()!;
    h.send(10);
    await until(() => h!.worker.metrics.paused, 'the pause');
    await until(() => channel.unsettledCount === 0 && pings >= 2, 'everything handed back, probing');
    // Consumption stopped: no consumer, every message back in the queue, nothing moved anywhere.
    expect(channel.consumers.size).toBe(0);
    expect(channel.cancelled).toHaveLength(1);
    expect(h.broker.queue(topology.processQueue)).toHaveLength(10);
    expect(h.broker.acked).toHaveLength(0);
    expect(channel.settlements.every((s) => s.kind === 'nack' && s.requeue)).toBe(true);
    expect(h.broker.channels.flatMap((c) => c.published)).toHaveLength(0);
    expect(h.worker.metrics.retried + h.worker.metrics.parked).toBe(0);
    // Nothing held while paused: the in-flight gauge counts no handed-back delivery.
    expect(h.worker.metrics.inFlight).toBe(0);
    expect(h.messages('error')).toContain('database unavailable; pausing consumption');

    databaseUp = true;
    await until(() => h!.broker.acked.length === 10, 'all applied after the database came back', 5_000);
    expect(h.worker.metrics.paused).toBe(false);
    expect(channel.consumers.size).toBe(1);
    expect(h.messages()).toContain('database back; resuming consumption');
    // No attempt was spent: every message came back with its attempt header untouched.
    const applied = h.calls.slice(-3).flat();
    expect(applied.every((item) => item.attempt === 1)).toBe(true);
    expect(h.broker.acked.every((m) => m.properties.headers?.[HEADERS.attempts] === undefined)).toBe(true);
  });
});
