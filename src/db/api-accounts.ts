import type { Knex } from './knex.js';
import { OUTCOME_COLUMNS, outcomeOfRow, type Outcome, type RawOutcome } from './api-submissions.js';

/** The API's reads of accounts, their history, statements and daily figures. Pages are keyset-paginated. */

export interface ApiAccount {
  readonly id: number;
  readonly name: string;
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly createdAt: Date;
}

interface RawAccount {
  id: string;
  name: string;
  currency: string;
  balance_minor: string;
  created_at: Date;
}

const ACCOUNT_COLUMNS = ['id', 'name', 'currency', 'balance_minor', 'created_at'];

function accountOfRow(r: RawAccount): ApiAccount {
  return { id: Number(r.id), name: r.name, currency: r.currency, balanceMinor: BigInt(r.balance_minor), createdAt: r.created_at };
}

/** Customer accounts with ids above `afterId`, ascending; `onlyId` restricts the list to one account. */
export async function pageAccounts(db: Knex, options: { afterId: number; limit: number; onlyId: number | null }): Promise<ApiAccount[]> {
  const query = db('accounts').where('kind', 'customer').andWhere('id', '>', options.afterId);
  if (options.onlyId !== null) query.andWhere('id', options.onlyId);
  const rows = await query.orderBy('id', 'asc').limit(options.limit).select<RawAccount[]>(ACCOUNT_COLUMNS);
  return rows.map(accountOfRow);
}

export async function findCustomerAccount(db: Knex, id: number): Promise<ApiAccount | undefined> {
  const row = await db('accounts').where({ id, kind: 'customer' }).first<RawAccount | undefined>(ACCOUNT_COLUMNS);
  return row ? accountOfRow(row) : undefined;
}

/** Outcomes recorded for an account by status, over the account index. */
export async function outcomeCounts(db: Knex, accountId: number): Promise<{ applied: number; rejected: number }> {
  const rows = await db('transactions')
    .where('account_id', accountId)
    .groupBy('status')
    .select<{ status: string; n: string }[]>('status', db.raw('COUNT(*) AS n'));
  const count = (status: string) => Number(rows.find((r) => r.status === status)?.n ?? 0);
  return { applied: count('applied'), rejected: count('rejected') };
}

/** Submissions the API accepted for an account that have no outcome yet (accepted or queued). */
export async function pendingCount(db: Knex, accountId: number): Promise<number> {
  const [[row]] = (await db.raw(
    `SELECT COUNT(*) AS n FROM api_submissions s LEFT JOIN transactions t ON t.id = s.id WHERE s.account_id = ? AND t.id IS NULL`,
    [accountId],
  )) as [[{ n: string }]];
  return Number(row.n);
}

export interface HistoryFilter {
  readonly accountId: number;
  readonly status: 'applied' | 'rejected' | null;
  readonly type: string | null;
  /** Inclusive lower bound of processed_at. */
  readonly from: Date | null;
  /** Exclusive upper bound of processed_at. */
  readonly to: Date | null;
  /** Keyset cursor: the last row of the previous page. */
  readonly before: { processedAt: Date; id: string } | null;
  readonly limit: number;
}

/** An account's outcomes, newest first, over `ix_transactions_account (account_id, processed_at)`. */
export async function pageHistory(db: Knex, filter: HistoryFilter): Promise<Outcome[]> {
  const query = db('transactions').where('account_id', filter.accountId);
  if (filter.status) query.andWhere('status', filter.status);
  if (filter.type) query.andWhere('type', filter.type);
  if (filter.from) query.andWhere('processed_at', '>=', filter.from);
  if (filter.to) query.andWhere('processed_at', '<', filter.to);
  const before = filter.before;
  if (before) {
    query.andWhere((q) => {
      void q.where('processed_at', '<', before.processedAt).orWhere((q2) => {
        void q2.where('processed_at', '=', before.processedAt).andWhere('id', '<', before.id);
      });
    });
  }
  const rows = await query
    .orderBy([
      { column: 'processed_at', order: 'desc' },
      { column: 'id', order: 'desc' },
    ])
    .limit(filter.limit)
    .select<RawOutcome[]>(OUTCOME_COLUMNS);
  return rows.map(outcomeOfRow);
}

type StatementRow = {
  event_id: string;
  transaction_id: string;
  account_seq: string;
  type: string | null;
  outcome: 'applied' | 'rejected';
  reason: string | null;
  amount_minor: string | null;
  currency: string | null;
  balance_after_minor: string | null;
  occurred_at: Date;
};

export interface StatementLine {
  readonly eventId: string;
  readonly transactionId: string;
  readonly accountSeq: number;
  readonly type: string | null;
  readonly outcome: 'applied' | 'rejected';
  readonly reason: string | null;
  readonly amountMinor: bigint | null;
  readonly currency: string | null;
  readonly balanceAfterMinor: bigint | null;
  readonly occurredAt: Date;
}

/** An account's statement lines (the accounting system's), highest sequence number first. */
export async function pageStatement(
  db: Knex,
  options: { accountId: number; beforeSeq: number | null; limit: number },
): Promise<StatementLine[]> {
  const query = db('accounting_statements').where('account_id', options.accountId);
  if (options.beforeSeq !== null) query.andWhere('account_seq', '<', options.beforeSeq);
  const rows = await query
    .orderBy('account_seq', 'desc')
    .limit(options.limit)
    .select<StatementRow[]>(
      'event_id',
      'transaction_id',
      'account_seq',
      'type',
      'outcome',
      'reason',
      'amount_minor',
      'currency',
      'balance_after_minor',
      'occurred_at',
    );
  return rows.map((r) => ({
    eventId: r.event_id,
    transactionId: r.transaction_id,
    accountSeq: Number(r.account_seq),
    type: r.type,
    outcome: r.outcome,
    reason: r.reason,
    amountMinor: r.amount_minor === null ? null : BigInt(r.amount_minor),
    currency: r.currency,
    balanceAfterMinor: r.balance_after_minor === null ? null : BigInt(r.balance_after_minor),
    occurredAt: r.occurred_at,
  }));
}

type DailyRow = {
  day: string;
  type: string;
  currency: string;
  n: string;
  total: string;
  average: string;
};

export interface DailyFigure {
  readonly day: string;
  readonly type: string;
  readonly currency: string;
  readonly count: number;
  readonly totalMinor: bigint;
  /** AVG() of BIGINT is DECIMAL: kept as its text (minor units, 4 decimals), never a float. */
  readonly averageMinor: string;
}

/**
 * Applied transactions per day, type and currency between two days (inclusive), optionally for one
 * account and one type. Opening balances are left out: they are not traffic.
 */
export async function dailyFigures(
  db: Knex,
  options: { from: string; to: string; accountId: number | null; type: string | null },
): Promise<DailyFigure[]> {
  const query = db('transactions')
    .where('status', 'applied')
    .andWhereNot('type', 'opening')
    .andWhere('processed_at', '>=', `${options.from} 00:00:00`)
    .andWhere('processed_at', '<', db.raw('DATE_ADD(?, INTERVAL 1 DAY)', [options.to]));
  if (options.accountId !== null) query.andWhere('account_id', options.accountId);
  if (options.type !== null) query.andWhere('type', options.type);
  const rows = await query
    .groupByRaw('DATE(processed_at), type, currency')
    .orderByRaw('DATE(processed_at), type, currency')
    .select<DailyRow[]>(
      db.raw("DATE_FORMAT(DATE(processed_at), '%Y-%m-%d') AS day"),
      'type',
      'currency',
      db.raw('COUNT(*) AS n'),
      db.raw('SUM(amount_minor) AS total'),
      db.raw('AVG(amount_minor) AS average'),
    );
  return rows.map((r) => ({
    day: r.day,
    type: r.type,
    currency: r.currency,
    count: Number(r.n),
    totalMinor: BigInt(String(r.total).split('.')[0] ?? '0'),
    averageMinor: String(r.average),
  }));
}

/** The first and last day with applied traffic (the analytics defaults), or null on an empty ledger. */
export async function trafficDays(db: Knex, accountId: number | null): Promise<{ first: string; last: string } | null> {
  const [[row]] = (await db.raw(
    `SELECT DATE_FORMAT(MIN(processed_at), '%Y-%m-%d') AS first, DATE_FORMAT(MAX(processed_at), '%Y-%m-%d') AS last FROM transactions
      WHERE status = 'applied' AND type <> 'opening'${accountId === null ? '' : ' AND account_id = ?'}`,
    accountId === null ? [] : [accountId],
  )) as [[{ first: string | null; last: string | null }]];
  return row.first && row.last ? { first: row.first, last: row.last } : null;
}
