import { afterEach, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import type { Incoming } from '../../src/worker/apply-batch.js';
import { appliedAll, startWorkerHarness, topology, txBody, until, type Harness } from './worker-harness.js';

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

const BAD_ACCOUNT = 666;
const isBad = (item: Incoming) => item.decoded.ok && item.decoded.message.accountId === BAD_ACCOUNT;
/** What mysql2 throws for a deadlock: a system error the worker retries. */
const deadlock = () => Object.assign(new Error('Deadlock found when trying to get lock'), { errno: 1213, code: 'ER_LOCK_DEADLOCK' });

describe('worker fallback after a system error in a batch', () => {
  it('applies the batch one by one: the good messages commit, only the bad one goes to a retry queue', async () => {
    h = await startWorkerHarness({
      worker: { batchSizeMax: 5, batchWaitMs: 50, attemptsMax: 3 },
      apply: (items) => (items.some(isBad) ? Promise.reject(deadlock()) : Promise.resolve(appliedAll(items))),
    });
    h.send(2);
    h.broker.enqueue(topology.processQueue, txBody(BAD_ACCOUNT), { contentType: 'application/json' });
    h.send(2);
    await until(() => h!.broker.acked.length === 5, 'all five settled');
    expect(h.calls.map((c) => c.length)).toEqual([5, 1, 1, 1, 1, 1]);
    expect(h.worker.metrics.applied).toBe(4);
    expect(h.worker.metrics.retried).toBe(1);
    const published = h.broker.current!.channels.filter((c) => c.confirm).flatMap((c) => c.published);
    expect(published).toHaveLength(1);
    expect(published[0]!.routingKey).toBe(topology.retryQueues[0]!.name);
    const headers: unknown = published[0]!.options.headers;
    expect(headers).toMatchObject({ [HEADERS.attempts]: 1 });
    expect(JSON.parse(published[0]!.content.toString())).toMatchObject({ accountId: BAD_ACCOUNT });
    expect(h.messages('warn')).toContain('batch failed; applying one by one');
  });

  it('parks a message after its last attempt', async () => {
    h = await startWorkerHarness({
      worker: { batchSizeMax: 5, batchWaitMs: 0, attemptsMax: 3 },
      apply: () => Promise.reject(deadlock()),
    });
    h.send(1, { [HEADERS.attempts]: 2 });
    await until(() => h!.broker.acked.length === 1, 'settled');
    const published = h.broker.current!.channels.filter((c) => c.confirm).flatMap((c) => c.published);
    expect(published.map((p) => p.routingKey)).toEqual([topology.deadQueue]);
    expect(h.worker.metrics.parked).toBe(1);
  });
});
