/**
 * The accounting event: what the outbox relay publishes to `<ns>.accounting`, what `txsim
 * accounting` consumes and what the webhook POSTs. One event per recorded outcome (applied or
 * rejected), identified by `eventId` (derived from the transaction id, so a re-published event has
 * the same id and is deduplicated downstream). Money travels as decimal strings of minor units so
 * that no JSON reader turns it into a float.
 */

import { jsonObjectOf } from './json-body.js';
import { LOWERCASE_UUID_PATTERN } from './ids.js';

/** Version of the wire format; a consumer refuses any other. */
export const ACCOUNTING_EVENT_VERSION = 1;

export type EventOutcome = 'applied' | 'rejected';

export interface AccountingEvent {
  readonly eventId: string;
  readonly transactionId: string;
  /** Null when the outcome concerns no known account (unknown account, unreadable message). */
  readonly accountId: number | null;
  /** 1, 2, 3 … per account, in commit order; null exactly when `accountId` is. */
  readonly accountSeq: number | null;
  /**
   * deposit, withdrawal, card_payment, transfer; null for an unreadable message. An applied transfer
   * has two events: `transfer` on the source (money out) and `transfer_in` on the destination
   * (money in, its own sequence number and balance after), both with the transfer's transactionId.
   * `hold_expired`: a worker expired a card hold (transactionId = the authorization's id, amount = what
   * the expiry released from held, balance after = the posted balance, unchanged); it has no message.
   */
  readonly type: string | null;
  readonly outcome: EventOutcome;
  /** Why it was rejected; null when applied. */
  readonly reason: string | null;
  readonly amountMinor: bigint | null;
  readonly currency: string | null;
  /** Balance of the account after this transaction; null for rejects (the balance did not change). */
  readonly balanceAfterMinor: bigint | null;
  /** When the worker recorded the outcome (ISO 8601, UTC). */
  readonly occurredAt: string;
}

/** A row of `outbox_events` as mysql2 returns it (BIGINTs as strings). */
export interface OutboxRow {
  readonly id: string;
  readonly event_id: string;
  readonly transaction_id: string;
  readonly account_id: string | null;
  readonly account_seq: string | null;
  readonly type: string | null;
  readonly amount_minor: string | null;
  readonly currency: string | null;
  readonly outcome: EventOutcome;
  readonly reason: string | null;
  readonly balance_after_minor: string | null;
  readonly created_at: Date;
}

/** The event of an outbox row. */
export function eventFromOutboxRow(row: OutboxRow): AccountingEvent {
  return {
    eventId: row.event_id,
    transactionId: row.transaction_id,
    accountId: row.account_id === null ? null : safeInteger(row.account_id, 'account_id'),
    accountSeq: row.account_seq === null ? null : safeInteger(row.account_seq, 'account_seq'),
    type: row.type,
    outcome: row.outcome,
    reason: row.reason,
    amountMinor: row.amount_minor === null ? null : BigInt(row.amount_minor),
    currency: row.currency,
    balanceAfterMinor: row.balance_after_minor === null ? null : BigInt(row.balance_after_minor),
    occurredAt: row.created_at.toISOString(),
  };
}

/**
 * Routing key on the accounting topic exchange: `<outcome>.<accountId>`, so a subscriber can bind
 * to `rejected.#` or `*.42`. Events without an account use `none`.
 */
export function accountingRoutingKey(event: Pick<AccountingEvent, 'outcome' | 'accountId'>): string {
  return `${event.outcome}.${event.accountId ?? 'none'}`;
}

/** The JSON object of an event on the wire (money as strings). Field order is fixed: bodies are byte-stable. */
export function eventToWire(event: AccountingEvent): Record<string, unknown> {
  return {
    version: ACCOUNTING_EVENT_VERSION,
    eventId: event.eventId,
    transactionId: event.transactionId,
    accountId: event.accountId,
    accountSeq: event.accountSeq,
    type: event.type,
    outcome: event.outcome,
    reason: event.reason,
    amountMinor: event.amountMinor?.toString() ?? null,
    currency: event.currency,
    balanceAfterMinor: event.balanceAfterMinor?.toString() ?? null,
    occurredAt: event.occurredAt,
  };
}

/** The bytes of an event: the same event always encodes to the same body (webhook signatures rely on it). */
export function encodeAccountingEvent(event: AccountingEvent): Buffer {
  return Buffer.from(JSON.stringify(eventToWire(event)));
}

export type DecodedEvent = { readonly ok: true; readonly event: AccountingEvent } | { readonly ok: false; readonly detail: string };

/** Largest event body accepted; a real one is about 400 bytes. */
export const EVENT_BODY_BYTES_MAX = 8 * 1024;

const MINOR = /^-?\d{1,19}$/;

/**
 * Several events in one message: what the relay publishes by default (`eventsPerMessageMax` > 1).
 * The body is `{"version":1,"events":[…]}`, each element exactly the body of a single event, so a
 * consumer can store, forward or sign each one as if it had come alone. One message instead of one
 * per event: the broker's work per event (store, confirm, deliver, ack) is paid once per message.
 */
export const ACCOUNTING_EVENTS_TYPE = 'accounting.events';
/** Routing key of a message of several events: they are of many accounts and outcomes. */
export const ACCOUNTING_EVENTS_ROUTING_KEY = 'events';
/** Most events in one message; a consumer refuses more. */
export const ACCOUNTING_EVENTS_PER_MESSAGE_MAX = 500;
/** Largest body of several events accepted: a real event is about 400 bytes. */
const EVENTS_BODY_BYTES_MAX = 1024 * 1024;

/** The bytes of several events: each element is the event's own body (`encodeAccountingEvent`). */
export function encodeAccountingEvents(events: readonly AccountingEvent[]): Buffer {
  return Buffer.from(`{"version":${ACCOUNTING_EVENT_VERSION},"events":[${events.map((e) => JSON.stringify(eventToWire(e))).join(',')}]}`);
}

/** One element of a message: decoded, or why not, with the element's own bytes (for the record of invalid events). */
export type DecodedElement =
  (DecodedEvent & { readonly ok: true }) | { readonly ok: false; readonly detail: string; readonly body: Buffer };

export type DecodedMessage =
  { readonly ok: true; readonly elements: readonly DecodedElement[] } | { readonly ok: false; readonly detail: string };

/**
 * Decodes a message of the accounting exchange, either kind: a single event, or several
 * (`{"version":1,"events":[…]}`). A message that is neither fails as a whole; in a message of
 * several, each element is decoded on its own, so one bad element does not cost the others.
 */
export function decodeAccountingMessage(body: Buffer): DecodedMessage {
  const parsed = jsonObjectOf(body, EVENTS_BODY_BYTES_MAX);
  if (!parsed.ok) return parsed;
  const o = parsed.o;
  if (!('events' in o)) {
    if (body.length > EVENT_BODY_BYTES_MAX) return { ok: false, detail: `body is ${body.length} bytes, more than ${EVENT_BODY_BYTES_MAX}` };
    const single = decodeEventObject(o);
    return single.ok ? { ok: true, elements: [single] } : single;
  }
  if (o.version !== ACCOUNTING_EVENT_VERSION)
    return { ok: false, detail: `version ${JSON.stringify(o.version)} is not ${ACCOUNTING_EVENT_VERSION}` };
  const events = o.events;
  if (!Array.isArray(events) || events.length === 0 || events.length > ACCOUNTING_EVENTS_PER_MESSAGE_MAX)
    return { ok: false, detail: `events must be an array of 1 to ${ACCOUNTING_EVENTS_PER_MESSAGE_MAX} events` };
  return {
    ok: true,
    elements: events.map((element: unknown, i): DecodedElement => {
      const decoded: DecodedEvent =
        typeof element === 'object' && element !== null && !Array.isArray(element)
          ? decodeEventObject(element as Record<string, unknown>)
          : { ok: false, detail: 'not a JSON object' };
      return decoded.ok
        ? decoded
        : {
            ok: false,
            detail: `event ${i + 1} of ${events.length}: ${decoded.detail}`,
            body: Buffer.from(JSON.stringify(element) ?? 'null'),
          };
    }),
  };
}

/**
 * Checks the fields of one event object. Every field is checked against what the accounting tables
 * can hold, so a decoded event can always be stored: a storage error then means the database, not
 * the message.
 */
function decodeEventObject(o: Record<string, unknown>): DecodedEvent {
  const fail = (detail: string): DecodedEvent => ({ ok: false, detail });
  if (o.version !== ACCOUNTING_EVENT_VERSION) return fail(`version ${JSON.stringify(o.version)} is not ${ACCOUNTING_EVENT_VERSION}`);
  if (typeof o.eventId !== 'string' || !LOWERCASE_UUID_PATTERN.test(o.eventId)) return fail('eventId must be a lowercase UUID');
  if (typeof o.transactionId !== 'string' || !LOWERCASE_UUID_PATTERN.test(o.transactionId))
    return fail('transactionId must be a lowercase UUID');
  if (o.outcome !== 'applied' && o.outcome !== 'rejected') return fail('outcome must be applied or rejected');
  const accountId = o.accountId;
  const accountSeq = o.accountSeq;
  if (accountId !== null && !Number.isSafeInteger(accountId)) return fail('accountId must be an integer or null');
  if (accountSeq !== null && !(Number.isSafeInteger(accountSeq) && (accountSeq as number) >= 1))
    return fail('accountSeq must be a positive integer or null');
  if ((accountId === null) !== (accountSeq === null)) return fail('accountId and accountSeq must both be set or both be null');
  if (!nullableString(o.type, 32)) return fail('type must be a string of at most 32 characters or null');
  if (!nullableString(o.reason, 32)) return fail('reason must be a string of at most 32 characters or null');
  if (o.currency !== null && !(typeof o.currency === 'string' && /^[A-Z]{3}$/.test(o.currency)))
    return fail('currency must be a 3-letter code or null');
  if (o.amountMinor !== null && !(typeof o.amountMinor === 'string' && MINOR.test(o.amountMinor)))
    return fail('amountMinor must be a string of minor units or null');
  if (o.balanceAfterMinor !== null && !(typeof o.balanceAfterMinor === 'string' && MINOR.test(o.balanceAfterMinor)))
    return fail('balanceAfterMinor must be a string of minor units or null');
  // DATETIME(3) holds years 1000-9999 only.
  const occurredYear = typeof o.occurredAt === 'string' ? new Date(o.occurredAt).getUTCFullYear() : NaN;
  if (!(occurredYear >= 1000 && occurredYear <= 9999)) return fail('occurredAt must be an ISO 8601 time in years 1000-9999');
  const amountMinor = o.amountMinor === null ? null : BigInt(o.amountMinor);
  const balanceAfterMinor = o.balanceAfterMinor === null ? null : BigInt(o.balanceAfterMinor);
  // BIGINT columns hold signed 64 bits; 19 digits can exceed that.
  const int64 = (v: bigint | null) => v === null || (v >= -(2n ** 63n) && v < 2n ** 63n);
  if (!int64(amountMinor) || !int64(balanceAfterMinor)) return fail('money out of 64-bit range');
  return {
    ok: true,
    event: {
      eventId: o.eventId,
      transactionId: o.transactionId,
      accountId: accountId as number | null,
      accountSeq: accountSeq as number | null,
      type: o.type as string | null,
      outcome: o.outcome,
      reason: o.reason as string | null,
      amountMinor,
      currency: o.currency,
      balanceAfterMinor,
      occurredAt: new Date(o.occurredAt as string).toISOString(),
    },
  };
}

function nullableString(value: unknown, maxLength: number): boolean {
  return value === null || (typeof value === 'string' && value.length > 0 && value.length <= maxLength);
}

function safeInteger(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} ${value} is not a safe integer`);
  return n;
}
