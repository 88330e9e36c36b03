import type { AccountingEvent, EventOutcome } from '../domain/accounting-event.js';
import { parseMinor } from '../domain/money.js';
import type { Knex } from './knex.js';

/**
 * The queries of `webhook_deliveries` that let consumers share the pending deliveries safely: find
 * the ones nobody works on, take one over, show that one is being worked on, and count attempts that
 * ended without an outcome.
 *
 * `updated_at` is the lease: a consumer working on a pending delivery (the statements consumer
 * retrying it for a message it holds, or one that took it over) refreshes it at least every
 * `WebhookForwarder.touchEveryMs` while it makes attempts, so a pending row not updated for longer than
 * the orphan window has nobody working on it. Times come from this process's clock, as every other
 * time of these tables (recordStatement writes `created_at` and `updated_at` the same way).
 */

/** A pending delivery with the event it carries, rebuilt from its statement line (so the body is the first one, byte for byte). */
export interface PendingDelivery {
  readonly event: AccountingEvent;
  /** When the delivery was first stored: the start of its give-up clock. */
  readonly createdAt: Date;
}

/** Where a page of `listOrphanedDeliveries` ended: the next page starts after it. */
export interface DeliveryCursor {
  readonly createdAt: Date;
  readonly eventId: string;
}

interface PendingRow {
  event_id: string;
  transaction_id: string;
  account_id: string | number | null;
  account_seq: string | number | null;
  type: string | null;
  outcome: EventOutcome;
  reason: string | null;
  amount_minor: string | null;
  currency: string | null;
  balance_after_minor: string | null;
  occurred_at: Date;
  created_at: Date;
}

/**
 * Pending deliveries not updated since `staleBefore`, oldest first (by first-stored time, then event
 * id), at most `limit`, after `cursor`. Each comes with its event, rebuilt from its statement line.
 */
export async function listOrphanedDeliveries(
  db: Knex,
  options: { staleBefore: Date; cursor: DeliveryCursor | null; limit: number },
): Promise<PendingDelivery[]> {
  const { cursor } = options;
  const query = db('webhook_deliveries as w')
    .join('accounting_statements as s', 's.event_id', 'w.event_id')
    .where('w.status', 'pending')
    .andWhere('w.updated_at', '<', options.staleBefore)
    .orderBy([{ column: 'w.created_at' }, { column: 'w.event_id' }])
    .limit(options.limit)
    .select(
      's.event_id',
      's.transaction_id',
      's.account_id',
      's.account_seq',
      's.type',
      's.outcome',
      's.reason',
      's.amount_minor',
      's.currency',
      's.balance_after_minor',
      's.occurred_at',
    )
    .select({ created_at: 'w.created_at' });
  // Keyset paging: after the cursor in (created_at, event_id) order. Block bodies: a knex builder is a thenable.
  if (cursor)
    query.andWhere((after) => {
      void after.where('w.created_at', '>', cursor.createdAt).orWhere((same) => {
        void same.where('w.created_at', cursor.createdAt).andWhere('w.event_id', '>', cursor.eventId);
      });
    });
  const rows = (await query) as PendingRow[];
  return rows.map((r) => ({
    createdAt: r.created_at,
    event: {
      eventId: r.event_id,
      transactionId: r.transaction_id,
      accountId: r.account_id === null ? null : Number(r.account_id),
      accountSeq: r.account_seq === null ? null : Number(r.account_seq),
      type: r.type,
      outcome: r.outcome,
      reason: r.reason,
      amountMinor: r.amount_minor === null ? null : parseMinor(r.amount_minor),
      currency: r.currency,
      balanceAfterMinor: r.balance_after_minor === null ? null : parseMinor(r.balance_after_minor),
      occurredAt: new Date(r.occurred_at).toISOString(),
    },
  }));
}

/**
 * Takes over a pending delivery nobody has updated since `staleBefore`: true when this caller got it.
 * One conditional UPDATE, so of two consumers that both found it stale only the first takes it (the
 * second's condition no longer holds).
 */
export async function claimOrphanedDelivery(db: Knex, eventId: string, staleBefore: Date, now: Date = new Date()): Promise<boolean> {
  const updated = await db('webhook_deliveries')
    .where({ event_id: eventId, status: 'pending' })
    .andWhere('updated_at', '<', staleBefore)
    .update({ updated_at: now });
  return updated === 1;
}

/** Shows that a pending delivery is being worked on (its lease, `updated_at`); nothing when it has an outcome already. */
export async function touchPendingDelivery(db: Knex, eventId: string, now: Date = new Date()): Promise<void> {
  await db('webhook_deliveries').where({ event_id: eventId, status: 'pending' }).update({ updated_at: now });
}

/**
 * Adds attempts that ended without recording an outcome (stopped when a channel was lost or at
 * shutdown, or made by a copy whose outcome another copy recorded first), whatever the status: they
 * were made, so they count. `updated_at` is left alone, so that a stopped delivery's lease lapses.
 */
export async function addWebhookAttempts(db: Knex, eventId: string, attempts: number): Promise<void> {
  if (attempts <= 0) return;
  await db('webhook_deliveries')
    .where({ event_id: eventId })
    .update({ attempts: db.raw('attempts + ?', [attempts]) });
}
