import { createHmac, timingSafeEqual } from 'node:crypto';
import type { WebhookOutcome } from '../db/statements.js';

/**
 * Webhooks of the accounting system: how a body is signed and verified, which answers are retried,
 * and the retry loop itself. The HTTP transport is injected (`WebhookTransport`, undici in
 * production), so the policy is tested without a network.
 */

/** Header names, lowercase as Node presents them. A public contract: receivers read these (README, "Webhooks"). */
export const WEBHOOK_HEADERS = {
  /** `sha256=<hex HMAC-SHA256 of "<timestamp>." + the raw body, under the shared secret>`. */
  signature: 'x-txsim-signature',
  /** Unix seconds at which this attempt was signed; signed with the body, so an old request cannot be replayed later. */
  timestamp: 'x-txsim-timestamp',
  /** The event id: the same on every attempt, so a receiver can drop repeats. Not signed: it must equal the body's `eventId`. */
  idempotencyKey: 'idempotency-key',
  /** 1 on the first try, then 2, 3 …; informational, not signed. */
  attempt: 'x-txsim-delivery-attempt',
} as const;

const SIGNATURE_PREFIX = 'sha256=';

/** How far a signed timestamp may be from the receiver's clock, either way, by default: 5 minutes, as Stripe's. */
export const WEBHOOK_TOLERANCE_S = 300;

/** The signature header value of a body sent at `timestampS`: `sha256=` + hex HMAC-SHA256(secret, "<timestampS>." + raw body). */
export function signWebhook(secret: string, timestampS: number, body: Buffer | string): string {
  return SIGNATURE_PREFIX + createHmac('sha256', secret).update(`${timestampS}.`).update(body).digest('hex');
}

/** The headers a receiver checks: the signature and the timestamp it covers, as Node presents them. */
export interface SignedHeaders {
  readonly signature: string | string[] | undefined;
  readonly timestamp: string | string[] | undefined;
}

/** Why a request's signature does not hold, or null when it does. */
export type SignatureFault = 'bad_signature' | 'stale_timestamp';

/**
 * Null when `headers.signature` is the signature of exactly these bytes and `headers.timestamp` under
 * `secret`, and the timestamp is within `toleranceS` of `nowMs`; otherwise the fault. Compares in
 * constant time, so the answer's timing does not reveal how much of a forged signature was right.
 * The timestamp is checked after the signature: an unsigned one says nothing.
 */
export function webhookSignatureFault(
  secret: string,
  body: Buffer | string,
  headers: SignedHeaders,
  nowMs: number,
  toleranceS = WEBHOOK_TOLERANCE_S,
): SignatureFault | null {
  const { signature, timestamp } = headers;
  if (typeof signature !== 'string' || !signature.startsWith(SIGNATURE_PREFIX)) return 'bad_signature';
  if (typeof timestamp !== 'string' || !/^\d{1,12}$/.test(timestamp)) return 'bad_signature';
  const given = signature.slice(SIGNATURE_PREFIX.length);
  if (!/^[0-9a-f]{64}$/i.test(given)) return 'bad_signature';
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
  if (!timingSafeEqual(expected, Buffer.from(given, 'hex'))) return 'bad_signature';
  return Math.abs(nowMs / 1_000 - Number(timestamp)) > toleranceS ? 'stale_timestamp' : null;
}

/** What one HTTP attempt produced: a response (any status), or no response at all. */
export type AttemptResult =
  | { readonly kind: 'response'; readonly status: number; readonly body: string }
  /** Refused, reset, timed out, DNS …: `code` is the error code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, …). */
  | { readonly kind: 'error'; readonly code: string; readonly message: string }
  /** The caller's signal aborted the attempt (shutdown). */
  | { readonly kind: 'aborted' };

/** Sends one POST. Implementations never throw: every failure is an `AttemptResult`. */
export interface WebhookTransport {
  post(url: string, body: Buffer, headers: Record<string, string>, signal: AbortSignal): Promise<AttemptResult>;
}

/**
 * What to do after an attempt. 2xx: delivered. 5xx, 408, 429 and no response at all: the receiver
 * (or the path to it) is having a bad moment — try again later. Any other status (4xx, and 3xx,
 * which are not followed): the receiver understood and refused, so the same request will be refused
 * again — record it as failed with the response and stop. 408 and 429 are 4xx codes that mean "not
 * now" rather than "no", so they are retried like a 5xx.
 */
export function classifyAttempt(result: AttemptResult): 'delivered' | 'retry' | 'failed' | 'aborted' {
  if (result.kind === 'aborted') return 'aborted';
  if (result.kind === 'error') return 'retry';
  if (result.status >= 200 && result.status < 300) return 'delivered';
  if (result.status >= 500 || result.status === 408 || result.status === 429) return 'retry';
  return 'failed';
}

/** Retry settings of webhook delivery. Units in the names. */
export interface WebhookRetryPolicy {
  /** Delay before the second attempt; doubles each attempt up to `backoffMaxMs`. */
  readonly backoffInitialMs: number;
  /** Cap of the delay between attempts. */
  readonly backoffMaxMs: number;
  /**
   * After this long since the give-up clock started (the first attempt, or `DeliverHooks.startedMs`), a
   * still-retryable delivery is recorded as failed.
   */
  readonly giveUpAfterMs: number;
  /** Attempts at most, however fast they fail (a second bound beside the time). */
  readonly attemptsMax: number;
}

export const DEFAULT_RETRY_POLICY: WebhookRetryPolicy = {
  backoffInitialMs: 250,
  backoffMaxMs: 5_000,
  // 20 minutes: below RabbitMQ's default consumer_timeout (30 min), which closes a channel holding
  // a message unacked for longer (the consumer acks an event once its webhook has an outcome).
  giveUpAfterMs: 1_200_000,
  attemptsMax: 10_000,
};

/**
 * Delay before attempt `attempt + 1` (attempt ≥ 1): capped exponential with "equal jitter" — at
 * least half the step, so a receiver coming back is not hit by every sender at the same instant.
 */
export function backoffDelayMs(
  attempt: number,
  policy: Pick<WebhookRetryPolicy, 'backoffInitialMs' | 'backoffMaxMs'>,
  random: () => number = Math.random,
): number {
  const step = Math.min(policy.backoffMaxMs, policy.backoffInitialMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step / 2 + (random() * step) / 2);
}

export interface WebhookRequest {
  readonly url: string;
  readonly eventId: string;
  readonly body: Buffer;
}

/**
 * How delivering one event ended: one of the outcomes the accounting tables record (with whether the
 * retries gave up), or `aborted`: no outcome (the event is redelivered, or sent again later), but the
 * attempts it made still count. In every case `attempts` is the number of attempts handed to the
 * transport, the one cut short by `attemptSignal` included: the receiver may have seen it.
 */
export type DeliveryResult =
  | Extract<WebhookOutcome, { status: 'delivered' }>
  | (Extract<WebhookOutcome, { status: 'failed' }> & { readonly gaveUp: boolean })
  | { readonly status: 'aborted'; readonly attempts: number };

export interface DeliverHooks {
  readonly now?: () => number;
  /**
   * When the give-up clock started, in ms on the `now` clock (default: now, at the call). The accounting
   * consumer passes the time the event's delivery was first stored, so an event the broker delivers
   * again resumes with the time it has left instead of a fresh `giveUpAfterMs`; one whose time is
   * spent gets one more attempt and is then given up on.
   */
  readonly startedMs?: number;
  readonly random?: () => number;
  /** Called before each wait, for logging. */
  readonly onRetry?: (info: { attempt: number; delayMs: number; result: AttemptResult }) => void;
  /** Called once per attempt, just before it is handed to the transport: the one place attempts are counted. */
  readonly onAttempt?: (attempt: number) => void;
  /**
   * Aborts an attempt in progress (default: `signal`). Separate so that a shutdown can stop further
   * attempts at once but let the one on the wire finish: a receiver that already acted on it would
   * otherwise see it again.
   */
  readonly attemptSignal?: AbortSignal;
}

/**
 * Delivers one event: signs the body with each attempt's time, POSTs it, and retries what `classifyAttempt` says to
 * retry with capped exponential backoff until it is delivered, refused, given up on (time since
 * `hooks.startedMs`, or attempts), or `signal` aborts (no further attempt; the one in progress ends as `attemptSignal`
 * decides). Never throws.
 */
export async function deliverWebhook(
  transport: WebhookTransport,
  request: WebhookRequest,
  secret: string,
  policy: WebhookRetryPolicy,
  signal: AbortSignal,
  hooks: DeliverHooks = {},
): Promise<DeliveryResult> {
  const now = hooks.now ?? Date.now;
  const startedMs = hooks.startedMs ?? now();
  for (let attempt = 1; ; attempt++) {
    if (signal.aborted) return { status: 'aborted', attempts: attempt - 1 };
    hooks.onAttempt?.(attempt);
    // Each attempt is signed at its own time: a retry an hour on is not refused as a replay.
    const timestampS = Math.floor(now() / 1_000);
    const headers = {
      'content-type': 'application/json',
      [WEBHOOK_HEADERS.signature]: signWebhook(secret, timestampS, request.body),
      [WEBHOOK_HEADERS.timestamp]: String(timestampS),
      [WEBHOOK_HEADERS.idempotencyKey]: request.eventId,
      [WEBHOOK_HEADERS.attempt]: String(attempt),
    };
    const result = await transport.post(request.url, request.body, headers, hooks.attemptSignal ?? signal);
    switch (classifyAttempt(result)) {
      case 'aborted':
        // Cut on the wire: it was sent (or partly), so it counts.
        return { status: 'aborted', attempts: attempt };
      case 'delivered':
        return {
          status: 'delivered',
          attempts: attempt,
          responseStatus: (result as { status: number }).status,
          responseBody: (result as { body: string }).body,
        };
      case 'failed':
        return { status: 'failed', attempts: attempt, ...describe(result), gaveUp: false };
      case 'retry': {
        const delayMs = backoffDelayMs(attempt, policy, hooks.random);
        if (attempt >= policy.attemptsMax || now() + delayMs - startedMs > policy.giveUpAfterMs) {
          return { status: 'failed', attempts: attempt, ...describe(result), gaveUp: true };
        }
        hooks.onRetry?.({ attempt, delayMs, result });
        await sleep(delayMs, signal);
      }
    }
  }
}

function describe(result: AttemptResult): { responseStatus: number | null; responseBody: string | null; lastError: string } {
  if (result.kind === 'response') return { responseStatus: result.status, responseBody: result.body, lastError: `HTTP ${result.status}` };
  if (result.kind === 'error')
    return { responseStatus: null, responseBody: null, lastError: `${result.code}: ${result.message}`.slice(0, 500) };
  return { responseStatus: null, responseBody: null, lastError: 'aborted' };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
