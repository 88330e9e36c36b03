import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { peekQueue, queueState, runTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';
import { startTxsim, type TxsimProcess } from './accounting-helpers.js';

// Contract v1.1 transfers through real workers, RabbitMQ and MariaDB: applied as one debit and one
// credit, rejected precisely, idempotent, deadlock-free under A→B / B→A contention, and reconciled
// by verify (ledger and accounting statements: the destination gets its own `transfer_in` line).

function transfer(from: number, to: number, amountMinor: number, over: Record<string, unknown> = {}) {
  return txBody({ type: 'transfer', accountId: from, toAccountId: to, amountMinor, ...over });
}

async function balance(ns: TestNamespace, accountId: number): Promise<bigint> {
  const row = await ns.db('accounts').where('id', accountId).first('balance_minor');
  return BigInt(row.balance_minor);
}

async function outcomeCount(ns: TestNamespace, ids: readonly string[]): Promise<number> {
  return Number(
    (
      await ns
        .db('transactions')
        .whereIn('id', [...ids])
        .count({ n: '*' })
    )[0]!.n,
  );
}

async function errorsQueue(ns: TestNamespace) {
  const channel = await ns.amqp.createConfirmChannel();
  try {
    return (await peekQueue(channel, ns.topology.errorsQueue)).map((m) => ({
      reason: m.properties.headers?.[HEADERS.reason] as string,
      envelope: JSON.parse(m.content.toString()) as { id: string; reason: string; detail: string },
    }));
  } finally {
    await channel.close();
  }
}

interface VerifyReport {
  readonly checks: { name: string; violations: number }[];
  readonly accounting: { ok: boolean; settled: boolean; missing: number } | null;
}

/** verify --json after the accounting side has caught up; exit code and report. */
async function verifyAll(ns: TestNamespace): Promise<{ code: number | null; report: VerifyReport }> {
  const verify = await runTxsim(['verify', '--wait', '60', '--json'], ns.env);
  return { code: verify.code, report: JSON.parse(verify.stdout) as VerifyReport };
}

describe.each([
  { mode: 'one commit per message', workerArgs: ['--batch-size', '1'] },
  { mode: 'batched', workerArgs: ['--batch-size', '50', '--batch-wait', '20'] },
])('transfers ($mode)', ({ workerArgs }) => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];
  let accounting: TxsimProcess;

  beforeAll(async () => {
    ns = await createTestNamespace('xfer');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(6, { openingBalanceMinor: 10_000n });
    await ns.seed(1, { firstId: 100, currency: 'USD', openingBalanceMinor: 10_000n });
    workers = ['a', 'b'].map((id) => startWorker(id, ns.env, workerArgs));
    accounting = startTxsim(['accounting', '--json', '--prefetch', '20'], ns.env);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await accounting?.stop();
    await ns.cleanup();
  });

  it('moves the amount from one customer to the other: one debit, one credit, nothing on a system account', async () => {
    const body = transfer(1, 2, 2_500);
    await publishRaw(ns.amqp, ns.topology, [{ body }]);
    await waitFor(async () => (await outcomeCount(ns, [body.id as string])) === 1, 20_000, 'the outcome');
    const row = await ns
      .db('transactions')
      .where('id', body.id as string)
      .first();
    expect(row).toMatchObject({ status: 'applied', type: 'transfer', account_id: '1', to_account_id: '2' });
    expect(row.balance_after_minor).toBe('7500');
    expect(row.to_balance_after_minor).toBe('12500');
    expect(await balance(ns, 1)).toBe(7_500n);
    expect(await balance(ns, 2)).toBe(12_500n);
    const entries = await ns
      .db('ledger_entries')
      .where('transaction_id', body.id as string)
      .orderBy('account_id')
      .select('account_id', 'amount_minor');
    expect(entries).toEqual([
      { account_id: '1', amount_minor: '-2500' },
      { account_id: '2', amount_minor: '2500' },
    ]);

    const show = await runTxsim(['tx', 'show', body.id as string, '--json'], ns.env);
    expect(show.code, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({
      type: 'transfer',
      accountId: 1,
      toAccountId: 2,
      balanceAfterMinor: '7500',
      toBalanceAfterMinor: '12500',
    });
    const text = await runTxsim(['tx', 'show', body.id as string], ns.env);
    expect(text.stdout).toMatch(/transfer of 25\.00 EUR from account 1 to account 2; balances after 75\.00 EUR and 125\.00 EUR/);

    // The destination's own view lists the transfer it received, with its balance after the credit.
    const dest = await runTxsim(['accounts', 'show', '2', '--json'], ns.env);
    expect(dest.code, dest.stderr).toBe(0);
    expect(JSON.parse(dest.stdout).recent).toContainEqual(
      expect.objectContaining({ id: body.id, direction: 'in', counterpartyAccountId: 1, balanceAfterMinor: '12500' }),
    );
    const src = await runTxsim(['accounts', 'show', '1', '--json'], ns.env);
    expect(JSON.parse(src.stdout).recent).toContainEqual(
      expect.objectContaining({ id: body.id, direction: 'out', counterpartyAccountId: 2, balanceAfterMinor: '7500' }),
    );
    expect((await runTxsim(['accounts', 'show', '2'], ns.env)).stdout).toMatch(/transfer from 1 +\+25\.00/);
  });

  it('moves money once when the same transfer arrives twice', async () => {
    const body = transfer(3, 4, 1_000);
    await publishRaw(ns.amqp, ns.topology, [{ body }, { body }]);
    await waitFor(async () => (await outcomeCount(ns, [body.id as string])) === 1, 20_000, 'the outcome');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await balance(ns, 3)).toBe(9_000n);
    expect(await balance(ns, 4)).toBe(11_000n);
    expect(await ns.db('ledger_entries').where('transaction_id', body.id as string)).toHaveLength(2);
  });

  it('rejects same_account, insufficient funds, an unknown destination and another currency — and moves nothing', async () => {
    const cases = [
      { reason: 'same_account', body: transfer(5, 5, 100), detail: /transfer from account 5 to itself/ },
      { reason: 'insufficient_funds', body: transfer(5, 6, 10_001), detail: /balance 10000 < amount 10001/ },
      { reason: 'unknown_account', body: transfer(5, 999_999, 100), detail: /account 999999 does not exist/ },
      { reason: 'unknown_account', body: transfer(999_998, 5, 100), detail: /account 999998 does not exist/ },
      { reason: 'currency_mismatch', body: transfer(5, 100, 100), detail: /account 100 holds USD/ },
      { reason: 'invalid_message', body: txBody({ type: 'transfer', accountId: 5, amountMinor: 100 }), detail: /toAccountId is required/ },
      { reason: 'invalid_message', body: txBody({ accountId: 5, toAccountId: 6 }), detail: /toAccountId is only allowed on transfer/ },
    ];
    await publishRaw(
      ns.amqp,
      ns.topology,
      cases.map((c) => ({ body: c.body })),
    );
    const ids = cases.map((c) => c.body.id as string);
    // Asserted on the peek that found them all: a second peek right after can race the first one's put-backs (Raft).
    let errors: Awaited<ReturnType<typeof errorsQueue>> = [];
    await waitFor(
      async () => {
        errors = await errorsQueue(ns);
        return ids.every((id) => errors.some((e) => e.envelope.id === id));
      },
      20_000,
      'every reject in the errors queue',
    );
    for (const c of cases) {
      const e = errors.find((x) => x.envelope.id === c.body.id)!;
      expect(e.reason, c.reason).toBe(c.reason);
      expect(e.envelope.detail).toMatch(c.detail);
      expect(
        await ns
          .db('transactions')
          .where('id', c.body.id as string)
          .first('status', 'reason'),
      ).toEqual({
        status: 'rejected',
        reason: c.reason,
      });
    }
    expect(await balance(ns, 5)).toBe(10_000n);
    expect(await balance(ns, 6)).toBe(10_000n);
    expect(await balance(ns, 100)).toBe(10_000n);
  });

  it('verify is clean: ledger, the transfer check and the statements (each account has its own line)', async () => {
    const { code, report } = await verifyAll(ns);
    expect(code, JSON.stringify(report, null, 1)).toBe(0);
    expect(report.checks.find((c) => c.name === 'transfers_keep_customer_total')).toMatchObject({ violations: 0 });
    expect(report.accounting).toMatchObject({ ok: true, settled: true, missing: 0 });
    // The first transfer: a `transfer` line on account 1 and a `transfer_in` line on account 2.
    const lines = await ns
      .db('accounting_statements as s')
      .join('transactions as t', 't.id', 's.transaction_id')
      .where('t.type', 'transfer')
      .andWhere('t.status', 'applied')
      .select('s.transaction_id', 's.account_id', 's.type', 's.balance_after_minor');
    const first = lines.filter((l) => l.account_id === '1' || l.account_id === '2');
    expect(first).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ account_id: '1', type: 'transfer', balance_after_minor: '7500' }),
        expect.objectContaining({ account_id: '2', type: 'transfer_in', balance_after_minor: '12500' }),
      ]),
    );
    // Two applied transfers, two lines each.
    expect(lines).toHaveLength(4);
  });
});

describe('concurrent transfers A→B and B→A (and round a cycle) on three workers', () => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];
  let accounting: TxsimProcess;
  const opening = 5_000n;

  beforeAll(async () => {
    ns = await createTestNamespace('xrace');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(3, { openingBalanceMinor: opening });
    workers = ['r1', 'r2', 'r3'].map((id) =>
      startWorker(id, ns.env, ['--batch-size', id === 'r1' ? '1' : '20', '--prefetch', '20', '--max-attempts', '5']),
    );
    accounting = startTxsim(['accounting', '--prefetch', '50'], ns.env);
    // All three must be consuming before the burst, or the first one up takes all of it.
    await waitForConsumers(ns, 3, 'three consumers', 20_000);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await accounting?.stop();
    await ns.cleanup();
  });

  it('never deadlock for good (nothing parked, every transfer decided) and never create or destroy money', async () => {
    const pairs: [number, number][] = [
      [1, 2],
      [2, 1],
      [2, 3],
      [3, 1],
      [1, 3],
      [3, 2],
    ];
    // Amounts large enough that some transfers find too little money: rejects mixed in with applies.
    const bodies = Array.from({ length: 600 }, (_, i) => {
      const [from, to] = pairs[i % pairs.length]!;
      return transfer(from, to, 100 + ((i * 7919) % 2_500), { id: randomUUID() });
    });
    await publishRaw(
      ns.amqp,
      ns.topology,
      bodies.map((body) => ({ body })),
    );
    const ids = bodies.map((b) => b.id as string);
    await waitFor(async () => (await outcomeCount(ns, ids)) === ids.length, 90_000, 'all 600 outcomes');

    const rows: { status: string; reason: string | null; worker_id: string }[] = await ns
      .db('transactions')
      .whereIn('id', ids)
      .select('status', 'reason', 'worker_id');
    expect(rows.filter((r) => r.status === 'applied').length).toBeGreaterThan(300);
    expect(rows.filter((r) => r.status === 'rejected').every((r) => r.reason === 'insufficient_funds')).toBe(true);
    expect(new Set(rows.map((r) => r.worker_id)).size).toBeGreaterThan(1);
    const parked = await queueState(ns.amqp, ns.topology.deadQueue);
    expect(parked.messageCount).toBe(0);

    const total = (await balance(ns, 1)) + (await balance(ns, 2)) + (await balance(ns, 3));
    expect(total).toBe(3n * opening);
    const { code, report } = await verifyAll(ns);
    expect(code, JSON.stringify(report, null, 1)).toBe(0);
    expect(report.accounting).toMatchObject({ ok: true, settled: true });
  });

  it('gen --mix with transfers and transfer poison: every id accounted for, verify clean', async () => {
    const gen = await runTxsim(['gen', '300', '--seed', 'xfer-gen', '--mix', 'deposit=1,transfer=3', '--invalid', '0.1', '--json'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const { runId } = JSON.parse(gen.stdout) as { runId: string };
    const verify = await runTxsim(['verify', '--run', runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout).toBe(0);
    const report = JSON.parse(verify.stdout) as { run: { applied: number; rejectedByReason: Record<string, number>; lost: number } };
    expect(report.run.lost).toBe(0);
    expect(report.run.applied).toBeGreaterThan(150);
    const transfers = await ns.db('transactions').where({ run_id: runId, type: 'transfer', status: 'applied' }).count({ n: '*' });
    expect(Number(transfers[0]!.n)).toBeGreaterThan(100);
    expect(report.run.rejectedByReason.same_account).toBeGreaterThan(0);
  });
});
