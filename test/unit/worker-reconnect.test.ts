import { afterEach, describe, expect, it } from 'vitest';
import { appliedAll, gate, startWorkerHarness, topology, until, type Harness } from './worker-harness.js';

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

describe('worker ack frontier across a reconnect', () => {
  it('never acks a delivery of the old channel, on the old channel or on the new one', async () => {
    const firstBatch = gate();
    const redelivered = gate();
    h = await startWorkerHarness({
      worker: { batchSizeMax: 3, batchWaitMs: 0, transactionsMax: 2 },
      apply: async (items, call) => {
        // The first batch is still "in the database" when the connection drops.
        if (call === 1) await firstBatch.promise;
        // The redelivered ones are held too, so the old batch commits while they are unacked.
        else await redelivered.promise;
        return appliedAll(items);
      },
    });
    await until(() => h!.broker.consumersOf(topology.processQueue).length === 1, 'the consumer');
    const oldChannel = h.broker.consumersOf(topology.processQueue)[0]!;
    h.send(3);
    await until(() => h!.calls.length === 1, 'the first batch in flight');

    h.broker.disconnect();
    await h.broker.reconnect();
    await until(() => h!.broker.consumersOf(topology.processQueue).length === 1, 'the new consumer');
    const newChannel = h.broker.consumersOf(topology.processQueue)[0]!;
    expect(newChannel).not.toBe(oldChannel);
    // RabbitMQ redelivers the three on the new channel (tags 1..3 again, the same numbers as before).
    await until(() => h!.calls.length >= 2, 'the redeliveries in flight');

    // Now the old batch commits: its acks must go nowhere — not to the old channel, and not to
    // the new one, where its tags would settle the redeliveries still in flight.
    firstBatch.open();
    const oldBatch = h.calls[0]!.length;
    await until(() => h!.worker.metrics.applied === oldBatch, 'the old batch finished');
    await new Promise((r) => setTimeout(r, 50));
    expect(oldChannel.settlements).toEqual([]);
    expect(newChannel.settlements).toEqual([]);
    redelivered.open();
    await until(() => newChannel.ackedTags().length === 3, 'the redeliveries acked');
    expect(newChannel.settlements.every((s) => !s.afterClose)).toBe(true);
    expect(newChannel.ackedTags()).toEqual([1, 2, 3]);
    expect(newChannel.closed).toBe(false);
    expect(h.broker.acked).toHaveLength(3);
    expect(h.messages()).toContain('worker consuming');
  });

  it('drops buffered deliveries of the old channel instead of applying them', async () => {
    h = await startWorkerHarness({ worker: { batchSizeMax: 10, batchWaitMs: 10_000 } });
    await until(() => h!.broker.consumersOf(topology.processQueue).length === 1, 'the consumer');
    h.send(4);
    await until(() => h!.worker.metrics.inFlight === 4, 'four buffered');
    h.broker.disconnect();
    expect(h.worker.metrics.inFlight).toBe(0);
    expect(h.messages('warn')).toContain('channel gone; dropped buffered deliveries (they will be redelivered)');
    await h.broker.reconnect();
    await until(() => h!.worker.metrics.inFlight === 4, 'redelivered on the new channel');
    expect(h.calls).toHaveLength(0);
  });
});
