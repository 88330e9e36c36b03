import type { OutboxRow } from '../domain/accounting-event.js';
import type { Knex } from './knex.js';
import { countOf, firstRowOf } from './rows.js';

/**
 * Storage of the outbox relay: `outbox_events` (sql/001-core.sql). Workers insert the rows inside
 * their ledger transaction (worker/apply-batch.ts); the relay claims, marks and prunes them here.
 * Every function runs in the caller's transaction, which holds the claim's row locks.
 */

/** What mysql2 answers to a DELETE or UPDATE run through `raw`. */
interface ResultHeader {
  readonly affectedRows: number;
}

/**
 * mysql2 answers `raw` with `[rows or result header, fields]`, which knex types as `any`: the one
 * place this file states the shape it relies on.
 */
function firstOf<T>(raw: unknown): T {
  if (!Array.isArray(raw) || raw.length === 0) throw new Error('unexpected answer from the database driver');
  return raw[0] as T;
}

/**
 * Claims up to `limitMax` unsent events, oldest first, locking them for `trx`. Rows another relay
 * holds (or a worker is still inserting) are skipped, never waited for: `SKIP LOCKED`.
 */
export async function claimUnsentOutboxEvents(trx: Knex.Transaction, limitMax: number): Promise<OutboxRow[]> {
  const raw: unknown = await trx.raw(
    `SELECT id, event_id, transaction_id, account_id, account_seq, type, amount_minor, currency, outcome, reason, balance_after_minor, created_at
       FROM outbox_events WHERE sent_at IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
    [limitMax],
  );
  return firstOf<OutboxRow[]>(raw);
}

/** Marks claimed events sent (the claim's transaction commits it together with the claim). */
export async function markOutboxEventsSent(trx: Knex.Transaction, ids: readonly string[]): Promise<void> {
  await trx('outbox_events')
    .whereIn('id', [...ids])
    .update({ sent_at: trx.raw('CURRENT_TIMESTAMP(3)') });
}

/** Deletes at most `limitMax` events sent before `sentBefore`, oldest first; unsent ones are never touched. Returns how many. */
export async function deleteSentOutboxEvents(trx: Knex.Transaction, sentBefore: Date, limitMax: number): Promise<number> {
  const raw: unknown = await trx.raw('DELETE FROM outbox_events WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY sent_at LIMIT ?', [
    sentBefore,
    limitMax,
  ]);
  return firstOf<ResultHeader>(raw).affectedRows;
}

/** Events not yet relayed, through the pending index (`sent_at IS NULL` is its leading range): cheap while the relay keeps up. */
export async function unsentOutboxEventCount(db: Knex): Promise<number> {
  const row = firstRowOf<{ n: string }>(await db.raw('SELECT COUNT(*) AS n FROM outbox_events WHERE sent_at IS NULL'));
  return countOf(row?.n);
}

/**
 * Takes or renews the relay lease (sql/010-relay-lease.sql) for `holder`: it is taken when free or
 * lapsed, renewed when `holder` has it, and left alone otherwise. True when `holder` holds it for
 * the next `leaseMs`. The database's clock decides, so relays on machines whose clocks differ agree.
 */
export async function takeRelayLease(db: Knex, holder: string, leaseMs: number): Promise<boolean> {
  const raw: unknown = await db.raw(
    `UPDATE outbox_relay_lease SET holder = ?, expires_at = UTC_TIMESTAMP(3) + INTERVAL ? MICROSECOND
      WHERE id = 1 AND (holder = ? OR expires_at < UTC_TIMESTAMP(3))`,
    [holder, leaseMs * 1000, holder],
  );
  // Matched (mysql2 reports found rows) means held: the WHERE is the whole decision.
  return firstOf<ResultHeader>(raw).affectedRows > 0;
}

/** Gives the lease up when `holder` has it, so a standing-by relay takes it over at once. */
export async function releaseRelayLease(db: Knex, holder: string): Promise<void> {
  await db.raw(`UPDATE outbox_relay_lease SET expires_at = '1970-01-02 00:00:00' WHERE id = 1 AND holder = ?`, [holder]);
}
