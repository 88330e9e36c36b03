import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';
import { scrape, sumOf } from '../helpers/prometheus-text.js';
import { freePort, startTxsim, type TxsimProcess } from './accounting-helpers.js';
import { authorization, capture, funds, outcomeOf, publishAndWait } from './card-helpers.js';

// Hold expiry by the workers, a capture racing its hold's expiry, and refunds by captureId, through
// real workers, RabbitMQ and MariaDB.

const refundOfCapture = (accountId: number, captureId: unknown, amountMinor: number) =>
  txBody({ type: 'card_refund', accountId, captureId, amountMinor });

describe('hold expiry and refunds by capture', () => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];
  let accounting: TxsimProcess;
  const metricsPorts: Record<string, number> = {};

  beforeAll(async () => {
    ns = await createTestNamespace('expiry');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(40, { openingBalanceMinor: 10_000n });
    // Two sweeping workers (SKIP LOCKED shares the holds between them), sweeping every 200 ms.
    for (const id of ['e1', 'e2']) metricsPorts[id] = await freePort();
    workers = ['e1', 'e2'].map((id) =>
      startWorker(id, ns.env, [
        '--batch-size',
        '20',
        '--max-attempts',
        '3',
        '--expire-every',
        '200ms',
        '--metrics-port',
        String(metricsPorts[id]),
      ]),
    );
    accounting = startTxsim(['accounting', '--prefetch', '50'], ns.env);
    await waitForConsumers(ns, 2, 'two consumers', 20_000);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await accounting?.stop();
    await ns.cleanup();
  });

  it('a worker expires a hold past its expiresAt: held released, state expired, accounting event and statement line', async () => {
    // Long enough for the two rounds below on a slow machine: the capture must land before the sweep.
    const auth = authorization(1, 4_000, { expiresAt: new Date(Date.now() + 3_000).toISOString() });
    const partial = capture(1, auth.id, 1_000);
    await publishAndWait(ns, [auth]);
    await publishAndWait(ns, [partial]);
    expect(await funds(ns, 1)).toEqual({ balance: 9_000n, held: 3_000n });
    await waitFor(
      async () => (await ns.db('holds').where('id', String(auth.id)).first('state'))?.state === 'expired',
      10_000,
      'the hold expired',
    );
    // The 3,000 still held are released; the 1,000 captured stay captured.
    expect(await funds(ns, 1)).toEqual({ balance: 9_000n, held: 0n });
    const event = await ns
      .db('outbox_events')
      .where({ transaction_id: String(auth.id), type: 'hold_expired' })
      .first();
    expect(event).toMatchObject({ account_id: '1', amount_minor: '3000', outcome: 'applied', balance_after_minor: '9000' });
    await waitFor(
      async () => (await ns.db('accounting_statements').where({ transaction_id: String(auth.id), type: 'hold_expired' })).length === 1,
      15_000,
      'the hold_expired statement line',
    );
    // After the sweep, a capture and a void are rejected authorization_expired; a refund of the captured part is not.
    const late = capture(1, auth.id, 100);
    const { amountMinor: _none, ...lateVoid } = txBody({ type: 'card_void', accountId: 1, authorizationId: auth.id });
    const refund = refundOfCapture(1, partial.id, 1_000);
    await publishAndWait(ns, [late, lateVoid, refund]);
    expect(await outcomeOf(ns, late.id)).toMatchObject({ status: 'rejected', reason: 'authorization_expired' });
    expect(await outcomeOf(ns, lateVoid.id)).toMatchObject({ status: 'rejected', reason: 'authorization_expired' });
    expect(await outcomeOf(ns, refund.id)).toMatchObject({ status: 'applied' });
    expect(await funds(ns, 1)).toEqual({ balance: 10_000n, held: 0n });
  });

  it('refund by captureId: at most what that capture took less what was refunded against it', async () => {
    const auth = authorization(2, 5_000);
    await publishAndWait(ns, [auth]);
    const first = capture(2, auth.id, 2_000);
    const second = capture(2, auth.id, 1_500);
    await publishAndWait(ns, [first, second]);
    const within = refundOfCapture(2, first.id, 1_200);
    await publishAndWait(ns, [within]);
    const rest = refundOfCapture(2, first.id, 800);
    // The hold still has 1,500 (second) refundable, but this capture only 800.
    const over = refundOfCapture(2, first.id, 801);
    await publishAndWait(ns, [over]);
    await publishAndWait(ns, [rest]);
    const unknown = refundOfCapture(2, auth.id, 1); // an authorization is not a capture
    await publishAndWait(ns, [unknown]);
    expect(await outcomeOf(ns, within.id)).toMatchObject({ status: 'applied' });
    expect(await outcomeOf(ns, over.id)).toMatchObject({ status: 'rejected', reason: 'refund_exceeds_capture' });
    expect(await outcomeOf(ns, rest.id)).toMatchObject({ status: 'applied' });
    expect(await outcomeOf(ns, unknown.id)).toMatchObject({ status: 'rejected', reason: 'unknown_authorization' });
    const row = await ns.db('transactions').where('id', String(within.id)).first('authorization_id', 'capture_id');
    expect(row).toEqual({ authorization_id: auth.id, capture_id: first.id });
    expect(await ns.db('capture_refunds').where('capture_id', String(first.id)).first('refunded_minor')).toEqual({
      refunded_minor: '2000',
    });
    // 5,000 held; 3,500 captured; 2,000 refunded: balance 10,000 − 3,500 + 2,000, held 1,500.
    expect(await funds(ns, 2)).toEqual({ balance: 8_500n, held: 1_500n });
  });

  it('poison of refunds by capture: both ids, neither, captureId on a capture: invalid_message, precisely', async () => {
    const id = () =>
      '00000000-0000-4000-8000-' +
      Math.floor(Math.random() * 1e12)
        .toString()
        .padStart(12, '0');
    const cases = [
      {
        body: txBody({ type: 'card_refund', accountId: 3, amountMinor: 100, authorizationId: id(), captureId: id() }),
        detail: 'a card_refund names authorizationId or captureId, not both',
      },
      { body: txBody({ type: 'card_refund', accountId: 3, amountMinor: 100 }), detail: 'authorizationId or captureId is required' },
      {
        body: txBody({ type: 'card_capture', accountId: 3, amountMinor: 100, authorizationId: id(), captureId: id() }),
        detail: 'captureId is only allowed on card_refund',
      },
    ];
    await publishAndWait(
      ns,
      cases.map((c) => c.body),
    );
    for (const c of cases)
      expect(await ns.db('transactions').where('id', String(c.body.id)).first('status', 'reason', 'detail')).toEqual({
        status: 'rejected',
        reason: 'invalid_message',
        detail: c.detail,
      });
    expect(await funds(ns, 3)).toEqual({ balance: 10_000n, held: 0n });
  });

  it('a capture racing its hold expiry ends one way only', async () => {
    // 30 holds on 30 accounts, all expiring at one moment; each gets a capture sent around that moment.
    const expiresAtMs = Date.now() + 1_500;
    const accounts = Array.from({ length: 30 }, (_, i) => 10 + i);
    const auths = accounts.map((a) => authorization(a, 3_000, { expiresAt: new Date(expiresAtMs).toISOString() }));
    await publishAndWait(ns, auths);
    // Published one by one from 150 ms before the expiry to 150 ms after it (10 ms apart), while the
    // workers sweep every 200 ms: some land before, some after, some in the same instant as a sweep.
    const captures = accounts.map((a, i) => capture(a, auths[i]!.id, 3_000));
    for (const [i, c] of captures.entries()) {
      await new Promise((r) => setTimeout(r, Math.max(0, expiresAtMs - 150 + i * 10 - Date.now())));
      await publishRaw(ns.amqp, ns.topology, [{ body: c }]);
    }
    await waitFor(
      async () =>
        Number(
          (
            await ns
              .db('transactions')
              .whereIn(
                'id',
                captures.map((c) => String(c.id)),
              )
              .count({ n: '*' })
          )[0]!.n,
        ) === captures.length,
      30_000,
      'the captures decided',
    );
    await waitFor(
      async () =>
        Number(
          (
            await ns
              .db('holds')
              .whereIn(
                'id',
                auths.map((a) => String(a.id)),
              )
              .whereIn('state', ['open', 'partially_captured'])
              .count({ n: '*' })
          )[0]!.n,
        ) === 0,
      15_000,
      'every hold closed',
    );
    let captured = 0;
    let expired = 0;
    for (const [i, a] of accounts.entries()) {
      const hold = await ns.db('holds').where('id', String(auths[i]!.id)).first('state', 'captured_minor');
      const outcome = await outcomeOf(ns, captures[i]!.id);
      const money = await funds(ns, a);
      expect(money.held).toBe(0n);
      if (hold.state === 'captured') {
        captured++;
        expect(outcome).toMatchObject({ status: 'applied' });
        expect(money.balance).toBe(7_000n);
        expect(await ns.db('outbox_events').where({ transaction_id: String(auths[i]!.id), type: 'hold_expired' })).toHaveLength(0);
      } else {
        expired++;
        expect(hold).toMatchObject({ state: 'expired', captured_minor: '0' });
        expect(outcome).toMatchObject({ status: 'rejected', reason: 'authorization_expired' });
        expect(money.balance).toBe(10_000n);
      }
    }
    expect(captured + expired).toBe(30);
    // Both ways happen (the captures straddle the expiry); which ones is up to the clock, not asserted.
    console.info(`capture vs expiry: ${captured} captured, ${expired} expired`);
  });

  it('a hold whose account is busy does not hold up the other expiries: the sweep goes on past it', async () => {
    // The earliest due hold is on account 30, which a long transaction keeps locked; account 31's is due a second later.
    const first = authorization(30, 500, { expiresAt: new Date(Date.now() + 2_000).toISOString() });
    const second = authorization(31, 500, { expiresAt: new Date(Date.now() + 3_000).toISOString() });
    await publishAndWait(ns, [first, second]);
    const holder = await ns.db.transaction();
    const state = async (id: unknown) => (await ns.db('holds').where('id', String(id)).first('state'))?.state as string;
    try {
      await holder.raw('SELECT id FROM accounts WHERE id = 30 FOR UPDATE');
      // Both sweeps met account 30's hold first on every tick; they stopped there and 31's waited with it.
      await waitFor(async () => (await state(second.id)) === 'expired', 10_000, "account 31's hold expired while 30 is busy");
      expect(await state(first.id)).toBe('open');
    } finally {
      await holder.rollback();
    }
    await waitFor(async () => (await state(first.id)) === 'expired', 10_000, "account 30's hold expired once it is free");
    expect(await funds(ns, 30)).toEqual({ balance: 10_000n, held: 0n });
  });

  it('verify is clean and the statements reconcile the hold_expired lines', async () => {
    const verify = await runTxsim(['verify', '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout).toBe(0);
    const report = JSON.parse(verify.stdout) as {
      checks: { name: string; violations: number }[];
      accounting: { ok: boolean; settled: boolean };
    };
    for (const check of report.checks) expect(check.violations, check.name).toBe(0);
    expect(report.accounting).toMatchObject({ ok: true, settled: true });
    expect(Number((await ns.db('accounting_statements').where('type', 'hold_expired').count({ n: '*' }))[0]!.n)).toBeGreaterThanOrEqual(1);
    // The sweeps' counters (--metrics-port) add up to the holds the database shows expired.
    const expiredHolds = Number((await ns.db('holds').where('state', 'expired').count({ n: '*' }))[0]!.n);
    let counted = 0;
    for (const id of ['e1', 'e2'])
      counted += sumOf(await scrape(`http://127.0.0.1:${metricsPorts[id]}/metrics`), 'txsim_holds_expired_total');
    expect(counted).toBe(expiredHolds);
  });
});

describe('verify of holds nobody expired', () => {
  it('reports an open hold more than the grace window past its expiry, and a refund over its capture', async () => {
    // No worker here: the rows are written as a worker without a sweep (or a bug) would leave them.
    const ns = await createTestNamespace('unswept');
    try {
      expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
      await ns.seed(1, { openingBalanceMinor: 10_000n });
      const now = new Date();
      const row = (id: string, type: string, amountMinor: number, over: Record<string, unknown> = {}) => ({
        id,
        type,
        account_id: 1,
        amount_minor: amountMinor,
        currency: 'EUR',
        body_hash: 'x'.repeat(64),
        status: 'applied',
        worker_id: 'test',
        processed_at: now,
        ...over,
      });
      const auth = '00000000-0000-4000-8000-00000000a001';
      const capture = '00000000-0000-4000-8000-00000000c001';
      const refund = '00000000-0000-4000-8000-00000000f001';
      await ns
        .db('transactions')
        .insert([
          row(auth, 'card_authorization', 3_000),
          row(capture, 'card_capture', 1_000, { authorization_id: auth }),
          row(refund, 'card_refund', 1_001, { authorization_id: auth, capture_id: capture }),
        ]);
      await ns.db('holds').insert({
        id: auth,
        account_id: 1,
        currency: 'EUR',
        merchant: 'Hotel',
        state: 'partially_captured',
        authorized_minor: 3_000,
        captured_minor: 1_000,
        refunded_minor: 0,
        expires_at: new Date(now.getTime() - 61_000),
        created_at: now,
        updated_at: now,
      });
      const verify = await runTxsim(['verify', '--json'], ns.env);
      expect(verify.code).toBe(4);
      const checks = (JSON.parse(verify.stdout) as { checks: { name: string; violations: number; examples: string[] }[] }).checks;
      const settled = checks.find((c) => c.name === 'authorizations_settled')!;
      expect(settled.violations).toBe(1);
      expect(settled.examples[0]).toContain(`hold ${auth} still partially_captured`);
      expect(checks.find((c) => c.name === 'refunds_within_capture')).toMatchObject({
        violations: 1,
        examples: [`capture ${capture}: captured 1000, refunded 1001`],
      });
    } finally {
      await ns.cleanup();
    }
  });
});
