import type { Knex } from './knex.js';
import { rowsOf } from './rows.js';
import { withTransaction } from './with-transaction.js';

/**
 * The SQL of hold expiry (worker/hold-expiry.ts decides when): one expired hold claimed with
 * `FOR UPDATE SKIP LOCKED`, its account locked, the rest of the hold released from `held`, the hold
 * set `expired` and its accounting event written to the outbox, in one transaction.
 */

/** What one expiry attempt did. */
export type ExpiryResult =
  /** A hold was expired: `releasedMinor` left the account's `held`. */
  | { readonly kind: 'expired'; readonly holdId: string; readonly accountId: number; readonly releasedMinor: bigint }
  /** No unclaimed hold is past its expiry. */
  | { readonly kind: 'none' }
  /** A hold was due but its account was locked by a batch: left for the next tick. */
  | { readonly kind: 'busy'; readonly holdId: string; readonly accountId: number };

/** The accounting event of an expiry (its id derives from the hold's: a retried expiry cannot write a second one). */
export interface ExpiryEvent {
  readonly eventId: string;
  readonly type: string;
}

type ClaimedHold = { id: string; account_id: string; currency: string; authorized_minor: string; captured_minor: string };
type LockedAccount = { id: string; balance_minor: string; held_minor: string; event_seq: string };

/**
 * Expires at most one hold whose `expires_at` is at or before `now` (the worker's clock, the one
 * captures are judged by). Neither lock waits: the hold is claimed with SKIP LOCKED (another worker's
 * sweep has the others), and its account too — a batch that holds the account may be capturing this
 * very hold, and waiting for it while holding the hold's lock would make a lock cycle with that batch.
 * A skipped account leaves the hold for the next tick. Every change of a hold happens under its
 * account's lock, so a capture and an expiry of one hold serialize there and only one of them wins.
 */
export async function expireOneHold(
  db: Knex,
  now: Date,
  event: (holdId: string) => ExpiryEvent,
  busyAccounts: ReadonlySet<number> = new Set(),
): Promise<ExpiryResult> {
  // Accounts this sweep found busy already: all their holds passed over, so a hot account does not stop the rest.
  const notSkipped = busyAccounts.size === 0 ? '' : ` AND account_id NOT IN (${[...busyAccounts].map(() => '?').join(', ')})`;
  return withTransaction(db, async (trx) => {
    let hold: ClaimedHold | undefined;
    // One state at a time: each is one range of ix_holds_expiry read in expires_at order, so LIMIT 1
    // locks one row (an IN over both states could sort, and lock every due hold before sorting).
    for (const state of ['open', 'partially_captured']) {
      hold = rowsOf<ClaimedHold>(
        await trx.raw(
          `SELECT id, account_id, currency, authorized_minor, captured_minor FROM holds FORCE INDEX (ix_holds_expiry)
            WHERE state = ? AND expires_at <= ?${notSkipped} ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
          [state, now, ...busyAccounts],
        ),
      )[0];
      if (hold) break;
    }
    if (!hold) return { kind: 'none' };
    const account = rowsOf<LockedAccount>(
      await trx.raw('SELECT id, balance_minor, held_minor, event_seq FROM accounts WHERE id = ? FOR UPDATE SKIP LOCKED', [hold.account_id]),
    )[0];
    if (!account) return { kind: 'busy', holdId: hold.id, accountId: Number(hold.account_id) };
    const releasedMinor = BigInt(hold.authorized_minor) - BigInt(hold.captured_minor);
    const eventSeq = BigInt(account.event_seq) + 1n;
    await trx.raw('UPDATE accounts SET held_minor = held_minor - ?, event_seq = ? WHERE id = ?', [
      releasedMinor.toString(),
      eventSeq.toString(),
      account.id,
    ]);
    await trx.raw(`UPDATE holds SET state = 'expired', updated_at = ? WHERE id = ?`, [now, hold.id]);
    const e = event(hold.id);
    await trx.raw(
      `INSERT INTO outbox_events (event_id, transaction_id, account_id, account_seq, type, amount_minor, currency, outcome, reason, balance_after_minor, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'applied', NULL, ?, ?)`,
      [e.eventId, hold.id, account.id, eventSeq.toString(), e.type, releasedMinor.toString(), hold.currency, account.balance_minor, now],
    );
    return { kind: 'expired', holdId: hold.id, accountId: Number(account.id), releasedMinor };
  });
}
