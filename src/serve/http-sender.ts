import { Pool } from 'undici';
import { createLatencyHistogram, percentilesOf, recordMs, type Percentiles } from '../stats/histogram.js';

/**
 * The HTTP half of `txsim gen <count> --via <url>`: sends a seeded stream through `POST
 * /v1/transactions` instead of AMQP, on a keep-alive pool with bounded concurrency, measuring each
 * request's latency from its intended send time (as gen measures confirm latency, so a stall shows
 * in the percentiles instead of slowing the schedule). gen supplies the messages and records the
 * run; this module only sends and counts. Every request carries `X-Txsim-Run`, so the workers record
 * the run id and `verify --run` accounts for it (an admin token is needed for that header).
 */

/** What gen hands over per index: the id and the exact body bytes it would publish. */
export interface HttpMessage {
  readonly id: string;
  readonly body: Buffer;
  readonly contentType: string;
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

export interface HttpSendSummary {
  readonly sent: number;
  /** 202 (new) and 200 (already known) answers: the broker confirmed these. */
  readonly accepted: number;
  /** Answers by status, e.g. {"202": 990, "400": 10}. */
  readonly byStatus: Record<string, number>;
  /** Requests with no answer (connection refused, reset, timeout). */
  readonly failed: number;
  /** Ids answered 202/200: the ones `verify --run` must find. */
  readonly acceptedIds: string[];
  readonly firstError: string | null;
  readonly elapsedMs: number;
  readonly requestLatencyMs: Percentiles;
}

export async function sendOverHttp(
  messageAt: (index: number, createdAt: Date) => HttpMessage,
  options: HttpSendOptions,
  hooks: { signal?: AbortSignal; onProgress?: (done: number) => void } = {},
): Promise<HttpSendSummary> {
  const origin = new URL(options.baseUrl).origin;
  const pool = new Pool(origin, {
    connections: options.concurrency,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: options.requestTimeoutMs,
    bodyTimeout: options.requestTimeoutMs,
  });
  const histogram = createLatencyHistogram();
  const byStatus: Record<string, number> = {};
  const acceptedIds: string[] = [];
  let sent = 0;
  let failed = 0;
  let firstError: string | null = null;
  let nextIndex = 0;
  const t0 = performance.now();

  const sendOne = async (index: number): Promise<void> => {
    const intendedMs = options.ratePerS > 0 ? t0 + (index * 1000) / options.ratePerS : performance.now();
    const waitMs = intendedMs - performance.now();
    if (waitMs > 1) await new Promise((resolve) => setTimeout(resolve, waitMs));
    const message = messageAt(index, new Date(options.ratePerS > 0 ? performance.timeOrigin + intendedMs : Date.now()));
    sent++;
    try {
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
      await response.body.dump();
      byStatus[response.statusCode] = (byStatus[response.statusCode] ?? 0) + 1;
      if (response.statusCode === 200 || response.statusCode === 202) acceptedIds.push(message.id);
    } catch (err) {
      failed++;
      firstError ??= (err as Error).message;
    }
    recordMs(histogram, performance.now() - intendedMs);
  };

  // `concurrency` lanes each take the next index: never more requests in flight than that.
  const lane = async (): Promise<void> => {
    for (let index = nextIndex++; index < options.count && !hooks.signal?.aborted; index = nextIndex++) {
      await sendOne(index);
      hooks.onProgress?.(sent);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, lane));
  } finally {
    await pool.close().catch(() => {});
  }
  return {
    sent,
    accepted: acceptedIds.length,
    byStatus,
    failed,
    acceptedIds,
    firstError,
    elapsedMs: performance.now() - t0,
    requestLatencyMs: percentilesOf(histogram),
  };
}
