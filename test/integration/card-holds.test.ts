import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';
import { startTxsim, type TxsimProcess } from './accounting-helpers.js';
import { authorization, capture, funds, outcomeOf, publishAndWait } from './card-helpers.js';

// Contract v1.1 two-phase card payments through real workers, RabbitMQ and MariaDB.

const voidOf = (accountId: number, authorizationId: unknown) => {
  const { amountMinor: _none, ...body } = txBody({ type: 'card_void', accountId, authorizationId });
  return body;
};
const refund = (accountId: number, authorizationId: unknown, amountMinor: number) =>
  txBody({ type: 'card_refund', accountId, authorizationId, amountMinor });

describe('two-phase card payments', () => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];
  let accounting: TxsimProcess;

  beforeAll(async () => {
    ns = await createTestNamespace('card');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(6, { openingBalanceMinor: 10_000n });
    // Test retry delays are 100 and 300 ms: three attempts give a capture ~0.4 s to find its authorization.
    workers = ['c1', 'c2', 'c3'].map((id) =>
      startWorker(id, ns.env, ['--batch-size', id === 'c1' ? '1' : '20', '--prefetch', '20', '--max-attempts', '3']),
    );
    accounting = startTxsim(['accounting', '--prefetch', '50'], ns.env);
    await waitForConsumers(ns, 3, 'three consumers', 20_000);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await accounting?.stop();
    await ns.cleanup();
  });

  it('authorize holds without posting; partial capture, final capture, refund; spending is against available', async () => {
    const auth = authorization(1, 6_000);
    await publishAndWait(ns, [auth]);
    expect(await funds(ns, 1)).toEqual({ balance: 10_000n, held: 6_000n });
    expect(await ns.db('ledger_entries').where('transaction_id', String(auth.id))).toHaveLength(0);

    // 4,000 available: a withdrawal of 4,001 is refused, 4,000 is not.
    const tooMuch = txBody({ type: 'withdrawal', accountId: 1, amountMinor: 4_001 });
    await publishAndWait(ns, [tooMuch]);
    expect(await outcomeOf(ns, tooMuch.id)).toMatchObject({ status: 'rejected', reason: 'insufficient_funds' });

    const partial = capture(1, auth.id, 2_500);
    await publishAndWait(ns, [partial]);
    expect(await outcomeOf(ns, partial.id)).toMatchObject({ status: 'applied' });
    expect(await funds(ns, 1)).toEqual({ balance: 7_500n, held: 3_500n });
    const final = capture(1, auth.id, 1_000, { final: true });
    await publishAndWait(ns, [final]);
    // The final capture takes 1,000 and releases the other 2,500.
    expect(await funds(ns, 1)).toEqual({ balance: 6_500n, held: 0n });
    const back = refund(1, auth.id, 3_500);
    await publishAndWait(ns, [back]);
    expect(await funds(ns, 1)).toEqual({ balance: 10_000n, held: 0n });

    const show = await runTxsim(['tx', 'show', String(partial.id), '--json'], ns.env);
    expect(show.code, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout).hold).toMatchObject({
      id: auth.id,
      state: 'captured',
      authorizedMinor: '6000',
      capturedMinor: '3500',
      refundedMinor: '3500',
      heldMinor: '0',
    });
    const account = await runTxsim(['accounts', 'show', '1', '--json'], ns.env);
    expect(JSON.parse(account.stdout).funds).toEqual({ balanceMinor: '10000', heldMinor: '0', availableMinor: '10000' });
  });

  it('rejects each reason precisely and moves nothing', async () => {
    const auth = authorization(2, 3_000);
    // Expires once the three rounds below are done, even on a slow machine; waited for before the cases.
    const soonExpiresAtMs = Date.now() + 4_000;
    const soon = authorization(2, 1_000, { expiresAt: new Date(soonExpiresAtMs).toISOString() });
    await publishAndWait(ns, [auth, soon]);
    const voided = authorization(2, 500);
    await publishAndWait(ns, [voided]);
    await publishAndWait(ns, [voidOf(2, voided.id)]);
    expect(await funds(ns, 2)).toEqual({ balance: 10_000n, held: 4_000n });
    await new Promise((r) => setTimeout(r, Math.max(0, soonExpiresAtMs - Date.now()) + 100));

    const cases = [
      { reason: 'capture_exceeds_hold', body: capture(2, auth.id, 3_001) },
      { reason: 'refund_exceeds_capture', body: refund(2, auth.id, 1) },
      { reason: 'authorization_closed', body: capture(2, voided.id, 100) },
      { reason: 'authorization_closed', body: voidOf(2, voided.id) },
      { reason: 'authorization_expired', body: capture(2, soon.id, 100) },
      { reason: 'authorization_expired', body: authorization(2, 100, { expiresAt: '2020-01-01T00:00:00Z' }) },
      { reason: 'unknown_authorization', body: capture(3, auth.id, 100) },
      { reason: 'insufficient_funds', body: authorization(2, 7_001) }, // more than available with or without the expired hold's 1,000
    ];
    await publishAndWait(
      ns,
      cases.map((c) => c.body),
    );
    for (const c of cases) expect(await outcomeOf(ns, c.body.id), c.reason).toMatchObject({ status: 'rejected', reason: c.reason });
    // The refund's hold is open and could still take captures (one may be in a delay queue): it waited
    // through its attempts before it was refused (card-refund-reorder.test.ts is the case it waits for).
    const refundCase = cases.find((c) => c.reason === 'refund_exceeds_capture')!;
    expect(await outcomeOf(ns, refundCase.body.id)).toMatchObject({ attempts: 3 });
    // The expired hold's 1,000 are released by a worker's sweep (every second by default).
    await waitFor(
      async () => (await ns.db('holds').where('id', String(soon.id)).first('state'))?.state === 'expired',
      10_000,
      'the short hold expired',
    );
    expect(await funds(ns, 2)).toEqual({ balance: 10_000n, held: 3_000n });
  });

  it('a capture ahead of its authorization is retried until it is applied; one whose authorization never comes is rejected unknown_authorization after the last attempt', async () => {
    const auth = authorization(4, 2_000);
    const early = capture(4, auth.id, 2_000);
    const orphan = capture(4, randomUUID(), 100);
    await publishRaw(ns.amqp, ns.topology, [{ body: early }, { body: orphan }]);
    await new Promise((r) => setTimeout(r, 150));
    await publishRaw(ns.amqp, ns.topology, [{ body: auth }]);
    const ids = [auth, early, orphan].map((b) => String(b.id));
    await waitFor(
      async () => Number((await ns.db('transactions').whereIn('id', ids).count({ n: '*' }))[0]!.n) === 3,
      30_000,
      'three outcomes',
    );
    expect(await outcomeOf(ns, early.id)).toMatchObject({ status: 'applied' });
    expect((await outcomeOf(ns, early.id))!.attempts).toBeGreaterThan(1);
    expect(await outcomeOf(ns, orphan.id)).toMatchObject({ status: 'rejected', reason: 'unknown_authorization', attempts: 3 });
    expect(await funds(ns, 4)).toEqual({ balance: 8_000n, held: 0n });
  });

  it('concurrent captures of one hold never over-capture', async () => {
    const auth = authorization(5, 5_000);
    await publishAndWait(ns, [auth]);
    const captures = Array.from({ length: 40 }, () => capture(5, auth.id, 200));
    await publishAndWait(ns, captures);
    const rows: { status: string; reason: string | null }[] = await ns
      .db('transactions')
      .whereIn(
        'id',
        captures.map((c) => String(c.id)),
      )
      .select('status', 'reason');
    expect(rows.filter((r) => r.status === 'applied')).toHaveLength(25);
    expect(rows.filter((r) => r.status === 'rejected').every((r) => r.reason === 'authorization_closed')).toBe(true);
    expect(await funds(ns, 5)).toEqual({ balance: 5_000n, held: 0n });
    const hold = await ns.db('holds').where('id', String(auth.id)).first('state', 'captured_minor');
    expect(hold).toEqual({ state: 'captured', captured_minor: '5000' });
  });

  it('verify is clean, hold checks included, and the statements reconcile', async () => {
    const verify = await runTxsim(['verify', '--wait', '60', '--json'], ns.env);
    const report = JSON.parse(verify.stdout) as {
      checks: { name: string; violations: number }[];
      accounting: { ok: boolean; settled: boolean };
    };
    expect(verify.code, verify.stdout).toBe(0);
    for (const name of ['held_equals_open_holds', 'no_negative_available', 'holds_within_limits', 'holds_match_ledger', 'applied_once'])
      expect(
        report.checks.find((c) => c.name === name),
        name,
      ).toMatchObject({ violations: 0 });
    expect(report.accounting).toMatchObject({ ok: true, settled: true });
  });
});
