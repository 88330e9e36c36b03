import { randomUUID } from 'node:crypto';
import type { GetMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import type { InspectReport } from '../../src/dead-letters/inspect-errors.js';
import { peekDeadIds } from '../../src/verify/broker-counts.js';
import { walkQueue, type Settlement } from '../../src/amqp/queue-walk.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { peekQueue, runTxsim, startWorker, waitFor, type WorkerProcess, queueDepth } from '../helpers/txsim.js';

/**
 * `txsim inspect-errors` against a real errors queue filled by a real worker: reading leaves the
 * queue exactly as it was; --ack removes exactly the messages shown.
 */

let ns: TestNamespace;
let worker: WorkerProcess;

const depth = (queue: string) => queueDepth(ns.amqp, queue);

/** Ids in the errors queue, read without removing them (the walk copies each back to the tail). */
async function idsInErrors(): Promise<string[]> {
  const channel = await ns.amqp.createConfirmChannel();
  try {
    return (await peekQueue(channel, ns.topology.errorsQueue)).map((m) => JSON.parse(m.content.toString()).id as string);
  } finally {
    await channel.close();
  }
}

/**
 * The depth once requeued messages are back: returns to a quorum queue go through Raft, so the
 * count is polled until it stops changing rather than read once.
 */
async function settledDepth(queue: string): Promise<number> {
  let last = -1;
  let stableSince = Date.now();
  await waitFor(
    async () => {
      const now = await depth(queue);
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
      return Date.now() - stableSince >= 600;
    },
    10_000,
    `${queue} depth to settle`,
    100,
  );
  return last;
}

async function inspect(args: string[]): Promise<InspectReport> {
  const r = await runTxsim(['inspect-errors', '--json', ...args], ns.env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as InspectReport;
}

const poor = { withdrawals: [1, 2, 3].map(() => txBody({ accountId: 1, type: 'withdrawal', amountMinor: 50_000 })) };
const unknown = [txBody({ accountId: 777_777 }), txBody({ accountId: 888_888, type: 'card_payment', merchant: 'Shop' })];
const badJsonId = randomUUID();

beforeAll(async () => {
  ns = await createTestNamespace('insp');
  expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
  await ns.seed(3, { openingBalanceMinor: 10_000n });
  worker = startWorker('w-insp', ns.env);
  await publishRaw(ns.amqp, ns.topology, [
    ...poor.withdrawals.map((body) => ({ body })),
    ...unknown.map((body) => ({ body })),
    { body: Buffer.from('{"id": '), messageId: badJsonId },
  ]);
  await waitFor(async () => (await depth(ns.topology.errorsQueue)) === 6, 30_000, 'six rejects in the errors queue');
});

afterAll(async () => {
  await worker?.stop();
  await ns?.cleanup();
});

describe('txsim inspect-errors', () => {
  it('shows every reject with its fields and a count by reason, and removes nothing', async () => {
    const report = await inspect([]);
    expect(report).toMatchObject({ queue: ns.topology.errorsQueue, kind: 'errors', depth: 6, scanned: 6, partial: false, removed: 0 });
    expect(report.byReason).toEqual({ insufficient_funds: 3, unknown_account: 2, invalid_message: 1 });
    expect(report.messages).toHaveLength(6);
    const first = report.messages.find((m) => m.id === poor.withdrawals[0]!.id)!;
    expect(first).toMatchObject({
      type: 'withdrawal',
      accountId: 1,
      amountMinor: '50000',
      currency: 'EUR',
      reason: 'insufficient_funds',
      workerId: 'w-insp',
      attempts: 1,
      routingKey: 'tx.withdrawal',
    });
    expect(first.detail).toMatch(/balance 10000 < amount 50000/);
    expect(Date.parse(first.at!)).toBeGreaterThan(Date.now() - 120_000);
    const bad = report.messages.find((m) => m.id === badJsonId)!;
    expect(bad).toMatchObject({ reason: 'invalid_message', type: null, accountId: null, bodyProblem: 'not JSON' });
    expect(bad.detail).not.toBe('');
    expect(first.bodyProblem).toBeNull();
    // Nothing removed: the same six are still there, in the queue's count and by id.
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(6);
    expect((await idsInErrors()).sort()).toEqual(report.messages.map((m) => m.id).sort());
    // The peek's put-backs settle before the next test's command counts the queue.
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(6);
  });

  it('prints a table and a summary as text, again without removing anything', async () => {
    const r = await runTxsim(['inspect-errors'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^id +type +account +amount +currency +reason +worker +when +attempts +detail$/m);
    // The why is in the table, not only in --json.
    expect(r.stdout).toMatch(
      new RegExp(
        `^${String(poor.withdrawals[1]!.id)} +withdrawal +1 +500\\.00 +EUR +insufficient_funds +w-insp +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ +1 +balance 10000 < amount 50000$`,
        'm',
      ),
    );
    expect(r.stdout).toMatch(new RegExp(`^${String(unknown[0]!.id)} +deposit +777777 .* unknown_account .*\\S$`, 'm'));
    // The unparseable message says so instead of leaving its transaction cells empty.
    expect(r.stdout).toMatch(new RegExp(`^${badJsonId} +\\(unreadable: not JSON\\) +- +- +- +invalid_message +.*\\S$`, 'm'));
    expect(r.stdout).toContain(`${ns.topology.errorsQueue}: 6 messages; scanned 6, showing 6`);
    expect(r.stdout).toMatch(/^insufficient_funds +3$/m);
    expect(r.stdout).toContain('nothing removed');
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(6);
  });

  it('--reason and --limit filter what is shown; the summary still counts the whole queue', async () => {
    const report = await inspect(['--reason', 'unknown_account', '--limit', '1']);
    expect(report.messages).toHaveLength(1);
    expect(report.messages[0]!.reason).toBe('unknown_account');
    expect(report.byReason).toEqual({ insufficient_funds: 3, unknown_account: 2, invalid_message: 1 });
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(6);
  });

  it('--reason that is no reject reason is a usage error (exit 2) listing the reasons, before connecting', async () => {
    const r = await runTxsim(['inspect-errors', '--reason', 'bogus'], ns.env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      '--reason: "bogus" is not a reject reason; one of invalid_message, unknown_account, currency_mismatch, insufficient_funds, duplicate_conflict',
    );
    expect(r.stdout).toBe('');
    // The dead queue's reasons are error codes, an open set: any code-like name is accepted there.
    expect((await runTxsim(['inspect-errors', '--dead', '--reason', 'ER_LOCK_DEADLOCK'], ns.env)).code).toBe(0);
  });

  it('--ack removes exactly the messages shown, and nothing else', async () => {
    const acked = await inspect(['--reason', 'insufficient_funds', '--limit', '2', '--ack']);
    expect(acked.removed).toBe(2);
    const removedIds = acked.messages.map((m) => m.id);
    expect(removedIds).toHaveLength(2);
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(4);
    const left = await idsInErrors();
    for (const id of removedIds) expect(left).not.toContain(id);
    const keptWithdrawal = poor.withdrawals.map((b) => b.id as string).find((id) => !removedIds.includes(id))!;
    expect(left).toContain(keptWithdrawal);
    expect((await inspect([])).byReason).toEqual({ insufficient_funds: 1, unknown_account: 2, invalid_message: 1 });
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(4);
  });

  it('as text, --ack says how many it removed, in the singular for one', async () => {
    const r = await runTxsim(['inspect-errors', '--reason', 'invalid_message', '--ack'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`removed the 1 message shown from ${ns.topology.errorsQueue}`);
    expect(r.stdout).toContain(`${ns.topology.errorsQueue}: 4 messages; scanned 4, showing 1 with reason invalid_message`);
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(3);
  });

  it('--ack without a filter empties what it showed: the queue', async () => {
    const acked = await inspect(['--ack']);
    expect(acked.removed).toBe(3);
    expect(await settledDepth(ns.topology.errorsQueue)).toBe(0);
  });

  it('--dead reads the parking queue (empty here)', async () => {
    expect(await inspect(['--dead'])).toMatchObject({ queue: ns.topology.deadQueue, kind: 'dead', depth: 0, scanned: 0, messages: [] });
  });

  it('a namespace that was never set up is "not found" (exit 5), not a crash', async () => {
    const r = await runTxsim(['inspect-errors'], { ...ns.env, TXSIM_NAMESPACE: `${ns.name}_none` });
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`queue ${ns.name}_none.errors does not exist`);
  });
});

/**
 * Puts `count` parked-looking messages in `queue` in this order, as a worker parks them (last error,
 * attempts, when), the reason alternating between a deadlock and a lock wait timeout. Their ids, in order.
 */
async function fillParked(queue: string, count: number): Promise<string[]> {
  const channel = await ns.amqp.createConfirmChannel();
  const ids: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const body = txBody({ accountId: 1, amountMinor: 100 + i });
      ids.push(body.id as string);
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)), {
        persistent: true,
        contentType: 'application/json',
        messageId: body.id as string,
        headers: {
          [HEADERS.attempts]: 5,
          [HEADERS.lastError]: i % 2 === 0 ? 'ER_LOCK_DEADLOCK: Deadlock found' : 'ER_LOCK_WAIT_TIMEOUT: Lock wait timeout exceeded',
          [HEADERS.failedAt]: new Date().toISOString(),
          [HEADERS.originalRoutingKey]: 'tx.deposit',
        },
      });
    }
    await channel.waitForConfirms();
  } finally {
    await channel.close();
  }
  return ids;
}

/** Empties `queue` (get with auto-ack: this does remove them) and returns the ids in the order the broker handed them out. */
async function drainIds(queue: string): Promise<string[]> {
  const channel = await ns.amqp.createChannel();
  const ids: string[] = [];
  try {
    for (let msg = await channel.get(queue, { noAck: true }); msg !== false; msg = await channel.get(queue, { noAck: true }))
      ids.push(JSON.parse(msg.content.toString()).id as string);
  } finally {
    await channel.close();
  }
  return ids;
}

// More messages than one page of the walk (32) and than the broker returns in order at once: reading
// them must leave the same messages in the same order, which holding them all and closing the channel
// did not (RabbitMQ 3.10 shuffled them), and must never hold more than a page.
describe('inspect-errors --dead keeps the queue in its order', () => {
  const COUNT = 100;

  it('after reading everything, the queue holds the same messages in the same order', async () => {
    const dead = ns.topology.deadQueue;
    const ids = await fillParked(dead, COUNT);
    const report = await inspect(['--dead']);
    expect(report).toMatchObject({ kind: 'dead', depth: COUNT, scanned: COUNT, partial: false, removed: 0 });
    expect(report.byReason).toEqual({ ER_LOCK_DEADLOCK: COUNT / 2, ER_LOCK_WAIT_TIMEOUT: COUNT / 2 });
    // Shown in queue order (the first 50, the default --limit).
    expect(report.messages.map((m) => m.id)).toEqual(ids.slice(0, 50));
    expect(await settledDepth(dead)).toBe(COUNT);
    // Read again: still in the first order.
    const again = await inspect(['--dead', '--limit', String(COUNT)]);
    expect(again.messages.map((m) => m.id)).toEqual(ids);
    expect(await settledDepth(dead)).toBe(COUNT);
    // And as the broker hands them out to a consumer.
    expect(await drainIds(dead)).toEqual(ids);
  });

  it("verify's read of the dead queue leaves it in its order too", async () => {
    const dead = ns.topology.deadQueue;
    const ids = await fillParked(dead, COUNT);
    const seen = await peekDeadIds({ connection: ns.amqp, topology: ns.topology }, 10_000);
    expect([...seen].sort()).toEqual(ids.map((id) => id.toLowerCase()).sort());
    expect(await settledDepth(dead)).toBe(COUNT);
    expect(await drainIds(dead)).toEqual(ids);
  });

  it('--ack removes exactly the messages shown; the others keep their order', async () => {
    const dead = ns.topology.deadQueue;
    const ids = await fillParked(dead, COUNT);
    const acked = await inspect(['--dead', '--reason', 'ER_LOCK_DEADLOCK', '--limit', '10', '--ack']);
    const removed = ids.filter((_, i) => i % 2 === 0).slice(0, 10);
    expect(acked.messages.map((m) => m.id)).toEqual(removed);
    expect(acked.removed).toBe(10);
    expect(await settledDepth(dead)).toBe(COUNT - 10);
    expect(await drainIds(dead)).toEqual(ids.filter((id) => !removed.includes(id)));
  });

  // The walk itself, on both kinds of queue: it copies what it keeps to the tail (where a handed-back
  // message goes differs: a 3.10 quorum queue's tail, a classic queue's head), so both come out alike.
  it.each(['quorum', 'classic'] as const)('walkQueue on a %s queue: every message visited once, kept ones in order', async (type) => {
    const queue = `${ns.name}.walk-${type}`;
    const setup = await ns.amqp.createChannel();
    await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': type } });
    try {
      const ids = await fillParked(queue, 70);
      const seen: string[] = [];
      let heldMax = 0;
      const channel = await ns.amqp.createConfirmChannel();
      // Counts what the walk holds unacked: a get adds one, a (multiple) ack settles all held.
      let held = 0;
      const get = channel.get.bind(channel);
      const ack = channel.ack.bind(channel);
      channel.get = async (q, o) => {
        const msg = await get(q, o);
        if (msg !== false) heldMax = Math.max(heldMax, ++held);
        return msg;
      };
      channel.ack = (m: GetMessage, allUpTo?: boolean) => {
        held = allUpTo ? 0 : held - 1;
        ack(m, allUpTo);
      };
      const result = await walkQueue(
        channel,
        queue,
        { depth: 70 },
        {
          wantsMore: () => true,
          // Every seventh message is removed.
          visit: (page) =>
            page.map((m): Settlement => {
              seen.push(JSON.parse(m.content.toString()).id as string);
              return seen.length % 7 === 0 ? 'remove' : 'keep';
            }),
        },
      );
      await channel.close();
      expect(result).toEqual({ depth: 70, visited: 70, settled: 70, removed: 10 });
      expect(seen).toEqual(ids);
      // Never more than a page held.
      expect(heldMax).toBeLessThanOrEqual(32);
      await waitFor(async () => (await depth(queue)) === 60, 10_000, `${queue} to hold the 60 kept`);
      expect(await drainIds(queue)).toEqual(ids.filter((_, i) => (i + 1) % 7 !== 0));
    } finally {
      await setup.deleteQueue(queue).catch(() => {});
      await setup.close().catch(() => {});
    }
  });
});
