import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bookTotals,
  entriesOfTransaction,
  entrySummaryOfAccount,
  ledgerSummary,
  outcomeMarks,
  overappliedInRun,
} from '../../src/db/ledger.js';
import { seedAccounts } from '../../src/db/accounts.js';
import { BALANCES_OFF_ENTRIES, UNBALANCED_LEDGER, UNBALANCED_TRANSACTIONS } from '../../src/db/ledger-checks.js';
import { missingStatementCount, unsentOutboxCount, webhookCounts } from '../../src/db/reconcile-queries.js';
import { recordStatement, recordWebhookOutcome } from '../../src/db/statements.js';
import {
  finishRun,
  getRun,
  recordRunReturns,
  runFollowUpIds,
  runReturnedIds,
  runStart,
  saveRunInstance,
  saveRunProgress,
  startRun,
  startRunInstance,
} from '../../src/db/runs.js';
import { getTransaction, outcomesOfIds, recentTransactionsOfAccount, runOutcomeCount } from '../../src/db/transactions.js';
import { countViolations, violatingRows } from '../../src/db/violations.js';
import { openingTransactionId } from '../../src/domain/ids.js';
import { RunRecord } from '../../src/gen/run-record.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';

/** The repositories against the real server: the row shapes they promise and the money they convert. */
describe('repositories', () => {
  let ns: TestNamespace;
  const runId = '5d0c2b8e-6c1f-5a43-9d7e-0f1e2d3c4b5a';

  beforeAll(async () => {
    ns = await createTestNamespace('repo');
    await ns.seed(3, { openingBalanceMinor: 9_000_000_000_000_000n });
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  it('runs: two instances saving at once never deadlock, and the run row ends with their sums', async () => {
    const splitRunId = '5d0c2b8e-6c1f-5a43-9d7e-0f1e2d3c4b5b';
    await startRun(ns.db, { id: splitRunId, seed: 'split', countRequested: 400, optionsJson: '{}', startedAt: new Date() });
    for (const no of [1, 2]) {
      await startRunInstance(ns.db, splitRunId, { no, count: 2, countShare: 200, startedAt: new Date() });
    }
    // Each instance saves its progress as gen does, both at once; InnoDB used to pick one as a deadlock victim.
    const saves = (no: number) => async () => {
      for (let i = 1; i <= 150; i++) {
        await saveRunInstance(ns.db, splitRunId, no, { published: i, confirmed: i, dropped: 0, late: 0 });
      }
      await saveRunInstance(ns.db, splitRunId, no, { published: 200, confirmed: 200, dropped: 0, late: 0, status: 'completed' });
    };
    await Promise.all([saves(1)(), saves(2)()]);
    const [[row]] = (await ns.db.raw('SELECT published, confirmed, status FROM runs WHERE id = ?', [splitRunId])) as [
      [{ published: number; confirmed: number; status: string }],
    ];
    expect(row).toEqual({ published: 400, confirmed: 400, status: 'completed' });
  });

  it('runs: the final save waits for a progress save under way, whose older counts would otherwise overwrite it', async () => {
    const lateRunId = '5d0c2b8e-6c1f-5a43-9d7e-0f1e2d3c4b5c';
    const followUpId = '00000000-0000-5000-8000-00000000abcd';
    await startRun(ns.db, { id: lateRunId, seed: 'late', countRequested: 50, optionsJson: '{}', startedAt: new Date() });
    const record = new RunRecord(ns.db, lateRunId);
    record.addFollowUp(followUpId);
    // Another transaction holds the follow-up's key, so the progress save stops at its first write.
    const blocker = await ns.db.transaction();
    await blocker('run_followups').insert({ run_id: lateRunId, transaction_id: followUpId });
    const progress = record.saveProgress({ published: 10, confirmed: 10, late: 0, dropped: 0 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const end = { published: 50, confirmed: 50, returned: 0, nacked: 0, invalid: 0, late: 0, dropped: 0 };
    const finished = record.finish([], { ...end, status: 'completed', finishedAt: new Date() }, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await blocker.rollback();
    await Promise.all([progress, finished]);
    expect(await getRun(ns.db, lateRunId)).toMatchObject({ status: 'completed', published: 50, confirmed: 50 });
    expect(await runFollowUpIds(ns.db, lateRunId)).toEqual([followUpId]);
  });

  it('accounts: seeds of overlapping ranges at once create each account once, and the books balance', async () => {
    const own = await createTestNamespace('seedrace');
    try {
      const seed = (firstId: number) => seedAccounts(own.db, { firstId, count: 1_500, openingBalanceMinor: 1_000n, currency: 'EUR' });
      const created = await Promise.all([seed(1_000), seed(1_500), seed(1_000)]);
      expect(created.reduce((a, b) => a + b, 0)).toBe(2_000);
      const [[row]] = (await own.db.raw('SELECT COUNT(*) AS n FROM accounts WHERE id > 0')) as [[{ n: number }]];
      expect(Number(row.n)).toBe(2_000);
      for (const check of [UNBALANCED_LEDGER, UNBALANCED_TRANSACTIONS, BALANCES_OFF_ENTRIES])
        expect(await countViolations(own.db, check)).toBe(0);
    } finally {
      await own.cleanup();
    }
  });

  it('runs: a re-run keeps the largest count, progress and the end are saved, returns are idempotent', async () => {
    await startRun(ns.db, { id: runId, seed: 's', countRequested: 100, optionsJson: '{}', startedAt: new Date() });
    await startRun(ns.db, { id: runId, seed: 's', countRequested: 40, optionsJson: '{}', startedAt: new Date() });
    expect(await getRun(ns.db, runId)).toEqual({ id: runId, status: 'running', countRequested: 100, published: 0, confirmed: 0 });
    await saveRunProgress(ns.db, runId, { published: 30, confirmed: 20 });
    expect(await getRun(ns.db, runId)).toMatchObject({ published: 30, confirmed: 20 });

    const returned = Array.from({ length: 1_203 }, (_, i) => `00000000-0000-5000-8000-${String(i).padStart(12, '0')}`);
    await recordRunReturns(ns.db, runId, returned);
    await recordRunReturns(ns.db, runId, returned.slice(0, 10));
    expect((await runReturnedIds(ns.db, runId)).size).toBe(1_203);

    await finishRun(ns.db, runId, {
      published: 100,
      confirmed: 97,
      returned: 1_203,
      nacked: 3,
      invalid: 5,
      status: 'incomplete',
      finishedAt: new Date(),
    });
    expect(await getRun(ns.db, runId)).toEqual({ id: runId, status: 'incomplete', countRequested: 100, published: 100, confirmed: 97 });
    const [[row]] = (await ns.db.raw('SELECT nacked, invalid, finished_at FROM runs WHERE id = ?', [runId])) as [
      [{ nacked: number; invalid: number; finished_at: Date | null }],
    ];
    expect(row).toMatchObject({ nacked: 3, invalid: 5 });
    expect(row.finished_at).toBeInstanceOf(Date);
    expect(await getRun(ns.db, '00000000-0000-5000-8000-000000000000')).toBeUndefined();
  });

  it('runs: the flow epoch of the first start is kept, whichever start of the run comes later', async () => {
    const flowRunId = '5d0c2b8e-6c1f-5a43-9d7e-0f1e2d3c4b5d';
    const start = (flowEpochMs: number, ratePerS: number) =>
      startRun(ns.db, {
        id: flowRunId,
        seed: 'f',
        countRequested: 10,
        optionsJson: JSON.stringify({ ratePerS, flowEpochMs }),
        startedAt: new Date(),
      });
    await Promise.all([start(1_000, 5), start(2_000, 5)]);
    const first = JSON.parse((await runStart(ns.db, flowRunId))!.optionsJson) as { flowEpochMs: number };
    expect([1_000, 2_000]).toContain(first.flowEpochMs);
    await start(3_000, 7);
    // The other options are the latest start's; the epoch stays a number, as JSON.
    expect(JSON.parse((await runStart(ns.db, flowRunId))!.optionsJson)).toEqual({ ratePerS: 7, flowEpochMs: first.flowEpochMs });
  });

  it('ledger and transactions: balances beyond 2^53 come back exact, as bigint', async () => {
    const summary = await entrySummaryOfAccount(ns.db, 2);
    expect(summary).toEqual({ sumMinor: 9_000_000_000_000_000n, count: 1 });
    expect(await ledgerSummary(ns.db)).toEqual({ sumMinor: 0n, entries: 6 });
    expect(await bookTotals(ns.db)).toEqual({
      customerAccounts: 3,
      byCurrency: [{ currency: 'EUR', customerAccounts: 3, customerBalanceMinor: 27_000_000_000_000_000n }],
      transactions: 0,
      applied: 0,
      rejected: 0,
    });

    const opening = openingTransactionId(2);
    const tx = await getTransaction(ns.db, opening);
    expect(tx).toMatchObject({ id: opening, type: 'opening', status: 'applied', amount_minor: '9000000000000000', account_id: '2' });
    expect(tx?.processed_at).toBeInstanceOf(Date);
    expect(await getTransaction(ns.db, '00000000-0000-5000-8000-000000000000')).toBeUndefined();
    expect((await entriesOfTransaction(ns.db, opening)).map((e) => e.amount_minor).sort()).toEqual([
      '-9000000000000000',
      '9000000000000000',
    ]);
    expect(await recentTransactionsOfAccount(ns.db, 2, 5)).toHaveLength(1);
    expect(await outcomesOfIds(ns.db, [opening, '00000000-0000-5000-8000-000000000000'])).toEqual([
      { id: opening, status: 'applied', reason: null },
    ]);
    expect(await runOutcomeCount(ns.db, runId)).toBe(0);
    expect(await overappliedInRun(ns.db, runId)).toEqual([]);
    expect((await outcomeMarks(ns.db)).entries).toBeGreaterThanOrEqual(6);
  });

  it('violation queries: a clean ledger has none; an unbalanced entry is counted and shown', async () => {
    expect(await countViolations(ns.db, UNBALANCED_TRANSACTIONS)).toBe(0);
    expect(await countViolations(ns.db, UNBALANCED_LEDGER)).toBe(0);
    const opening = openingTransactionId(3);
    await ns.db('ledger_entries').insert({ transaction_id: opening, account_id: 3, amount_minor: '7' });
    try {
      expect(await countViolations(ns.db, UNBALANCED_TRANSACTIONS)).toBe(1);
      expect(await violatingRows(ns.db, UNBALANCED_TRANSACTIONS, 5)).toEqual([{ transaction_id: opening, s: '7' }]);
      expect(await countViolations(ns.db, UNBALANCED_LEDGER)).toBe(1);
      expect(await violatingRows(ns.db, UNBALANCED_LEDGER, 5)).toEqual([{ currency: 'EUR', s: '7' }]);
    } finally {
      await ns.db('ledger_entries').where({ transaction_id: opening, amount_minor: '7' }).delete();
    }
  });

  it('webhook outcomes: only a pending delivery takes one, so a late attempt never turns delivered back to failed', async () => {
    const event = {
      eventId: '0f0f0f0f-1111-5222-8333-444444444444',
      transactionId: '0f0f0f0f-1111-5222-8333-555555555555',
      accountId: 1,
      accountSeq: 1,
      type: 'deposit',
      outcome: 'applied' as const,
      reason: null,
      amountMinor: 100n,
      currency: 'EUR',
      balanceAfterMinor: 100n,
      occurredAt: new Date().toISOString(),
    };
    expect(await recordStatement(ns.db, event, 'http://receiver.test/hooks')).toEqual({
      inserted: true,
      webhookStatus: 'pending',
      webhookCreatedAt: expect.any(Date),
    });
    await recordWebhookOutcome(ns.db, event.eventId, { status: 'delivered', attempts: 2, responseStatus: 200, responseBody: 'ok' });
    await recordWebhookOutcome(ns.db, event.eventId, {
      status: 'failed',
      attempts: 7,
      responseStatus: 503,
      responseBody: 'down',
      lastError: 'HTTP 503',
    });
    const row = await ns.db('webhook_deliveries').where('event_id', event.eventId).first('status', 'attempts', 'response_status');
    expect(row).toEqual({ status: 'delivered', attempts: 2, response_status: 200 });
    await ns.db('accounting_statements').where('event_id', event.eventId).del();
    await ns.db('webhook_deliveries').where('event_id', event.eventId).del();
  });

  it('reconciliation counts read the accounting tables', async () => {
    expect(await unsentOutboxCount(ns.db)).toBe(0);
    expect(await missingStatementCount(ns.db)).toBe(0);
    expect(await webhookCounts(ns.db)).toEqual({ pending: 0, delivered: 0, failed: 0 });
  });
});
