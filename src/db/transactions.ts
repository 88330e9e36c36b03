import type { Knex } from './knex.js';
import { countOf, firstRowOf, minorOf, rowsOf } from './rows.js';

/**
 * Reads of `transactions`, the outcome of every id (the worker's writes are in apply-batch-sql.ts,
 * seeding's in accounts.ts). Rows come as mysql2 hands them over: BIGINT columns as strings,
 * DATETIME(3) as Date; `outcomeOfRow` converts one for printing.
 */

/** Every column of a `transactions` row, as mysql2 returns it. */
export interface TransactionRow {
  readonly id: string;
  readonly run_id: string | null;
  readonly type: string | null;
  readonly account_id: string | null;
  readonly amount_minor: string | null;
  readonly currency: string | null;
  readonly merchant: string | null;
  readonly to_account_id: string | null;
  readonly to_balance_after_minor: string | null;
  readonly authorization_id: string | null;
  readonly body_hash: string;
  readonly status: 'applied' | 'rejected';
  readonly reason: string | null;
  readonly detail: string | null;
  readonly balance_after_minor: string | null;
  readonly worker_id: string;
  readonly attempts: number;
  readonly created_at: Date | null;
  readonly processed_at: Date;
}

/** One transaction's outcome row, or undefined when the id has none yet. */
export async function getTransaction(db: Knex, id: string): Promise<TransactionRow | undefined> {
  return (await db('transactions').where('id', id).first()) as TransactionRow | undefined;
}

/**
 * An outcome as the app (and every `--json`) sees it: camelCase, account ids as numbers, money as
 * bigint (printed as a decimal string), times as Date (printed as ISO 8601). Columns a partial row
 * did not select are null.
 */
export interface TransactionOutcome {
  readonly id: string;
  readonly status: 'applied' | 'rejected';
  readonly runId: string | null;
  readonly type: string | null;
  readonly accountId: number | null;
  readonly amountMinor: bigint | null;
  readonly currency: string | null;
  readonly merchant: string | null;
  /** A transfer's destination (contract v1.1); null for the other types. */
  readonly toAccountId: number | null;
  readonly reason: string | null;
  readonly detail: string | null;
  readonly balanceAfterMinor: bigint | null;
  /** An applied transfer's destination balance after the credit; null otherwise. */
  readonly toBalanceAfterMinor: bigint | null;
  readonly workerId: string;
  readonly attempts: number | null;
  readonly createdAt: Date | null;
  readonly processedAt: Date;
}

/** Converts a (possibly partial) `transactions` row deliberately: BIGINT strings to number or bigint. */
export function outcomeOfRow(
  row: Partial<TransactionRow> & Pick<TransactionRow, 'id' | 'status' | 'worker_id' | 'processed_at'>,
): TransactionOutcome {
  const money = (v: string | null | undefined) => (v === null || v === undefined ? null : minorOf(v));
  return {
    id: row.id,
    status: row.status,
    runId: row.run_id ?? null,
    type: row.type ?? null,
    accountId: row.account_id === null || row.account_id === undefined ? null : Number(row.account_id),
    amountMinor: money(row.amount_minor),
    currency: row.currency ?? null,
    merchant: row.merchant ?? null,
    toAccountId: row.to_account_id === null || row.to_account_id === undefined ? null : Number(row.to_account_id),
    reason: row.reason ?? null,
    detail: row.detail ?? null,
    balanceAfterMinor: money(row.balance_after_minor),
    toBalanceAfterMinor: money(row.to_balance_after_minor),
    workerId: row.worker_id,
    attempts: row.attempts ?? null,
    createdAt: row.created_at ? new Date(row.created_at) : null,
    processedAt: new Date(row.processed_at),
  };
}

export type RecentTransaction = Pick<
  TransactionRow,
  | 'id'
  | 'type'
  | 'account_id'
  | 'amount_minor'
  | 'currency'
  | 'status'
  | 'reason'
  | 'detail'
  | 'balance_after_minor'
  | 'to_account_id'
  | 'to_balance_after_minor'
  | 'processed_at'
  | 'worker_id'
>;

const RECENT_COLUMNS = [
  'id',
  'type',
  'account_id',
  'amount_minor',
  'currency',
  'status',
  'reason',
  'detail',
  'balance_after_minor',
  'to_account_id',
  'to_balance_after_minor',
  'processed_at',
  'worker_id',
] as const;

/**
 * The latest outcomes on an account, newest first: its own transactions and the transfers it received.
 * A transfer's row is filed under its source account and `to_account_id` has no index (see
 * sql/006-transfers.sql), so the incoming ones are found through the account's own ledger entries.
 */
export async function recentTransactionsOfAccount(db: Knex, accountId: number, limit: number): Promise<RecentTransaction[]> {
  const [own, incoming] = await Promise.all([
    db('transactions')
      .where('account_id', accountId)
      .orderBy('processed_at', 'desc')
      .limit(limit)
      .select<RecentTransaction[]>(...RECENT_COLUMNS),
    db('ledger_entries as e')
      .join('transactions as t', 't.id', 'e.transaction_id')
      .where('e.account_id', accountId)
      .andWhere('t.to_account_id', accountId)
      .orderBy('e.id', 'desc')
      .limit(limit)
      .select<RecentTransaction[]>(...RECENT_COLUMNS.map((c) => `t.${c}`)),
  ]);
  return [...own, ...incoming].sort((a, b) => b.processed_at.getTime() - a.processed_at.getTime()).slice(0, limit);
}

/** A transaction as it posted to one account: the transaction's row and the entry's signed amount. */
export type RecentPosting = RecentTransaction & { entry_minor: string };

/**
 * The latest entries posted to an account, newest first, each with its transaction. A system account
 * owns no transactions of its own (they are filed under their customer account), so this is how its
 * activity is read; `ix_ledger_account` holds the entries of one account in id order.
 */
export async function recentPostingsOfAccount(db: Knex, accountId: number, limit: number): Promise<RecentPosting[]> {
  return db('ledger_entries as e')
    .join('transactions as t', 't.id', 'e.transaction_id')
    .where('e.account_id', accountId)
    .orderBy('e.id', 'desc')
    .limit(limit)
    .select<RecentPosting[]>(...RECENT_COLUMNS.map((c) => `t.${c}`), 'e.amount_minor as entry_minor');
}

export type OutcomeOfId = Pick<TransactionRow, 'id' | 'status' | 'reason'>;

/** The outcomes recorded for some ids (ids without one are simply absent). */
export async function outcomesOfIds(db: Knex, ids: readonly string[]): Promise<OutcomeOfId[]> {
  return db('transactions').whereIn('id', ids).select<OutcomeOfId[]>('id', 'status', 'reason');
}

/** How many outcomes a run has (uses the run index: real work on a large run). */
export async function runOutcomeCount(db: Knex, runId: string): Promise<number> {
  const row = firstRowOf<{ n: string }>(await db.raw('SELECT COUNT(*) AS n FROM transactions WHERE run_id = ?', [runId]));
  return countOf(row?.n);
}

/**
 * Every outcome of a run that has a creation time: when it was processed (µs after the run's first
 * message was created) and its created → processed latency (µs).
 */
export async function runLatencyTimeline(db: Knex, runId: string): Promise<{ atUs: number; latencyUs: number }[]> {
  const rows = rowsOf<{ at_us: string; us: string }>(
    await db.raw(
      `SELECT TIMESTAMPDIFF(MICROSECOND, (SELECT MIN(created_at) FROM transactions WHERE run_id = ?), processed_at) AS at_us,
              TIMESTAMPDIFF(MICROSECOND, created_at, processed_at) AS us
         FROM transactions WHERE run_id = ? AND created_at IS NOT NULL`,
      [runId, runId],
    ),
  );
  return rows.map((r) => ({ atUs: Number(r.at_us), latencyUs: Number(r.us) }));
}

/** A run's outcomes by status (the run index covers it: one range scan, run once after a bench). */
export async function runOutcomesByStatus(db: Knex, runId: string): Promise<{ applied: number; rejected: number }> {
  const rows = rowsOf<{ status: string; n: string }>(
    await db.raw('SELECT status, COUNT(*) AS n FROM transactions WHERE run_id = ? GROUP BY status', [runId]),
  );
  const of = (status: string) => countOf(rows.find((r) => r.status === status)?.n);
  return { applied: of('applied'), rejected: of('rejected') };
}

/** A run's outcome count and the time from its first message created to its last processed. */
export async function runSpan(db: Knex, runId: string): Promise<{ count: number; spanUs: number }> {
  const row = firstRowOf<{ us: string | null; n: string }>(
    await db.raw(
      `SELECT TIMESTAMPDIFF(MICROSECOND, MIN(created_at), MAX(processed_at)) AS us, COUNT(*) AS n FROM transactions WHERE run_id = ?`,
      [runId],
    ),
  );
  return { count: countOf(row?.n), spanUs: Number(row?.us ?? 0) };
}
