import { afterEach, describe, expect, it } from 'vitest';
import { topologyFor } from '../../src/amqp/topology.js';
import type { Incoming, Outcome } from '../../src/worker/apply-batch.js';
import { Worker } from '../../src/worker/worker.js';
import { FakeBroker } from '../helpers/fake-amqp.js';
import { recordingLogger, txBody, until } from './worker-harness.js';

// Ordered mode: when a message of a batch is handed back to RabbitMQ (the database went away during its
// in-place retry), what came after it in its batch and in the buffer goes back behind it, and nothing
// of the partition is committed before it (found by a review: they used to be committed first).

const topology = topologyFor('unit', [20, 40], 1);
const PARTITION = topology.ordered!.partitionQueues[0]!;
const idOf = (i: Incoming) => (i.decoded.ok ? i.decoded.message.id : 'invalid');
const applied = (i: Incoming): Outcome =>
  i.decoded.ok
    ? { kind: 'applied', id: i.decoded.message.id, message: i.decoded.message, balanceAfterMinor: 0n }
    : { kind: 'rejected', id: idOf(i), reason: 'invalid_message', detail: 'unit', recorded: true };
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:3306'), { code: 'ECONNREFUSED' });
const deadlock = () => Object.assign(new Error('Deadlock found when trying to get lock'), { errno: 1213, code: 'ER_LOCK_DEADLOCK' });

let worker: Worker | null = null;
afterEach(async () => {
  await worker?.close();
  worker = null;
});

/** One ordered worker holding partition 0 over a fake broker; `apply` sees every call of applyBatch. */
async function orderedWorker(apply: (items: readonly Incoming[], call: number) => Outcome[], accounts = [1, 1, 1, 1, 1]) {
  const broker = new FakeBroker();
  const { log } = recordingLogger();
  const committed: string[] = [];
  let calls = 0;
  worker = new Worker(
    {
      workerId: 'w-ordered',
      amqpUrl: 'amqp://fake',
      topology,
      prefetchCount: 100,
      batchSizeMax: 3,
      batchWaitMs: 20,
      transactionsMax: 1,
      attemptsMax: 5,
      shutdownDeadlineMs: 1_000,
      leaseTiming: { heartbeatMs: 50, leaseMs: 5_000 },
    },
    {
      // A throw in the executor (an outage, a deadlock) rejects the call, as the database's would.
      applyBatch: (items) =>
        new Promise<Outcome[]>((resolve) => {
          const outcomes = apply(items, ++calls);
          outcomes.forEach((o, i) => {
            if (o.kind === 'applied') committed.push(idOf(items[i]!));
          });
          resolve(outcomes);
        }),
      pingDatabase: () => Promise.resolve(),
      // The fake broker has queues, not exchanges: skip declaring the ordered topology.
      connect: (options) => broker.connect({ ...options, setup: () => Promise.resolve() }),
      partitionLeases: {
        heartbeat: () => Promise.resolve({ liveWorkers: ['w-ordered'], held: [0], free: [] }),
        claim: () => Promise.resolve(true),
        release: () => Promise.resolve(),
        leave: () => Promise.resolve(),
      },
    },
    log,
  );
  await worker.start();
  // Five messages of the partition (one account by default): a batch of three, two more in the buffer behind it.
  const ids: string[] = [];
  for (const account of accounts) {
    const body = txBody(account);
    ids.push((JSON.parse(body.toString()) as { id: string }).id);
    broker.enqueue(PARTITION, body, { contentType: 'application/json', headers: { 'x-txsim-account': String(account) } });
  }
  return { broker, committed, ids };
}

describe('ordered worker: a message handed back takes what follows it back too', () => {
  it('a deferred capture whose in-place retry meets a database outage: the held messages are not committed ahead of it', async () => {
    let outage = false;
    const w = await orderedWorker((items, call) => {
      if (call === 1)
        return items.map((it, k) =>
          k === 0 ? { kind: 'deferred', id: idOf(it), detail: 'authorization pending' } : { kind: 'held', id: idOf(it) },
        );
      if (call === 2) {
        outage = true;
        throw refused();
      }
      return items.map(applied);
    });
    await until(() => w.committed.length >= 5, 'all five committed', 8_000);
    expect(outage).toBe(true);
    expect(w.committed).toEqual(w.ids);
  });

  it('a batch that fails, then the first message of its one-by-one fallback meets an outage: the rest waits behind it', async () => {
    const w = await orderedWorker((items, call) => {
      if (call === 1) throw deadlock();
      if (call === 2) throw refused();
      return items.map(applied);
    });
    await until(() => w.committed.length >= 5, 'all five committed', 8_000);
    expect(w.committed).toEqual(w.ids);
  });

  it('a reject whose publish fails while a capture ahead of it retries in place: nothing of the batch is stranded or committed out of order', async () => {
    // Batch [capture of account 1 (deferred), deposit of account 1 (held behind it), bad message of account 2 (rejected)].
    const w = await orderedWorker(
      (items, call) =>
        call === 1
          ? [
              { kind: 'deferred', id: idOf(items[0]!), detail: 'authorization pending' },
              { kind: 'held', id: idOf(items[1]!) },
              { kind: 'rejected', id: idOf(items[2]!), reason: 'insufficient_funds', detail: 'unit', recorded: true },
            ]
          : items.map(applied),
      [1, 1, 2, 1, 1],
    );
    const publish = () => w.broker.channels.find((c) => c.confirm && !c.closed);
    await until(() => publish() !== undefined, 'the publish channel');
    publish()!.confirmMode = 'manual';
    // The errors-queue publish of the reject is nacked by the broker: the reject goes back to the queue.
    await until(() => publish()!.published.length > 0, 'the reject publish');
    publish()!.confirmAll(new Error('nacked by the broker'));
    publish()!.confirmMode = 'auto';
    await until(() => w.ids.every((id) => w.committed.includes(id)), 'every message committed', 8_000);
    await until(
      () => w.broker.queue(PARTITION).length === 0 && w.broker.channels.every((c) => c.unsettledCount === 0),
      'nothing left unsettled',
    );
    // Each message's first commit comes in the partition's order.
    const firstCommits = w.ids.map((id) => w.committed.indexOf(id));
    expect(firstCommits).toEqual([...firstCommits].sort((a, b) => a - b));
  });
});
