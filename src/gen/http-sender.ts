import { setMaxListeners } from 'node:events';
import { Pool } from 'undici';
import { createLatencyHistogram, percentilesOf, recordMs, type Percentiles } from '../stats/histogram.js';
import { FollowUpQueue } from './flows.js';

/**
 * The HTTP half of `txsim gen <count> --via <url>`: sends a seeded stream through `POST
 * /v1/transactions` instead of AMQP, on a keep-alive pool with bounded concurrency, measuring each
 * request's latency from its intended send time (as gen measures confirm latency, so a stall shows
 * in the percentiles instead of slowing the schedule). gen supplies the messages and records the
 * run (http-run.ts); this module only sends and counts. Every request carries `X-Txsim-Run`, so the
 * workers record the run id and `verify --run` accounts for it (an admin token is needed for that
 * header).
 */

/** What gen hands over per index: the id and the exact body bytes it would publish. */
export interface HttpMessage {
  readonly id: string;
  readonly body: Buffer;
  readonly contentType: string;
  /** A poison message (`--invalid`): a 400 for it is the API doing its job, not a failure. */
  readonly poison?: boolean;
  /** What follows this message (a card flow's captures, void, refund), each at its own time. */
  readonly followUps?: readonly HttpFollowUp[];
}

/** A message sent `delayMs` after the intended time of the one it follows; its body is made when it goes out. */
export interface HttpFollowUp {
  readonly delayMs: number;
  readonly messageAt: (createdAt: Date) => HttpMessage;
}

export interface HttpSendOptions {
  /** e.g. http://127.0.0.1:8080 */
  readonly baseUrl: string;
  readonly token: string | null;
  readonly runId: string;
  readonly count: number;
  /** Requests in flight at once (and connections in the pool). */
  readonly concurrency: number;
  /** 0 = as fast as answers come. */
  readonly ratePerS: number;
  /** Longest one request may take before it counts as failed. */
  readonly requestTimeoutMs: number;
}

/** An id the API did not accept: its answer's status, or null when no answer came. */
export interface HttpRefusal {
  readonly id: string;
  readonly status: number | null;
}

/** Counts while the run goes (for a progress bar and bench's per-second lines). */
export interface HttpProgress {
  readonly sent: number;
  readonly accepted: number;
  /** Poison answered 400: refused at the door, as it should be. */
  readonly refused: number;
  /** Every other request that was not accepted (another status, or no answer). */
  readonly failed: number;
}

export interface HttpSendSummary extends HttpProgress {
  /** Follow-ups sent and accepted (counted apart from the run's `count` primary messages; in the ids and refusals). */
  readonly followUps: { readonly sent: number; readonly accepted: number };
  /** Answers by status, e.g. {"202": 990, "400": 10}. */
  readonly byStatus: Record<string, number>;
  /** Requests with no answer (connection refused, reset, timeout). */
  readonly noAnswer: number;
  /** 429 answers waited out and sent again (not in `byStatus`, which holds each request's last answer). */
  readonly throttled: number;
  /** Ids answered 202/200: the broker confirmed these. */
  readonly acceptedIds: string[];
  /** Every other id, with its status (or null): `verify --run` does not expect these to be applied. */
  readonly refusals: HttpRefusal[];
  /** Sending stopped early: the server refused the token (401/403), or the signal aborted. */
  readonly stoppedEarly: boolean;
  /** The answer that stopped the run (401/403), if one did. */
  readonly authStatus: number | null;
  readonly firstError: string | null;
  readonly elapsedMs: number;
  /** From the start to the last primary message's answer: the span the run's own messages took (follow-ups after them left out). */
  readonly primarySpanMs: number;
  /** Every answered or failed request, from its intended send time to its answer. */
  readonly requestLatencyMs: Percentiles;
}

/** Statuses that say the token is wrong for this: every further request would get the same. */
const AUTH_STATUSES = new Set([401, 403]);

/** Times one request is sent again after a 429 before its 429 counts as its answer. */
const THROTTLE_RETRIES_MAX = 10;
/** Longest wait after a 429, whatever its Retry-After says. */
const THROTTLE_WAIT_MAX_MS = 5_000;

/** How often a lane with nothing due looks again while a primary being made may still add follow-ups. */
const FOLLOW_UP_POLL_MS = 5;

/** Longest error text kept from an answer body for the summary. */
const ERROR_TEXT_MAX = 300;

export async function sendOverHttp(
  messageAt: (index: number, createdAt: Date) => HttpMessage,
  options: HttpSendOptions,
  hooks: { signal?: AbortSignal; onProgress?: (progress: HttpProgress) => void } = {},
): Promise<HttpSendSummary> {
  const origin = new URL(options.baseUrl).origin;
  // Every request in flight listens on the signal: `concurrency` listeners are expected, not a leak.
  if (hooks.signal) setMaxListeners(options.concurrency + 10, hooks.signal);
  const pool = new Pool(origin, {
    connections: options.concurrency,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connectTimeout: Math.min(options.requestTimeoutMs, 10_000),
    headersTimeout: options.requestTimeoutMs,
    bodyTimeout: options.requestTimeoutMs,
  });
  const histogram = createLatencyHistogram();
  const byStatus: Record<string, number> = {};
  const acceptedIds: string[] = [];
  const refusals: HttpRefusal[] = [];
  let sent = 0;
  /** The answers to the run's primary messages (follow-ups are counted apart). */
  const primaries = { accepted: 0, refused: 0, failed: 0 };
  let noAnswer = 0;
  let throttled = 0;
  let authStatus: number | null = null;
  let firstError: string | null = null;
  let nextIndex = 0;
  const followUps = new FollowUpQueue<HttpFollowUp>();
  /** Primaries taken by a lane and not made yet: each may still schedule follow-ups. */
  let generating = 0;
  let followUpsSent = 0;
  let followUpsAccepted = 0;
  const t0 = performance.now();
  const progress = (): HttpProgress => ({ sent, ...primaries });

  /**
   * One POST; a 429 (the server's per-token rate limit) is waited out as its Retry-After says and the
   * same request sent again, a bounded number of times: being throttled is the server pacing the run,
   * not a refusal (the same id and body are idempotent). The last answer is returned whatever it is.
   */
  const requestWithThrottle = async (message: HttpMessage) => {
    for (let attempt = 1; ; attempt++) {
      const response = await pool.request({
        path: '/v1/transactions',
        method: 'POST',
        headers: {
          'content-type': message.contentType,
          'x-txsim-run': options.runId,
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        },
        body: message.body,
        ...(hooks.signal ? { signal: hooks.signal } : {}),
      });
      if (response.statusCode !== 429 || attempt >= THROTTLE_RETRIES_MAX || hooks.signal?.aborted) return response;
      throttled++;
      await response.body.dump();
      const retryAfterS = Number(response.headers['retry-after']);
      const delayMs = Math.min(THROTTLE_WAIT_MAX_MS, Number.isFinite(retryAfterS) && retryAfterS > 0 ? retryAfterS * 1000 : 1000);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  };

  /** One message from its intended send time (performance.now() clock) to its answer. */
  const post = async (message: HttpMessage, intendedMs: number): Promise<'accepted' | 'refused' | 'failed'> => {
    let answer: 'accepted' | 'refused' | 'failed' = 'failed';
    try {
      const response = await requestWithThrottle(message);
      const status = response.statusCode;
      byStatus[status] = (byStatus[status] ?? 0) + 1;
      if (status === 200 || status === 202) {
        await response.body.dump();
        acceptedIds.push(message.id);
        answer = 'accepted';
      } else {
        refusals.push({ id: message.id, status });
        if (status === 400 && message.poison) answer = 'refused';
        else firstError ??= `${status} ${(await response.body.text()).slice(0, ERROR_TEXT_MAX)}`;
        if (AUTH_STATUSES.has(status)) authStatus ??= status;
        await response.body.dump().catch(() => {});
      }
    } catch (err) {
      noAnswer++;
      refusals.push({ id: message.id, status: null });
      firstError ??= (err as Error).message;
    }
    recordMs(histogram, performance.now() - intendedMs);
    return answer;
  };

  const waitUntil = async (atMs: number) => {
    const waitMs = atMs - performance.now();
    if (waitMs > 1) await new Promise((resolve) => setTimeout(resolve, waitMs));
  };
  const intendedOf = (index: number) => (options.ratePerS > 0 ? t0 + (index * 1000) / options.ratePerS : performance.now());

  let lastPrimaryAnsweredMs = t0;
  const sendPrimary = async (index: number, intendedMs: number): Promise<void> => {
    let message: HttpMessage;
    try {
      await waitUntil(intendedMs);
      // In paced mode a message is "created" at its intended time, as over AMQP.
      message = messageAt(index, new Date(options.ratePerS > 0 ? performance.timeOrigin + intendedMs : Date.now()));
    } finally {
      generating--;
    }
    for (const f of message.followUps ?? []) followUps.push(intendedMs + f.delayMs, f);
    sent++;
    primaries[await post(message, intendedMs)]++;
    lastPrimaryAnsweredMs = performance.now();
  };

  const sendFollowUp = async (dueMs: number, followUp: HttpFollowUp): Promise<void> => {
    await waitUntil(dueMs);
    // Interrupted meanwhile: not sent, so not made (made is recorded with the run).
    if (hooks.signal?.aborted) return;
    followUpsSent++;
    if ((await post(followUp.messageAt(new Date()), dueMs)) === 'accepted') followUpsAccepted++;
  };

  /**
   * `concurrency` lanes each take the next thing to send — a follow-up due before the next primary
   * message, else that primary — so never more requests are in flight than that. After the last
   * primary the lanes send the follow-ups left, each at its time (a primary still being made may add
   * some, so a lane waits for those before it ends).
   */
  const lane = async (): Promise<void> => {
    while (!hooks.signal?.aborted && authStatus === null) {
      const due = followUps.peek();
      if (nextIndex < options.count) {
        const primaryAtMs = intendedOf(nextIndex);
        if (due && due.dueMs <= primaryAtMs) {
          followUps.pop();
          await sendFollowUp(due.dueMs, due.followUp);
        } else {
          generating++;
          await sendPrimary(nextIndex++, primaryAtMs);
        }
      } else if (due) {
        followUps.pop();
        await sendFollowUp(due.dueMs, due.followUp);
      } else if (generating > 0) {
        await new Promise((resolve) => setTimeout(resolve, FOLLOW_UP_POLL_MS));
      } else {
        return;
      }
    }
  };
  const onProgress = hooks.onProgress;
  const progressTimer = onProgress ? setInterval(() => onProgress(progress()), 200) : null;
  try {
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, lane));
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    await pool.close().catch(() => {});
  }
  onProgress?.(progress());
  return {
    ...progress(),
    followUps: { sent: followUpsSent, accepted: followUpsAccepted },
    byStatus,
    noAnswer,
    throttled,
    acceptedIds,
    refusals,
    stoppedEarly: sent < options.count,
    authStatus,
    firstError,
    elapsedMs: performance.now() - t0,
    primarySpanMs: lastPrimaryAnsweredMs - t0,
    requestLatencyMs: percentilesOf(histogram),
  };
}

/** GET `path` at `baseUrl` over one short-lived connection: the status and the start of the body, or what went wrong. */
async function probeGet(
  baseUrl: string,
  path: string,
  timeoutMs: number,
  headers: Record<string, string> = {},
): Promise<{ readonly status: number; readonly body: string } | { readonly error: string }> {
  const origin = new URL(baseUrl).origin;
  const pool = new Pool(origin, { connections: 1, connectTimeout: timeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  try {
    const response = await pool.request({ path, method: 'GET', headers, signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.statusCode, body: (await response.body.text()).slice(0, 200) };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const text = (err as Error).message;
    return { error: code && !text.includes(code) ? `${code} ${text}` : text };
  } finally {
    await pool.close().catch(() => {});
  }
}

/**
 * Whether a txsim server answers at `baseUrl` (`GET /healthz`, no dependencies, no token): null when
 * it does, else what went wrong, so gen can say which server is unreachable before it starts a run.
 */
export async function probeServer(baseUrl: string, timeoutMs: number): Promise<string | null> {
  const answer = await probeGet(baseUrl, '/healthz', timeoutMs);
  if ('error' in answer) return answer.error;
  return answer.status === 200 ? null : `GET /healthz answered ${answer.status} (is this a txsim serve?)`;
}

/** A transaction id no one has: reading it costs a lookup by key and answers 404 to any token the server takes. */
const NO_SUCH_TRANSACTION = '00000000-0000-4000-8000-000000000000';

/**
 * Whether the server takes `token` (null: none, for a `--no-auth` server): null when it does, else
 * its answer, so a missing, mistyped or revoked token stops gen before a run is recorded rather than
 * after every request was refused. An unanswered probe says nothing: reachability is probeServer's.
 */
export async function probeToken(baseUrl: string, token: string | null, timeoutMs: number): Promise<string | null> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const answer = await probeGet(baseUrl, `/v1/transactions/${NO_SUCH_TRANSACTION}`, timeoutMs, headers);
  if ('error' in answer || answer.status !== 401) return null;
  return `answered 401 (${answer.body})`;
}
