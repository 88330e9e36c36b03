import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import type { InspectReport } from '../../src/dead-letters/inspect-errors.js';
import type { ReplayReport } from '../../src/dead-letters/replay-dead.js';
import { findFailures } from '../../src/db/transaction-failures.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { expectValidOutput } from '../helpers/output-schema.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { peekQueue, runTxsim, startWorker, waitFor, type WorkerProcess, queueDepth } from '../helpers/txsim.js';

/**
 * `txsim replay-dead` against messages a real worker parked (their account row was locked from
 * outside until every attempt timed out): replayed messages leave the dead queue, come back
 * through the transactions exchange with a fresh attempt count, and get applied.
 */

let ns: TestNamespace;
let worker: WorkerProcess;
const parked = [1, 2, 3].map((i) => txBody({ accountId: 2, amountMinor: 100 * i }));

const depth = (queue: string) => queueDepth(ns.amqp, queue);

/**
 * Waits for the dead queue to hold `n`: the CLIs read it by getting messages and putting back what they
 * leave, and a put-back goes through Raft, so the count lags the command's exit. A wrong count never settles on `n`.
 */
const deadDepthBecomes = (n: number) =>
  waitFor(async () => (await depth(ns.topology.deadQueue)) === n, 10_000, `the dead queue to hold ${n}`);

/** Puts a message in the dead queue as a worker parks one after 5 attempts, with `routingKey` as its original routing key. */
async function parkByHand(body: Record<string, unknown>, routingKey: string): Promise<void> {
  const channel = await ns.amqp.createConfirmChannel();
  channel.sendToQueue(ns.topology.deadQueue, Buffer.from(JSON.stringify(body)), {
    persistent: true,
    contentType: 'application/json',
    messageId: body.id as string,
    headers: {
      [HEADERS.attempts]: 5,
      [HEADERS.lastError]: 'ER_LOCK_DEADLOCK: Deadlock found',
      [HEADERS.originalRoutingKey]: routingKey,
    },
  });
  await channel.waitForConfirms();
  await channel.close();
}

async function outcome(id: string) {
  return ns.db('transactions').where('id', id).first('status', 'attempts', 'worker_id');
}

async function balance(accountId: number): Promise<bigint> {
  return BigInt((await ns.db('accounts').where('id', accountId).first('balance_minor')).balance_minor);
}

beforeAll(async () => {
  ns = await createTestNamespace('replay');
  expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
  await ns.seed(2, { openingBalanceMinor: 10_000n });
  worker = startWorker('w-replay', ns.env, ['--batch-size', '1', '--max-attempts', '2', '--lock-wait-timeout', '1']);
  const holder = await ns.db.transaction();
  try {
    await holder.raw('SELECT id FROM accounts WHERE id = 2 FOR UPDATE');
    await publishRaw(
      ns.amqp,
      ns.topology,
      parked.map((body) => ({ body })),
    );
    await waitFor(async () => (await depth(ns.topology.deadQueue)) === 3, 60_000, 'three parked messages');
  } finally {
    await holder.rollback();
  }
});

afterAll(async () => {
  await worker?.stop();
  await ns?.cleanup();
});

describe('parked messages', () => {
  it('inspect-errors --dead shows them with the last error, attempts and original routing key', async () => {
    const r = await runTxsim(['inspect-errors', '--dead', '--json'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as InspectReport;
    expect(report).toMatchObject({ kind: 'dead', depth: 3, removed: 0 });
    expect(report.messages.map((m) => m.id).sort()).toEqual(parked.map((b) => b.id).sort());
    for (const m of report.messages) {
      expect(m).toMatchObject({ type: 'deposit', accountId: 2, attempts: 2, workerId: 'w-replay', routingKey: 'tx.deposit' });
      expect(m.reason).toMatch(/LOCK_WAIT|1205/);
      expect(m.detail).toContain(m.reason);
    }
    expect(Object.values(report.byReason)).toEqual([3]);
    await deadDepthBecomes(3);
  });
});

describe('txsim replay-dead', () => {
  it('--id replays only that message; it is applied on a fresh first attempt', async () => {
    const target = parked[0]!.id as string;
    const r = await runTxsim(['replay-dead', '--id', target, '--json'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as ReplayReport;
    expect(report).toMatchObject({
      queue: ns.topology.deadQueue,
      exchange: ns.topology.transactionsExchange,
      replayed: [{ id: target, routingKey: 'tx.deposit' }],
      failed: [],
      notFound: [],
    });
    await waitFor(async () => (await outcome(target))?.status === 'applied', 20_000, 'the replayed message to apply');
    // The attempt count was reset by the replay: this is attempt 1, not 3.
    expect(await outcome(target)).toMatchObject({ status: 'applied', attempts: 1, worker_id: 'w-replay' });
    await deadDepthBecomes(2);
    for (const other of parked.slice(1)) expect(await outcome(other.id as string)).toBeUndefined();
    // Its record: the failed attempts, then the replay (after the attempt it was parked after).
    const records = await findFailures(ns.db, target);
    expect(records.map((f) => [f.state, f.attempt])).toEqual([
      ['retrying', 1],
      ['parked', 2],
      ['replayed', 2],
    ]);
    expect(records[2]).toMatchObject({ accountId: 2, errorCode: 'replayed', workerId: 'txsim replay-dead' });
  });

  it('an id that is not parked: exit 5, and nothing is removed', async () => {
    const r = await runTxsim(['replay-dead', '--id', randomUUID()], ns.env);
    expect(r.code).toBe(5);
    expect(r.stdout).toContain('replayed 0 messages');
    expect(r.stderr).toContain('not parked');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await deadDepthBecomes(2);
  });

  it('without --id replays the rest (--limit bounds it) and the books balance afterwards', async () => {
    const one = await runTxsim(['replay-dead', '--limit', '1', '--json'], ns.env);
    expect(one.code, one.stderr).toBe(0);
    expect((JSON.parse(one.stdout) as ReplayReport).replayed).toHaveLength(1);
    await deadDepthBecomes(1);
    const rest = await runTxsim(['replay-dead'], ns.env);
    expect(rest.code, rest.stderr).toBe(0);
    expect(rest.stdout).toContain(`replayed 1 message from ${ns.topology.deadQueue} to ${ns.topology.transactionsExchange}`);
    for (const body of parked)
      await waitFor(async () => (await outcome(body.id as string))?.status === 'applied', 20_000, `${String(body.id)} to apply`);
    expect(await depth(ns.topology.deadQueue)).toBe(0);
    expect(await balance(2)).toBe(10_000n + 100n + 200n + 300n);
    // Nothing went back to the dead queue or the errors queue on the way.
    const channel = await ns.amqp.createConfirmChannel();
    try {
      expect(await peekQueue(channel, ns.topology.errorsQueue)).toHaveLength(0);
    } finally {
      await channel.close();
    }
    const verify = await runTxsim(['verify'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('a message whose routing key no longer routes stays parked (exit 6), never lost', async () => {
    // Parked by hand with a routing key nothing is bound to: the republish comes back unroutable.
    const body = txBody({ accountId: 1 });
    await parkByHand(body, 'nowhere.bound');
    const r = await runTxsim(['replay-dead', '--json'], ns.env);
    expect(r.code).toBe(6);
    expect((JSON.parse(r.stdout) as ReplayReport).failed).toEqual([{ id: body.id, error: expect.stringContaining('unroutable') }]);
    await waitFor(async () => (await depth(ns.topology.deadQueue)) === 1, 5_000, 'the message to stay parked');
    expect(await outcome(body.id as string)).toBeUndefined();
  });

  it('a replayed message shows as queued until a worker takes it, then as its outcome', async () => {
    await worker.stop();
    const body = txBody({ accountId: 1, amountMinor: 4_200 });
    const id = body.id as string;
    await parkByHand(body, 'tx.deposit');
    const replay = await runTxsim(['replay-dead', '--id', id], ns.env);
    expect(replay.code, replay.stderr).toBe(0);

    const queued = await runTxsim(['tx', 'show', id, '--json'], ns.env);
    expect(queued.code, queued.stderr).toBe(0);
    expect(JSON.parse(queued.stdout)).toMatchObject({
      id,
      status: 'queued',
      attempts: null,
      failures: [{ state: 'replayed', attempt: 5 }],
    });
    expectValidOutput('tx-show', JSON.parse(queued.stdout));
    const text = await runTxsim(['tx', 'show', id], ns.env);
    expect(text.stdout).toContain(`${id}: queued — replayed from ${ns.topology.deadQueue}`);

    worker = startWorker('w-replay-2', ns.env, ['--batch-size', '1']);
    await waitFor(async () => (await outcome(id))?.status === 'applied', 30_000, 'the replayed message to apply');
    const shown = await runTxsim(['tx', 'show', id, '--json'], ns.env);
    expect(JSON.parse(shown.stdout)).toMatchObject({ status: 'applied', attempts: 1 });
  });

  // The order confirm → record → ack: a replay the database does not take leaves the message parked
  // (its copy is on its way all the same), and a later replay records it; the worker applies one copy.
  it('a replay that cannot be recorded leaves the message parked (exit 6); replayed again, it is recorded and applied once', async () => {
    const body = txBody({ accountId: 1, amountMinor: 700 });
    const id = body.id as string;
    const parkedBefore = await depth(ns.topology.deadQueue);
    await parkByHand(body, 'tx.deposit');
    await deadDepthBecomes(parkedBefore + 1);
    const balanceBefore = await balance(1);

    // The database answers, but cannot take the record (its table is away for a moment).
    await ns.db.raw('RENAME TABLE transaction_failures TO transaction_failures_away');
    let failed;
    try {
      failed = await runTxsim(['replay-dead', '--id', id, '--json'], ns.env);
    } finally {
      await ns.db.raw('RENAME TABLE transaction_failures_away TO transaction_failures');
    }
    expect(failed.code, failed.stderr).toBe(6);
    const report = JSON.parse(failed.stdout) as ReplayReport;
    expect(report.replayed).toEqual([]);
    expect(report.failed).toEqual([{ id, error: expect.stringContaining('could not be recorded') as string }]);
    // Still parked, and no record says otherwise; the confirmed copy reaches a worker all the same.
    await deadDepthBecomes(parkedBefore + 1);
    expect(await findFailures(ns.db, id)).toEqual([]);
    await waitFor(async () => (await outcome(id))?.status === 'applied', 30_000, 'the first copy to apply');

    // Replayed again: recorded, removed; the second copy is a duplicate the worker recognises by its id.
    const again = await runTxsim(['replay-dead', '--id', id, '--json'], ns.env);
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as ReplayReport).replayed.map((r) => r.id)).toEqual([id]);
    await deadDepthBecomes(parkedBefore);
    expect((await findFailures(ns.db, id)).map((f) => [f.state, f.attempt])).toEqual([['replayed', 5]]);
    await waitFor(async () => (await depth(ns.topology.processQueue)) === 0, 30_000, 'the second copy taken');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await balance(1)).toBe(balanceBefore + 700n);
    expect(await outcome(id)).toMatchObject({ status: 'applied', attempts: 1 });
  });
});
