import type { Knex } from './knex.js';
import { countOf, firstRowOf, minorOf, rowsOf } from './rows.js';

/** Reads of the double-entry ledger (`ledger_entries`) and the balances it must agree with. */

/** One posting of a transaction, as mysql2 returns it (BIGINTs as strings). */
export interface EntryRow {
  readonly account_id: string;
  readonly amount_minor: string;
}

export async function entriesOfTransaction(db: Knex, transactionId: string): Promise<EntryRow[]> {
  return db('ledger_entries').where('transaction_id', transactionId).select<EntryRow[]>('account_id', 'amount_minor');
}

/** The sum and number of an account's entries. */
export async function entrySummaryOfAccount(db: Knex, accountId: number): Promise<{ sumMinor: bigint; count: number }> {
  const row = firstRowOf<{ s: string; n: string }>(
    await db.raw('SELECT COALESCE(SUM(amount_minor), 0) AS s, COUNT(*) AS n FROM ledger_entries WHERE account_id = ?', [accountId]),
  );
  return { sumMinor: minorOf(row?.s), count: countOf(row?.n) };
}

/** Sum and number of all entries (one scan). */
export async function ledgerSummary(db: Knex): Promise<{ sumMinor: bigint; entries: number }> {
  const row = firstRowOf<{ s: string; n: string }>(
    await db.raw('SELECT COALESCE(SUM(amount_minor), 0) AS s, COUNT(*) AS n FROM ledger_entries'),
  );
  return { sumMinor: minorOf(row?.s), entries: countOf(row?.n) };
}

/** Customer accounts and the money they hold in one currency (amounts of different currencies never add up). */
export interface CurrencyTotal {
  readonly currency: string;
  readonly customerAccounts: number;
  readonly customerBalanceMinor: bigint;
}

/** What `verify` reports besides its checks: accounts, outcomes and the money customers hold, per currency. */
export interface BookTotals {
  readonly customerAccounts: number;
  /** One entry per currency of the customer accounts, by currency code. */
  readonly byCurrency: readonly CurrencyTotal[];
  /** Outcomes other than seeded opening balances. */
  readonly transactions: number;
  readonly applied: number;
  readonly rejected: number;
}

export async function bookTotals(db: Knex): Promise<BookTotals> {
  const row = firstRowOf<{ accounts: string; tx: string; applied: string; rejected: string }>(
    await db.raw(
      `SELECT (SELECT COUNT(*) FROM accounts WHERE kind = 'customer') AS accounts,
            (SELECT COUNT(*) FROM transactions WHERE type IS NULL OR type <> 'opening') AS tx,
            (SELECT COUNT(*) FROM transactions WHERE status = 'applied' AND (type IS NULL OR type <> 'opening')) AS applied,
            (SELECT COUNT(*) FROM transactions WHERE status = 'rejected') AS rejected`,
    ),
  );
  const currencies = rowsOf<{ currency: string; n: string; balance: string | null }>(
    await db.raw(
      `SELECT currency, COUNT(*) AS n, COALESCE(SUM(balance_minor), 0) AS balance FROM accounts WHERE kind = 'customer' GROUP BY currency ORDER BY currency`,
    ),
  );
  return {
    customerAccounts: countOf(row?.accounts),
    byCurrency: currencies.map((c) => ({
      currency: c.currency,
      customerAccounts: countOf(c.n),
      customerBalanceMinor: minorOf(c.balance ?? '0'),
    })),
    transactions: countOf(row?.tx),
    applied: countOf(row?.applied),
    rejected: countOf(row?.rejected),
  };
}

/** Ids of a run's transactions with more than one pair of entries (applied twice). */
export async function overappliedInRun(db: Knex, runId: string): Promise<string[]> {
  const rows = rowsOf<{ id: string }>(
    await db.raw(
      `SELECT t.id FROM transactions t JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.run_id = ? GROUP BY t.id HAVING COUNT(e.id) > 2`,
      [runId],
    ),
  );
  return rows.map((r) => r.id);
}

/** AUTO_INCREMENT high-water marks of the ledger and the outbox: O(1), where COUNT(*) over a growing table would load the database. */
export async function outcomeMarks(db: Knex): Promise<{ entries: number; events: number }> {
  const row = firstRowOf<{ entries: string; events: string }>(
    await db.raw(
      'SELECT (SELECT COALESCE(MAX(id), 0) FROM ledger_entries) AS entries, (SELECT COALESCE(MAX(id), 0) FROM outbox_events) AS events',
    ),
  );
  return { entries: countOf(row?.entries), events: countOf(row?.events) };
}
