import { createHmac, timingSafeEqual } from 'node:crypto';
import type { WebhookOutcome } from '../db/statements.js';

/**
 * Webhooks of the accounting system: how a body is signed and verified, which answers are retried,
 * and the retry loop itself. The HTTP transport is injected (`WebhookTransport`, undici in
 * production), so the policy is tested without a network.
 */

/** Header names, lowercase as Node presents them. A public contract: receivers read these (README, "Webhooks"). */
export const WEBHOOK_HEADERS = {
  /** `sha256=<hex HMAC-SHA256 of the raw body under the shared secret>`. */
  signature: 'x-txsim-signature',
  /** The event id: the same on every attempt, so a receiver can drop repeats. */
  idempotencyKey: 'idempotency-key',
  /** 1 on the first try, then 2, 3 …; informational, not signed. */
  attempt: 'x-txsim-delivery-attempt',
} as const;

const SIGNATURE_PREFIX = 'sha256=';

/** The signature header value of a body: `sha256=` + hex HMAC-SHA256(secret, raw body). */
export function signWebhookBody(secret: string, body: Buffer | string): string {
  return SIGNATURE_PREFIX + createHmac('sha256', secret).update(body).digest('hex');
}

/**
 * True when `header` is the signature of exactly these bytes under `secret`. Compares in constant
 * time, so the answer's timing does not reveal how much of a forged signature was right.
 */
export function verifyWebhookSignature(secret: string, body: Buffer | string, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || !header.startsWith(SIGNATURE_PREFIX)) return false;
  const given = header.slice(SIGNATURE_PREFIX.length);
  if (!/^[0-9a-f]{64}$/i.test(given)) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(given, 'hex'));
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
  /** After this long since the first attempt, a still-retryable delivery is recorded as failed. */
  readonly giveUpAfterMs: number;
  /** Attempts at most, however fast they fail (a second bound beside the time). */
  readonly attemptsMax: number;
}

export const DEFAULT_RETRY_POLICY: WebhookRetryPolicy = {
  backoffInitialMs: 250,
  backoffMaxMs: 5_000,
  giveUpAfterMs: 3_600_000,
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
 * retries gave up), or `aborted`, which is not recorded (the event is redelivered).
 */
export type DeliveryResult =
  | Extract<WebhookOutcome, { status: 'delivered' }>
  | (Extract<WebhookOutcome, { status: 'failed' }> & { readonly gaveUp: boolean })
  | { readonly status: 'aborted'; readonly attempts: number };

export interface DeliverHooks {
  readonly now?: () => number;
  readonly random?: () => number;
  /** Called before each wait, for logging. */
  readonly onRetry?: (info: { attempt: number; delayMs: number; result: AttemptResult }) => void;
  /**
   * Aborts an attempt in progress (default: `signal`). Separate so that a shutdown can stop further
   * attempts at once but let the one on the wire finish: a receiver that already acted on it would
   * otherwise see it again.
   */
  readonly attemptSignal?: AbortSignal;
}

/**
 * Delivers one event: signs the body once, POSTs it, and retries what `classifyAttempt` says to
 * retry with capped exponential backoff until it is delivered, refused, given up on (time or
 * attempts), or `signal` aborts (no further attempt; the one in progress ends as `attemptSignal`
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
  const startedMs = now();
  const signature = signWebhookBody(secret, request.body);
  for (let attempt = 1; ; attempt++) {
    if (signal.aborted) return { status: 'aborted', attempts: attempt - 1 };
    const headers = {
      'content-type': 'application/json',
      [WEBHOOK_HEADERS.signature]: signature,
      [WEBHOOK_HEADERS.idempotencyKey]: request.eventId,
      [WEBHOOK_HEADERS.attempt]: String(attempt),
    };
    const result = await transport.post(request.url, request.body, headers, hooks.attemptSignal ?? signal);
    switch (classifyAttempt(result)) {
      case 'aborted':
        return { status: 'aborted', attempts: attempt - 1 };
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
