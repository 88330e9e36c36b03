/**
 * The attempt event: what a worker publishes to `<ns>.feed` when a message failed with a system
 * error and was sent back through a delay queue (`retrying`) or given up into the parking queue
 * (`parked`). It is transient — the live feed's, not a record: the durable record of the same failure
 * is the `transaction_failures` row. It is published only after the retry or park publish was
 * confirmed, so it never announces a move that did not happen. `txsim replay-dead` publishes one more
 * state, `replayed`, for each parked message it put back (after the broker confirmed the copy), so a
 * live view sees it queued again; it carries the attempts before the park (0 when RabbitMQ, not a
 * worker, parked it) and, like its `transaction_failures` row, error code `replayed`.
 */

import { jsonObjectOf } from './json-body.js';
import { LOWERCASE_UUID_PATTERN } from './ids.js';

/** Version of the wire format; a reader ignores any other. */
export const ATTEMPT_EVENT_VERSION = 1;

export type AttemptState = 'retrying' | 'parked' | 'replayed';

export interface AttemptEvent {
  readonly transactionId: string;
  readonly state: AttemptState;
  /** The attempt that failed: 1 for the first delivery, reset to 1 by `replay-dead`; for `replayed`, the attempts before the park (0 or more). */
  readonly attempt: number;
  /** Null when the message could not be read far enough to know them. */
  readonly accountId: number | null;
  readonly type: string | null;
  readonly amountMinor: string | null;
  readonly currency: string | null;
  /** The failure's code (errno name, error code or class name) and its first line, redacted and bounded. */
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly workerId: string;
  /** When the worker saw the attempt fail (ISO 8601, UTC). */
  readonly at: string;
}

/** Longest error code and message kept (in the event and in `transaction_failures`). */
export const ERROR_CODE_CHARS_MAX = 64;
export const ERROR_MESSAGE_CHARS_MAX = 300;

/** Largest event body accepted; a real one is about 400 bytes. */
const BODY_BYTES_MAX = 4 * 1024;
const MINOR = /^-?\d{1,19}$/;

/** Routing key on the feed exchange: `<state>.<accountId>` (`none` without an account), like the accounting events. */
export function attemptRoutingKey(event: Pick<AttemptEvent, 'state' | 'accountId'>): string {
  return `${event.state}.${event.accountId ?? 'none'}`;
}

export function encodeAttemptEvent(event: AttemptEvent): Buffer {
  return Buffer.from(JSON.stringify({ version: ATTEMPT_EVENT_VERSION, ...event }));
}

export type DecodedAttemptEvent = { readonly ok: true; readonly event: AttemptEvent } | { readonly ok: false; readonly detail: string };

/**
 * Parses and checks an event body. Anyone who may publish to the exchange can send anything, so
 * every field is checked before the event reaches a WebSocket client.
 */
export function decodeAttemptEvent(body: Buffer): DecodedAttemptEvent {
  const fail = (detail: string): DecodedAttemptEvent => ({ ok: false, detail });
  const parsed = jsonObjectOf(body, BODY_BYTES_MAX);
  if (!parsed.ok) return fail(parsed.detail);
  const o = parsed.o;
  if (o.version !== ATTEMPT_EVENT_VERSION) return fail(`version ${JSON.stringify(o.version)} is not ${ATTEMPT_EVENT_VERSION}`);
  if (typeof o.transactionId !== 'string' || !LOWERCASE_UUID_PATTERN.test(o.transactionId))
    return fail('transactionId must be a lowercase UUID');
  if (o.state !== 'retrying' && o.state !== 'parked' && o.state !== 'replayed') return fail('state must be retrying, parked or replayed');
  const attemptMin = o.state === 'replayed' ? 0 : 1;
  if (!(Number.isSafeInteger(o.attempt) && (o.attempt as number) >= attemptMin))
    return fail(attemptMin === 0 ? 'attempt must be a whole number' : 'attempt must be a positive integer');
  if (o.accountId !== null && !Number.isSafeInteger(o.accountId)) return fail('accountId must be an integer or null');
  if (!nullableString(o.type, 16)) return fail('type must be a string of at most 16 characters or null');
  if (o.amountMinor !== null && !(typeof o.amountMinor === 'string' && MINOR.test(o.amountMinor)))
    return fail('amountMinor must be a string of minor units or null');
  if (o.currency !== null && !(typeof o.currency === 'string' && /^[A-Z]{3}$/.test(o.currency)))
    return fail('currency must be a 3-letter code or null');
  if (typeof o.errorCode !== 'string' || o.errorCode.length > ERROR_CODE_CHARS_MAX) return fail('errorCode must be a short string');
  if (typeof o.errorMessage !== 'string' || o.errorMessage.length > ERROR_MESSAGE_CHARS_MAX)
    return fail('errorMessage must be a short string');
  if (typeof o.workerId !== 'string' || o.workerId.length > 64) return fail('workerId must be a short string');
  if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return fail('at must be an ISO 8601 time');
  return {
    ok: true,
    event: {
      transactionId: o.transactionId,
      state: o.state,
      attempt: o.attempt as number,
      accountId: o.accountId as number | null,
      type: o.type as string | null,
      amountMinor: o.amountMinor,
      currency: o.currency,
      errorCode: o.errorCode,
      errorMessage: o.errorMessage,
      workerId: o.workerId,
      at: new Date(o.at).toISOString(),
    },
  };
}

function nullableString(value: unknown, maxChars: number): boolean {
  return value === null || (typeof value === 'string' && value.length <= maxChars);
}
