import { afterEach, describe, expect, it } from 'vitest';
import { appliedAll, gate, sleep, startWorkerHarness, until, type Harness } from './worker-harness.js';

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

describe('worker batching', () => {
  it('applies full batches at once, up to transactionsMax of them together', async () => {
    const held = gate();
    h = await startWorkerHarness({
      worker: { batchSizeMax: 5, batchWaitMs: 10_000, transactionsMax: 2, prefetchCount: 100 },
      apply: async (items) => {
        await held.promise;
        return appliedAll(items);
      },
    });
    h.send(20);
    // Full batches do not wait for batchWaitMs (10 s here): two start at once, the rest wait for room.
    await until(() => h!.calls.length === 2, 'two full batches');
    await sleep(50);
    expect(h.calls.map((c) => c.length)).toEqual([5, 5]);
    expect(h.running.now).toBe(2);
    // In flight: every delivery not yet settled, the ten in the running batches and the ten waiting.
    expect(h.worker.metrics.inFlight).toBe(20);
    held.open();
    await until(() => h!.broker.acked.length === 20, 'all 20 acked');
    expect(h.calls.map((c) => c.length)).toEqual([5, 5, 5, 5]);
    expect(h.running.max).toBe(2);
    await until(() => h!.worker.metrics.inFlight === 0, 'nothing in flight');
  });

  it('a partial batch waits batchWaitMs for more messages before it is applied', async () => {
    // A wait far longer than the 150 ms sleep, so a stalled test machine still sends the two late ones in time.
    h = await startWorkerHarness({ worker: { batchSizeMax: 10, batchWaitMs: 1_000 } });
    const sentAtMs = Date.now();
    h.send(3);
    await sleep(150);
    expect(h.calls).toHaveLength(0);
    h.send(2);
    await until(() => h!.calls.length === 1, 'the partial batch', 5_000);
    expect(Date.now() - sentAtMs).toBeGreaterThanOrEqual(990);
    // The two late messages joined the waiting batch instead of going out on their own.
    expect(h.calls[0]).toHaveLength(5);
    await until(() => h!.broker.acked.length === 5, 'all acked');
  });

  it('only one partial batch is in flight: the next ones gather behind it', async () => {
    const first = gate();
    h = await startWorkerHarness({
      worker: { batchSizeMax: 10, batchWaitMs: 20, transactionsMax: 4 },
      apply: async (items, call) => {
        if (call === 1) await first.promise;
        return appliedAll(items);
      },
    });
    h.send(3);
    await until(() => h!.calls.length === 1, 'the first partial batch');
    h.send(3);
    await sleep(100);
    h.send(2);
    await sleep(100);
    // transactionsMax would allow more, but partial batches go one at a time.
    expect(h.calls).toHaveLength(1);
    first.open();
    await until(() => h!.broker.acked.length === 8, 'all acked');
    expect(h.calls.map((c) => c.length)).toEqual([3, 5]);
  });
});
