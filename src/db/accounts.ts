import { openingTransactionId } from '../domain/ids.js';
import { openingPostings, SYSTEM_ACCOUNT_CODES, systemAccountId } from '../domain/ledger.js';
import { parseMinor } from '../domain/money.js';
import type { Knex } from './knex.js';
import { countOf, minorOf, rowsOf } from './rows.js';
import { isDuplicateKey, withTransaction } from './with-transaction.js';

/** A row of `accounts` as the app sees it (BIGINTs converted deliberately). */
export interface AccountRow {
  readonly id: number;
  readonly kind: 'customer' | 'system';
  readonly code: string | null;
  readonly name: string;
  readonly currency: string;
  readonly balanceMinor: bigint;
  /** What open card authorizations hold (v1.1); available = balance − held. */
  readonly heldMinor: bigint;
  readonly eventSeq: bigint;
}

type RawAccount = {
  id: string;
  kind: 'customer' | 'system';
  code: string | null;
  name: string;
  currency: string;
  balance_minor: string;
  /** Absent when a query did not select it. */
  held_minor?: string;
  event_seq: string;
};

function toAccount(row: RawAccount): AccountRow {
  return {
    id: Number(row.id),
    kind: row.kind,
    code: row.code,
    name: row.name,
    currency: row.currency,
    balanceMinor: parseMinor(row.balance_minor),
    heldMinor: row.held_minor === undefined ? 0n : parseMinor(row.held_minor),
    eventSeq: parseMinor(row.event_seq),
  };
}

/** Creates the system accounts of a currency if missing. Idempotent. */
export async function ensureSystemAccounts(db: Knex | Knex.Transaction, currency: string): Promise<void> {
  const rows = SYSTEM_ACCOUNT_CODES.map((code) => ({
    id: systemAccountId(code, currency),
    kind: 'system',
    code,
    name: `${code} ${currency}`,
    currency,
    balance_minor: 0,
  }));
  await db('accounts').insert(rows).onConflict('id').ignore();
}

export interface SeedAccountsOptions {
  readonly count: number;
  readonly firstId: number;
  readonly openingBalanceMinor: bigint;
  readonly currency: string;
  /** Rows per insert statement (bounded so one statement stays small). */
  readonly chunkSize?: number;
}

/**
 * Creates customer accounts `firstId .. firstId+count-1` with an opening balance posted from the
 * currency's opening-equity account, so the books balance from the first row. Accounts that already
 * exist are left exactly as they are (idempotent). Returns how many were created.
 */
export async function seedAccounts(db: Knex, options: SeedAccountsOptions): Promise<number> {
  const chunkSize = options.chunkSize ?? 500;
  await ensureSystemAccounts(db, options.currency);
  let created = 0;
  for (let start = options.firstId; start < options.firstId + options.count; start += chunkSize) {
    const ids = Array.from({ length: Math.min(chunkSize, options.firstId + options.count - start) }, (_, i) => start + i);
    // A seed running at once may insert some of these ids first (a duplicate key here, or a deadlock):
    // a fresh try reads them as existing and leaves them as they are.
    created += await withTransaction(
      db,
      async (trx) => {
        const existing = new Set((await trx('accounts').whereIn('id', ids).select('id')).map((r: { id: string }) => Number(r.id)));
        const fresh = ids.filter((id) => !existing.has(id));
        if (fresh.length === 0) return 0;
        const now = new Date();
        await trx('accounts').insert(
          fresh.map((id) => ({
            id,
            kind: 'customer',
            name: `Customer ${id}`,
            currency: options.currency,
            balance_minor: options.openingBalanceMinor.toString(),
          })),
        );
        if (options.openingBalanceMinor > 0n) {
          await trx('transactions').insert(
            fresh.map((id) => ({
              id: openingTransactionId(id),
              type: 'opening',
              account_id: id,
              amount_minor: options.openingBalanceMinor.toString(),
              currency: options.currency,
              body_hash: '0'.repeat(64),
              status: 'applied',
              balance_after_minor: options.openingBalanceMinor.toString(),
              worker_id: 'seed',
              attempts: 1,
              created_at: now,
              processed_at: now,
            })),
          );
          await trx('ledger_entries').insert(
            fresh.flatMap((id) =>
              openingPostings(id, options.currency, options.openingBalanceMinor).map((p) => ({
                transaction_id: openingTransactionId(id),
                account_id: p.accountId,
                amount_minor: p.amountMinor.toString(),
              })),
            ),
          );
        }
        return fresh.length;
      },
      { deadlockRetriesMax: 5, retryWhen: isDuplicateKey },
    );
  }
  return created;
}

export async function listAccounts(
  db: Knex,
  options: { kind?: 'customer' | 'system'; limit: number; afterId?: number },
): Promise<AccountRow[]> {
  const q = db('accounts')
    .select('id', 'kind', 'code', 'name', 'currency', 'balance_minor', 'event_seq')
    .orderBy('id')
    .limit(options.limit);
  if (options.kind) q.where('kind', options.kind);
  if (options.afterId !== undefined) q.where('id', '>', options.afterId);
  return (await q).map(toAccount);
}

/** How many accounts of a kind exist (what a limited `accounts list` shows a page of). */
export async function countAccounts(db: Knex, kind: 'customer' | 'system'): Promise<number> {
  const row = (await db('accounts').where('kind', kind).count({ n: '*' }).first()) as { n: string | number } | undefined;
  return countOf(row?.n);
}

/**
 * The sum of each account's ledger entries, for the ids given (absent ids have none). A system
 * account's `balance_minor` is never updated (the hot counter-accounts would serialize every
 * worker), so its balance is this sum.
 */
export async function entrySumsOfAccounts(db: Knex, ids: readonly number[]): Promise<Map<number, bigint>> {
  if (ids.length === 0) return new Map();
  const rows = rowsOf<{ account_id: string; s: string }>(
    await db.raw(
      `SELECT account_id, SUM(amount_minor) AS s FROM ledger_entries WHERE account_id IN (${ids.map(() => '?').join(',')}) GROUP BY account_id`,
      [...ids],
    ),
  );
  return new Map(rows.map((r) => [Number(r.account_id), minorOf(r.s)]));
}

/** Existing customer accounts in `firstId .. lastId`, counted by currency (what a seed would leave alone). */
export async function existingCurrenciesInRange(db: Knex, firstId: number, lastId: number): Promise<Map<string, number>> {
  const rows = rowsOf<{ currency: string; n: string }>(
    await db.raw(`SELECT currency, COUNT(*) AS n FROM accounts WHERE kind = 'customer' AND id BETWEEN ? AND ? GROUP BY currency`, [
      firstId,
      lastId,
    ]),
  );
  return new Map(rows.map((r) => [r.currency, countOf(r.n)]));
}

export async function getAccount(db: Knex, id: number): Promise<AccountRow | undefined> {
  const row = await db('accounts')
    .where('id', id)
    .first<RawAccount | undefined>('id', 'kind', 'code', 'name', 'currency', 'balance_minor', 'held_minor', 'event_seq');
  return row ? toAccount(row) : undefined;
}

/** Customer accounts (id, currency) for gen: all of them, or those in `ids`. Bounded by `limit`. */
export async function customerTargets(
  db: Knex,
  ids: readonly number[] | null,
  limit = 1_000_000,
): Promise<{ id: number; currency: string }[]> {
  const q = db('accounts').where('kind', 'customer').orderBy('id').limit(limit).select('id', 'currency');
  if (ids) q.whereIn('id', ids);
  return (await q).map((r: { id: string; currency: string }) => ({ id: Number(r.id), currency: r.currency }));
}
