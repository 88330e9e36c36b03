import { createHash } from 'node:crypto';
import type { Knex } from './knex.js';
import { sqlList, sqlTuple } from './sql-literal.js';

/**
 * The tables of `bench --ceiling` (src/bench/ceiling.ts): copies of the four tables txsim's apply
 * writes — `CREATE TABLE … LIKE` gives them the same columns, indexes and constraints — in the bench
 * database, created for one ceiling run and dropped after it. Nothing else reads or writes them.
 */
export const CEILING_TABLES = {
  transactions: 'ceiling_transactions',
  entries: 'ceiling_ledger_entries',
  events: 'ceiling_outbox_events',
  accounts: 'ceiling_accounts',
} as const;

/** Creates the ceiling tables empty, with the bench's accounts copied in (the account update needs its rows). */
export async function createCeilingTables(db: Knex): Promise<void> {
  await dropCeilingTables(db);
  await db.raw(`CREATE TABLE ${CEILING_TABLES.transactions} LIKE transactions`);
  await db.raw(`CREATE TABLE ${CEILING_TABLES.entries} LIKE ledger_entries`);
  await db.raw(`CREATE TABLE ${CEILING_TABLES.events} LIKE outbox_events`);
  await db.raw(`CREATE TABLE ${CEILING_TABLES.accounts} LIKE accounts`);
  await db.raw(`INSERT INTO ${CEILING_TABLES.accounts} SELECT * FROM accounts`);
}

export async function dropCeilingTables(db: Knex): Promise<void> {
  for (const table of Object.values(CEILING_TABLES)) await db.raw(`DROP TABLE IF EXISTS ${table}`);
}

/** Which of the ceiling tables exist (for the test that they are gone afterwards). */
export async function existingCeilingTables(db: Knex): Promise<string[]> {
  const [rows] = (await db.raw(
    `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN (${sqlList(Object.values(CEILING_TABLES))})`,
  )) as [{ t: string }[]];
  return rows.map((r) => r.t);
}

/** What the ceiling consumer takes from a message: no validation, no authorization, no idempotency check. */
export interface CeilingRow {
  readonly id: string;
  readonly runId: string | null;
  readonly type: string;
  readonly accountId: number;
  /** Signed: a credit to the customer (deposit) is positive, a debit negative. */
  readonly deltaMinor: bigint;
  readonly currency: string;
  readonly createdAt: Date | null;
  /** The raw body, hashed into `body_hash` as the outcome row has one. */
  readonly body: Buffer;
}

/** The contra account of every ceiling posting: one system account id (never updated, as in txsim). */
const CONTRA_ACCOUNT_ID = -1;

/**
 * One consumed batch as one round trip: START TRANSACTION, a multi-row INSERT per table (an outcome
 * row, two ledger entries and an outbox event per message, as txsim's apply writes for the v1 types),
 * one UPDATE of the touched accounts, COMMIT — sent together on a `multipleStatements` connection, as
 * the worker sends its writes with COMMIT. The values are literals escaped by `sqlTuple`.
 */
export function ceilingBatchSql(rows: readonly CeilingRow[], workerId: string, now: Date): string {
  const outcomes: string[] = [];
  const entries: string[] = [];
  const events: string[] = [];
  const deltas = new Map<number, bigint>();
  for (const r of rows) {
    const hash = createHash('sha256').update(r.body).digest('hex');
    outcomes.push(
      sqlTuple([
        r.id,
        r.runId,
        r.type,
        r.accountId,
        r.deltaMinor < 0n ? -r.deltaMinor : r.deltaMinor,
        r.currency,
        hash,
        'applied',
        workerId,
        r.createdAt,
        now,
      ]),
    );
    entries.push(sqlTuple([r.id, r.accountId, r.deltaMinor, now]), sqlTuple([r.id, CONTRA_ACCOUNT_ID, -r.deltaMinor, now]));
    events.push(sqlTuple([r.id, r.id, r.accountId, r.type, r.deltaMinor, r.currency, 'applied', now]));
    deltas.set(r.accountId, (deltas.get(r.accountId) ?? 0n) + r.deltaMinor);
  }
  const ids = [...deltas.keys()].sort((a, b) => a - b);
  const balanceCase = ids.map((id) => `WHEN ${id} THEN ${deltas.get(id)!}`).join(' ');
  const t = CEILING_TABLES;
  return [
    'START TRANSACTION',
    `INSERT INTO ${t.transactions} (id, run_id, type, account_id, amount_minor, currency, body_hash, status, worker_id, created_at, processed_at) VALUES ${outcomes.join(', ')}`,
    `INSERT INTO ${t.entries} (transaction_id, account_id, amount_minor, created_at) VALUES ${entries.join(', ')}`,
    `INSERT INTO ${t.events} (event_id, transaction_id, account_id, type, amount_minor, currency, outcome, created_at) VALUES ${events.join(', ')}`,
    `UPDATE ${t.accounts} SET balance_minor = balance_minor + CASE id ${balanceCase} END, event_seq = event_seq + 1 WHERE id IN (${sqlList(ids)})`,
    'COMMIT',
  ].join(';\n');
}
