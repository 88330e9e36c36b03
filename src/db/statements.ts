import type { AccountingEvent, EventOutcome } from '../domain/accounting-event.js';
import { parseMinor } from '../domain/money.js';
import type { Knex } from './knex.js';
import { withTransaction } from './with-transaction.js';

/** Storage of `txsim accounting`: the accounting tables (sql/002-accounting.sql). */

/** How delivering one event's webhook ended (the finished cases of accounting's DeliveryResult). */
export type WebhookOutcome =
  | { readonly status: 'delivered'; readonly attempts: number; readonly responseStatus: number; readonly responseBody: string }
  | {
      readonly status: 'failed';
      readonly attempts: number;
      readonly responseStatus: number | null;
      readonly responseBody: string | null;
      readonly lastError: string;
    };

export type WebhookStatus = 'pending' | 'delivered' | 'failed';

/** The database server's time, UTC as `webhook_deliveries.updated_at` stores it: the clock of the takeover lease (see touchPendingDeliveries). */
const LEASE_NOW = 'UTC_TIMESTAMP(3)';

/** What storing an event did: a new line or a repeat, and where its webhook stands (null: no webhook). */
export interface StoredStatement {
  readonly inserted: boolean;
  readonly webhookStatus: WebhookStatus | null;
  /**
   * When the event's webhook delivery was first stored (its `created_at`; null: no webhook). A repeat
   * returns the first time, so a redelivered event's retries resume the give-up clock it started.
   */
  readonly webhookCreatedAt: Date | null;
}

/**
 * Stores the statement line of an event, once: a repeat only counts another delivery. With a
 * webhook URL, also makes sure a delivery record exists ('pending' until an outcome is recorded),
 * in the same transaction, and returns its status so a repeat of an undelivered event is sent again,
 * with the time the record was first made (the start of its give-up clock).
 */
export async function recordStatement(
  db: Knex,
  event: AccountingEvent,
  webhookUrl: string | null,
  now: Date = new Date(),
): Promise<StoredStatement> {
  return withTransaction(db, async (trx) => {
    const [result] = (await trx.raw(
      `INSERT INTO accounting_statements
         (event_id, transaction_id, account_id, account_seq, type, outcome, reason, amount_minor, currency, balance_after_minor, occurred_at, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON DUPLICATE KEY UPDATE deliveries = deliveries + 1`,
      [
        event.eventId,
        event.transactionId,
        event.accountId,
        event.accountSeq,
        event.type,
        event.outcome,
        event.reason,
        event.amountMinor?.toString() ?? null,
        event.currency,
        event.balanceAfterMinor?.toString() ?? null,
        new Date(event.occurredAt),
        now,
      ],
    )) as [{ affectedRows: number }];
    // MySQL reports 1 affected row for an insert and 2 for the ON DUPLICATE KEY update.
    const inserted = result.affectedRows === 1;
    if (webhookUrl === null) return { inserted, webhookStatus: null, webhookCreatedAt: null };
    // `updated_at` is the takeover lease, on the database server's clock (see the lease queries below).
    await trx.raw(
      `INSERT INTO webhook_deliveries (event_id, url, status, attempts, created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ${LEASE_NOW})
       ON DUPLICATE KEY UPDATE event_id = event_id`,
      [event.eventId, webhookUrl, now],
    );
    const row = await trx('webhook_deliveries')
      .where('event_id', event.eventId)
      .first<{ status: WebhookStatus; created_at: Date }>('status', 'created_at');
    return { inserted, webhookStatus: row.status, webhookCreatedAt: row.created_at };
  });
}

/**
 * Records how delivering an event's webhook ended (delivered, or failed with the response / error), if
 * it is still pending: a copy of the event forwarded again after a redelivery, or a late attempt of a
 * channel that is gone, never turns an outcome already recorded (or redelivered since) back. True
 * when this outcome is the one recorded, false when another's was there first.
 *
 * Safe to retry: `finishedAt` marks the outcome (it is written as `finished_at`), so pass the same one on
 * every try. When the reply to a try is lost after the server applied it (the connection dropped), the
 * next try finds nothing pending; it then reads the row, and an outcome with this `finishedAt`, status,
 * response status and error is this one (true), so its attempts are not added a second time. Two copies
 * in two processes ending the same millisecond with the same answer would look alike; one copy's
 * attempts would then go uncounted, never counted twice.
 */
export async function recordWebhookOutcome(
  db: Knex,
  eventId: string,
  result: WebhookOutcome,
  finishedAt: Date = new Date(),
): Promise<boolean> {
  const columns = outcomeColumns(db, result, finishedAt);
  const updated = await db('webhook_deliveries').where({ event_id: eventId, status: 'pending' }).update(columns);
  if (updated > 0) return true;
  const row = await db('webhook_deliveries')
    .where('event_id', eventId)
    .first<{ status: WebhookStatus; response_status: number | null; last_error: string | null; finished_at: Date | null } | undefined>(
      'status',
      'response_status',
      'last_error',
      'finished_at',
    );
  return (
    row !== undefined &&
    row.status === columns.status &&
    row.finished_at?.getTime() === finishedAt.getTime() &&
    (row.response_status === null ? null : Number(row.response_status)) === columns.response_status &&
    row.last_error === columns.last_error
  );
}

/** The columns of a webhook delivery that record how it ended (bodies and errors cut to their column sizes). */
function outcomeColumns(db: Knex, result: WebhookOutcome, now: Date) {
  return {
    status: result.status,
    attempts: db.raw('attempts + ?', [result.attempts]),
    response_status: result.responseStatus,
    response_body: result.responseBody?.slice(0, 1_024) ?? null,
    last_error: result.status === 'failed' ? result.lastError.slice(0, 500) : null,
    updated_at: now,
    finished_at: now,
  };
}

/**
 * Keeps a delivery, or one element of it, that is not an accounting event, so it is acknowledged without
 * being lost. `position` is 0 for the message as a whole, n for its nth event. False when the same message
 * id and position are recorded already (a delivery that came back), so nothing was inserted.
 */
export async function recordInvalidEvent(
  db: Knex,
  msg: { messageId: string | null; position: number; routingKey: string; detail: string; body: Buffer },
  now: Date = new Date(),
): Promise<boolean> {
  const [id] = await db('accounting_invalid_events')
    .insert({
      message_id: msg.messageId?.slice(0, 255) ?? null,
      element_position: msg.position,
      routing_key: msg.routingKey.slice(0, 255),
      detail: msg.detail.slice(0, 255),
      body: msg.body.toString('utf8').slice(0, 4_096),
      received_at: now,
    })
    .onConflict(['message_id', 'element_position'])
    .ignore();
  return Number(id) > 0;
}

type StatementRow = {
  event_id: string;
  transaction_id: string;
  account_id: string | null;
  account_seq: string | null;
  type: string | null;
  outcome: EventOutcome;
  reason: string | null;
  amount_minor: string | null;
  currency: string | null;
  balance_after_minor: string | null;
  occurred_at: Date;
  deliveries: string | number;
};

/** A statement line's columns, as `eventOfRow` reads them, from `accounting_statements as s`. */
const STATEMENT_EVENT_COLUMNS = [
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
  's.deliveries',
] as const;

function eventOfRow(r: StatementRow): AccountingEvent & { deliveries: number } {
  return {
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
    deliveries: Number(r.deliveries),
  };
}

/** An account's statement: its latest lines in sequence order, the balance before them, and any gaps. */
export interface Statement {
  readonly accountId: number;
  /** Lines on the statement in all (the page may show fewer). */
  readonly lineCount: number;
  readonly lines: (AccountingEvent & { deliveries: number; balanceMinor: bigint | null })[];
  /** Sequence numbers not received (yet) between the first and last line shown. */
  readonly missingSeqs: number[];
}

/**
 * Reads the last `limit` lines of an account's statement in sequence order. Each line carries the
 * balance after it: its own for an applied transaction, the last known one for a reject (null when
 * no applied line precedes it on the statement).
 */
export async function readStatement(db: Knex, accountId: number, limit: number): Promise<Statement> {
  const columns = [
    'event_id',
    'transaction_id',
    'account_id',
    'account_seq',
    'type',
    'outcome',
    'reason',
    'amount_minor',
    'currency',
    'balance_after_minor',
    'occurred_at',
    'deliveries',
  ];
  const rows = (
    await db('accounting_statements')
      .where('account_id', accountId)
      .orderBy('account_seq', 'desc')
      .limit(limit)
      .select<StatementRow[]>(columns)
  ).reverse();
  const [[count]] = (await db.raw('SELECT COUNT(*) AS n FROM accounting_statements WHERE account_id = ?', [accountId])) as [
    [{ n: string }],
  ];
  const events = rows.map(eventOfRow);
  let balance: bigint | null = null;
  const first = events[0];
  if (first && first.accountSeq !== null) {
    const before = await db('accounting_statements')
      .where('account_id', accountId)
      .andWhere('account_seq', '<', first.accountSeq)
      .andWhere('outcome', 'applied')
      .orderBy('account_seq', 'desc')
      .first<{ balance_after_minor: string | null } | undefined>('balance_after_minor');
    balance = before?.balance_after_minor ? parseMinor(before.balance_after_minor) : null;
  }
  const lines = events.map((e) => {
    if (e.outcome === 'applied' && e.balanceAfterMinor !== null) balance = e.balanceAfterMinor;
    return { ...e, balanceMinor: balance };
  });
  const missingSeqs: number[] = [];
  for (let i = 1; i < events.length && missingSeqs.length < 100; i++) {
    for (let seq = (events[i - 1]!.accountSeq ?? 0) + 1; seq < (events[i]!.accountSeq ?? 0) && missingSeqs.length < 100; seq++)
      missingSeqs.push(seq);
  }
  return { accountId, lineCount: Number(count.n), lines, missingSeqs };
}

/** A webhook delivery that ended failed, with the event it carried (from its statement line). */
export interface FailedDelivery {
  readonly event: AccountingEvent;
  /** The URL it was sent to, as recorded (without credentials). */
  readonly url: string;
  readonly attempts: number;
  readonly responseStatus: number | null;
  readonly lastError: string | null;
}

/**
 * Failed webhook deliveries, oldest first: all of them, or only `eventIds` (null: any). At most
 * `limit`. The event is rebuilt from its statement line, so the body re-sent is byte for byte the
 * one first sent (encoding an event is deterministic) and its signature is the same.
 */
export async function listFailedDeliveries(
  db: Knex,
  options: { eventIds: readonly string[] | null; limit: number },
): Promise<FailedDelivery[]> {
  const query = db('webhook_deliveries as w')
    .join('accounting_statements as s', 's.event_id', 'w.event_id')
    .where('w.status', 'failed')
    .orderBy([{ column: 'w.finished_at' }, { column: 'w.event_id' }])
    .limit(options.limit)
    .select(...STATEMENT_EVENT_COLUMNS)
    .select({ url: 'w.url', attempts: 'w.attempts', response_status: 'w.response_status', last_error: 'w.last_error' });
  if (options.eventIds !== null) query.whereIn('w.event_id', [...options.eventIds]);
  const rows = (await query) as (StatementRow & {
    url: string;
    attempts: number;
    response_status: number | null;
    last_error: string | null;
  })[];
  return rows.map((r) => {
    const { deliveries: _deliveries, ...event } = eventOfRow(r);
    return {
      event,
      url: r.url,
      attempts: Number(r.attempts),
      responseStatus: r.response_status === null ? null : Number(r.response_status),
      lastError: r.last_error,
    };
  });
}

/** Where the given event ids' webhook deliveries stand ('pending', 'delivered', 'failed'); absent ids have none. */
export async function deliveryStatuses(db: Knex, eventIds: readonly string[]): Promise<Map<string, WebhookStatus>> {
  if (eventIds.length === 0) return new Map();
  const rows = await db('webhook_deliveries')
    .whereIn('event_id', [...eventIds])
    .select<{ event_id: string; status: WebhookStatus }[]>('event_id', 'status');
  return new Map(rows.map((r) => [r.event_id, r.status]));
}

/**
 * Records the outcome of re-sending a failed delivery: its attempts are added, the URL is the one
 * it was re-sent to. Only a row still `failed` is updated (true when it was): a second redeliver
 * running at the same time cannot overwrite a delivered outcome with its own failure.
 */
export async function recordRedeliveryOutcome(
  db: Knex,
  eventId: string,
  url: string,
  result: WebhookOutcome,
  now: Date = new Date(),
): Promise<boolean> {
  const updated = await db('webhook_deliveries')
    .where({ event_id: eventId, status: 'failed' })
    .update({
      url,
      ...outcomeColumns(db, result, now),
    });
  return updated === 1;
}

/**
 * The queries of `webhook_deliveries` that let consumers share the pending deliveries safely: find
 * the ones nobody works on, take one over, show that some are being worked on, and count attempts that
 * ended without an outcome.
 *
 * `updated_at` is the lease: a consumer refreshes it every `WebhookForwarder.touchEveryMs` for every
 * pending delivery it works on (sending it, waiting to retry it or waiting for a POST slot), so a
 * pending row not updated for longer than the orphan window has nobody working on it. Lease times are
 * set and compared on the database server's clock, never a process's: consumers on hosts whose clocks
 * disagree still agree on which rows are stale. The column holds UTC (mysql2 writes dates as UTC, and
 * every session's time zone is +00:00, see knex.ts); UTC_TIMESTAMP(3) is UTC whatever a session's zone.
 */

/** Most event ids one lease refresh names: about 200 kB of statement, well below the default max_allowed_packet (16 MB on MariaDB 10.11). */
export const LEASE_REFRESH_IDS_MAX = 5_000;

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

/**
 * Pending deliveries whose lease is older than `orphanAfterMs` on the server's clock, oldest first (by
 * first-stored time, then event id), at most `limit`, after `cursor`. Each comes with its event,
 * rebuilt from its statement line.
 */
export async function listOrphanedDeliveries(
  db: Knex,
  options: { orphanAfterMs: number; cursor: DeliveryCursor | null; limit: number },
): Promise<PendingDelivery[]> {
  const { cursor } = options;
  const query = db('webhook_deliveries as w')
    .join('accounting_statements as s', 's.event_id', 'w.event_id')
    .where('w.status', 'pending')
    .andWhereRaw(`w.updated_at < ${LEASE_NOW} - INTERVAL ? MICROSECOND`, [leaseMicros(options.orphanAfterMs)])
    .orderBy([{ column: 'w.created_at' }, { column: 'w.event_id' }])
    .limit(options.limit)
    .select(...STATEMENT_EVENT_COLUMNS)
    .select({ created_at: 'w.created_at' });
  // Keyset paging: after the cursor in (created_at, event_id) order. Block bodies: a knex builder is a thenable.
  if (cursor)
    query.andWhere((after) => {
      void after.where('w.created_at', '>', cursor.createdAt).orWhere((same) => {
        void same.where('w.created_at', cursor.createdAt).andWhere('w.event_id', '>', cursor.eventId);
      });
    });
  const rows = (await query) as (StatementRow & { created_at: Date })[];
  return rows.map((r) => {
    const { deliveries: _deliveries, ...event } = eventOfRow(r);
    return { createdAt: r.created_at, event };
  });
}

/**
 * Takes over a pending delivery whose lease is older than `orphanAfterMs` (server clock): true when this
 * caller got it. One conditional UPDATE, so of two consumers that both found it stale only the first
 * takes it (the second's condition no longer holds).
 */
export async function claimOrphanedDelivery(db: Knex, eventId: string, orphanAfterMs: number): Promise<boolean> {
  const updated = await db('webhook_deliveries')
    .where({ event_id: eventId, status: 'pending' })
    .andWhereRaw(`updated_at < ${LEASE_NOW} - INTERVAL ? MICROSECOND`, [leaseMicros(orphanAfterMs)])
    .update({ updated_at: db.raw(LEASE_NOW) });
  return updated === 1;
}

/**
 * Refreshes the lease of pending deliveries being worked on, in one statement (at most
 * LEASE_REFRESH_IDS_MAX ids); the ones that have an outcome already are left alone. Rows are locked in
 * ascending id order, as every multi-row write here.
 */
export async function touchPendingDeliveries(db: Knex, eventIds: readonly string[]): Promise<void> {
  if (eventIds.length === 0) return;
  if (eventIds.length > LEASE_REFRESH_IDS_MAX)
    throw new RangeError(`${eventIds.length} ids in one lease refresh; at most ${LEASE_REFRESH_IDS_MAX}`);
  await db('webhook_deliveries')
    .where('status', 'pending')
    .whereIn('event_id', [...eventIds].sort())
    .update({ updated_at: db.raw(LEASE_NOW) });
}

/** An orphan window in whole microseconds, for `INTERVAL ? MICROSECOND`: integer arithmetic, exact on MariaDB and MySQL alike. */
function leaseMicros(orphanAfterMs: number): number {
  return Math.round(orphanAfterMs * 1_000);
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
