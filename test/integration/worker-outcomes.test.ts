import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { peekQueue, runTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';

/** Outcome row of an id, or undefined while it has none. */
async function outcome(ns: TestNamespace, id: string) {
  return ns.db('transactions').where('id', id).first('status', 'reason', 'detail', 'attempts', 'balance_after_minor');
}

async function balance(ns: TestNamespace, accountId: number): Promise<bigint> {
  const row = await ns.db('accounts').where('id', accountId).first('balance_minor');
  return BigInt(row.balance_minor);
}

/** Everything in the errors queue, read without removing it. */
async function errorsQueue(ns: TestNamespace) {
  const channel = await ns.amqp.createConfirmChannel();
  try {
    return (await peekQueue(channel, ns.topology.errorsQueue)).map((m) => ({
      headers: m.properties.headers ?? {},
      envelope: JSON.parse(m.content.toString()),
      messageId: m.properties.messageId,
    }));
  } finally {
    await channel.close();
  }
}

describe.each([
  { mode: 'one commit per message', workerArgs: ['--batch-size', '1'] },
  { mode: 'batched', workerArgs: ['--batch-size', '50', '--batch-wait', '20'] },
])('worker outcomes ($mode)', ({ workerArgs }) => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];

  beforeAll(async () => {
    ns = await createTestNamespace('out');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(5, { openingBalanceMinor: 10_000n });
    await ns.seed(1, { firstId: 100, currency: 'USD', openingBalanceMinor: 10_000n });
    workers = ['a', 'b'].map((id) => startWorker(`${id}`, ns.env, [...workerArgs, '--max-attempts', '3', '--lock-wait-timeout', '1']));
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await ns.cleanup();
  });

  it('the same message published twice moves money once', async () => {
    const body = txBody({ accountId: 2, amountMinor: 2_500 });
    await publishRaw(ns.amqp, ns.topology, [{ body }, { body }]);
    await waitFor(async () => (await outcome(ns, body.id as string)) !== undefined, 20_000, 'the outcome');
    // Give the second copy time to be processed too, then check it had no effect.
    await waitFor(
      async () =>
        Number(
          (
            await ns
              .db('transactions')
              .where('id', body.id as string)
              .count({ n: '*' })
          )[0]!.n,
        ) === 1,
      5_000,
      'one row',
    );
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await balance(ns, 2)).toBe(12_500n);
    const entries = await ns.db('ledger_entries').where('transaction_id', body.id as string);
    expect(entries).toHaveLength(2);
  });

  it('the same id with a different body is rejected as duplicate_conflict and changes nothing', async () => {
    const body = txBody({ accountId: 3, amountMinor: 100 });
    await publishRaw(ns.amqp, ns.topology, [{ body }]);
    await waitFor(async () => (await outcome(ns, body.id as string)) !== undefined, 20_000, 'the first outcome');
    await publishRaw(ns.amqp, ns.topology, [{ body: { ...body, amountMinor: 9_000 } }]);
    await waitFor(
      async () => (await errorsQueue(ns)).some((e) => e.envelope.id === body.id && e.envelope.reason === 'duplicate_conflict'),
      20_000,
      'duplicate_conflict in the errors queue',
    );
    expect(await balance(ns, 3)).toBe(10_100n);
  });

  it('each reject reason lands in the errors queue and, with a usable id, in the database', async () => {
    const cases = [
      { reason: 'invalid_message', body: Buffer.from('{"id": "oops'), messageId: randomUUID(), detail: /not valid JSON/ },
      { reason: 'invalid_message', body: txBody({ amountMinor: -5 }), detail: /amountMinor must be >= 1/ },
      { reason: 'invalid_message', body: txBody({ amountMinor: '12' }), detail: /amountMinor must be integer/ },
      // JSON.parse reads it as 2000: refused from its text, never applied as 2000.
      (() => {
        const id = randomUUID();
        const raw = JSON.stringify(txBody({ id, accountId: 4, amountMinor: 7 })).replace(
          '"amountMinor":7',
          '"amountMinor":1999.9999999999999',
        );
        return {
          reason: 'invalid_message',
          body: Buffer.from(raw),
          messageId: id,
          detail: /amountMinor is written as 1999\.9999999999999/,
        };
      })(),
      { reason: 'invalid_message', body: txBody({ id: `urn:uuid:${randomUUID()}` }), messageId: randomUUID(), detail: /id must be a UUID/ },
      { reason: 'unknown_account', body: txBody({ accountId: 999_999 }), detail: /does not exist/ },
      { reason: 'currency_mismatch', body: txBody({ accountId: 100, currency: 'EUR' }), detail: /holds USD/ },
      {
        reason: 'insufficient_funds',
        body: txBody({ accountId: 4, type: 'withdrawal', amountMinor: 10_001 }),
        detail: /balance 10000 < amount 10001/,
      },
    ];
    await publishRaw(
      ns.amqp,
      ns.topology,
      cases.map((c) => ({ body: c.body, ...(c.messageId ? { messageId: c.messageId } : {}) })),
    );
    const idOf = (c: (typeof cases)[number]) => (c.messageId ?? (c.body as Record<string, string>).id)!;
    // Asserted on the peek that found them all: a second peek right after can race the first one's put-backs (Raft).
    let errors: Awaited<ReturnType<typeof errorsQueue>> = [];
    await waitFor(
      async () => {
        errors = await errorsQueue(ns);
        return cases.every((c) => errors.some((e) => e.envelope.id === idOf(c)));
      },
      20_000,
      'every reject in the errors queue',
    );
    for (const c of cases) {
      const e = errors.find((x) => x.envelope.id === idOf(c))!;
      expect(e.headers[HEADERS.reason]).toBe(c.reason);
      expect(e.envelope.reason).toBe(c.reason);
      expect(e.envelope.detail).toMatch(c.detail);
      expect(await outcome(ns, idOf(c))).toMatchObject({ status: 'rejected', reason: c.reason });
    }
    expect(await balance(ns, 4)).toBe(10_000n);
    expect(await balance(ns, 100)).toBe(10_000n);
    // The queue was only read: every message is still there (once the peeks' put-backs settle).
    await waitFor(async () => (await errorsQueue(ns)).length === errors.length, 10_000, 'every message still in the errors queue');
  });

  it('a run header that is not a UUID is ignored: the valid body is applied, not parked', async () => {
    const body = txBody({ accountId: 1, amountMinor: 11 });
    await publishRaw(ns.amqp, ns.topology, [{ body, headers: { [HEADERS.runId]: `urn:uuid:${randomUUID()}` } }]);
    await waitFor(async () => (await outcome(ns, body.id as string)) !== undefined, 20_000, 'the outcome');
    expect(await outcome(ns, body.id as string)).toMatchObject({ status: 'applied', attempts: 1 });
    expect(
      (
        await ns
          .db('transactions')
          .where('id', body.id as string)
          .first('run_id')
      ).run_id,
    ).toBeNull();
  });

  it("a batch that waited for an account's lock is timed from when it got it: times on an account follow its sequence", async () => {
    const holder = await ns.db.transaction();
    let releasedAtMs: number;
    const body = txBody({ accountId: 2, amountMinor: 12 });
    try {
      await holder.raw('SELECT id FROM accounts WHERE id = 2 FOR UPDATE');
      await publishRaw(ns.amqp, ns.topology, [{ body }]);
      // The batch is waiting for the lock (within the workers' 1 s lock wait); it gets it 300 ms on.
      await waitFor(
        async () => {
          // The batch's locking read of the accounts, in this namespace's database, still running.
          const [rows] = (await ns.db.raw(
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND COMMAND = 'Query' AND INFO LIKE 'SELECT id, currency, balance_minor%FOR UPDATE'",
          )) as [{ n: number }[]];
          return Number(rows[0]!.n) > 0;
        },
        5_000,
        'the batch waiting for the lock',
        10,
      );
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      releasedAtMs = Date.now();
      await holder.rollback();
    }
    await waitFor(async () => (await outcome(ns, body.id as string)) !== undefined, 20_000, 'the outcome');
    const row = await ns
      .db('transactions')
      .where('id', body.id as string)
      .first('status', 'processed_at', 'attempts');
    expect(row).toMatchObject({ status: 'applied', attempts: 1 });
    // Read before the wait, the time would be at least 300 ms earlier than the release.
    expect(new Date(row.processed_at).getTime()).toBeGreaterThanOrEqual(releasedAtMs - 20);
  });

  it('a system error is retried through the delay queues and then parked with the last error', async () => {
    // Hold account 5's row lock from outside: the worker's lock wait times out (errno 1205) each time.
    const holder = await ns.db.transaction();
    try {
      await holder.raw('SELECT id FROM accounts WHERE id = 5 FOR UPDATE');
      const body = txBody({ accountId: 5, amountMinor: 700 });
      const bystander = txBody({ accountId: 1, amountMinor: 300 });
      await publishRaw(ns.amqp, ns.topology, [{ body }, { body: bystander }]);
      // A message on another account is not held back by the stuck one.
      await waitFor(async () => (await outcome(ns, bystander.id as string))?.status === 'applied', 20_000, 'the bystander to apply');
      let parked: Awaited<ReturnType<typeof peekQueue>>[number] | undefined;
      await waitFor(
        async () => {
          const channel = await ns.amqp.createConfirmChannel();
          try {
            parked = (await peekQueue(channel, ns.topology.deadQueue)).find((m) => m.properties.messageId === body.id);
            return parked !== undefined;
          } finally {
            await channel.close();
          }
        },
        40_000,
        'the message to be parked',
      );
      if (!parked) throw new Error('unreachable: waited for the parked message');
      expect(parked.properties.headers?.[HEADERS.attempts]).toBe(3);
      expect(String(parked.properties.headers?.[HEADERS.lastError])).toMatch(/LOCK_WAIT_TIMEOUT|1205/);
      expect(JSON.parse(parked.content.toString())).toEqual(body);
      expect(await outcome(ns, body.id as string)).toBeUndefined();
    } finally {
      await holder.rollback();
    }
    expect(await balance(ns, 5)).toBe(10_000n);
  });
});

describe('concurrent withdrawals on one account', () => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];

  beforeAll(async () => {
    ns = await createTestNamespace('race');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(1, { openingBalanceMinor: 10_000n });
    workers = ['r1', 'r2', 'r3'].map((id) => startWorker(id, ns.env, ['--batch-size', id === 'r1' ? '1' : '20', '--prefetch', '20']));
    // All three must be consuming before the burst, or the first one up takes all of it.
    await waitForConsumers(ns, 3, 'three consumers', 20_000);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await ns.cleanup();
  });

  it('never overdraw: exactly the balance is spent, the rest is rejected', async () => {
    const bodies = Array.from({ length: 150 }, (_, i) =>
      txBody({ accountId: 1, type: i % 2 ? 'withdrawal' : 'card_payment', ...(i % 2 ? {} : { merchant: 'Shop' }), amountMinor: 100 }),
    );
    await publishRaw(
      ns.amqp,
      ns.topology,
      bodies.map((body) => ({ body })),
    );
    await waitFor(
      async () =>
        Number(
          (
            await ns
              .db('transactions')
              .whereIn(
                'id',
                bodies.map((b) => b.id as string),
              )
              .count({ n: '*' })
          )[0]!.n,
        ) === 150,
      60_000,
      'all 150 outcomes',
    );
    const rows = await ns
      .db('transactions')
      .whereIn(
        'id',
        bodies.map((b) => b.id as string),
      )
      .select('status', 'reason', 'worker_id');
    expect(rows.filter((r) => r.status === 'applied')).toHaveLength(100);
    expect(rows.filter((r) => r.reason === 'insufficient_funds')).toHaveLength(50);
    expect(new Set(rows.map((r) => r.worker_id)).size).toBeGreaterThan(1);
    const account = await ns.db('accounts').where('id', 1).first('balance_minor');
    expect(account.balance_minor).toBe('0');
    const verify = await runTxsim(['verify', '--json'], ns.env);
    expect(verify.code, verify.stdout).toBe(0);
  });
});
