import { splitUrlList } from '../config/url-list.js';
import type { Channel } from 'amqplib';
import { Agent, request } from 'undici';
import type { Topology } from '../amqp/topology.js';
import { redactUrl } from '../config/redact.js';
import { describeCause, ServiceUnavailableError } from '../errors.js';

/**
 * Queue depths for `watch`: from the RabbitMQ management HTTP API when it answers (ready, unacked,
 * consumers and rates), else from AMQP passive declares (ready and consumers only — AMQP has no
 * unacked count and no rates). Every reading says which source it came from, so the UI can label it.
 */

/**
 * What a queue is for, so the panel can name it and sum the retry steps and the partitions (the
 * process queues of an ordered namespace, `setup --partitions`).
 */
export type QueueRole = 'process' | 'partition' | 'retry' | 'errors' | 'dead' | 'accounting';

export interface WatchedQueue {
  readonly name: string;
  readonly role: QueueRole;
}

/** The queues `watch` shows, in display order. */
export function watchedQueues(t: Topology): WatchedQueue[] {
  return [
    { name: t.processQueue, role: 'process' },
    ...(t.ordered?.partitionQueues ?? []).map((name) => ({ name, role: 'partition' as const })),
    ...t.retryQueues.map((q) => ({ name: q.name, role: 'retry' as const })),
    { name: t.errorsQueue, role: 'errors' },
    { name: t.deadQueue, role: 'dead' },
    { name: t.accountingQueue, role: 'accounting' },
  ];
}

export interface QueueDepth {
  readonly name: string;
  readonly role: QueueRole;
  /** False when the queue does not exist (not set up yet, or deleted). */
  readonly exists: boolean;
  readonly ready: number | null;
  /** Delivered, not yet acked. Null from the AMQP fallback, which cannot see it. */
  readonly unacked: number | null;
  readonly consumers: number | null;
  /** Messages published into the queue per second (management API sample, ~5 s old). */
  readonly inPerS: number | null;
  /** Messages delivered or fetched from the queue per second. */
  readonly outPerS: number | null;
}

export type QueueSource = 'management-api' | 'amqp-passive';

export interface QueueReading {
  readonly source: QueueSource;
  readonly atMs: number;
  readonly queues: readonly QueueDepth[];
  /** Why the management API was not used (fallback readings only). */
  readonly apiError: string | null;
}

/** Bound on one management API request: a hung API must not freeze the refresh loop. */
export const API_TIMEOUT_MS = 2_000;

interface ApiQueue {
  messages_ready?: number;
  messages_unacknowledged?: number;
  consumers?: number;
  message_stats?: { publish_details?: { rate?: number }; deliver_get_details?: { rate?: number } };
}

/**
 * A small client for the RabbitMQ management HTTP API (undici). Credentials come from the URL's
 * user info and are sent as Basic auth; they never appear in errors (the URL is redacted).
 */
export class ManagementApiClient {
  private readonly base: URL;
  private readonly authorization: string | null;
  private readonly agent: Agent;
  /** The API URL without its password, for messages. */
  readonly endpoint: string;

  constructor(
    apiUrl: string,
    private readonly vhost: string,
    private readonly timeoutMs: number = API_TIMEOUT_MS,
  ) {
    const url = new URL(apiUrl);
    this.endpoint = redactUrl(apiUrl);
    this.authorization = url.username
      ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
      : null;
    url.username = '';
    url.password = '';
    this.base = url;
    // One keep-alive connection is plenty for a handful of requests per second.
    this.agent = new Agent({ connections: 2, keepAliveTimeout: 10_000, connectTimeout: timeoutMs });
  }

  /** One queue's depth and rates; `exists: false` on 404. Throws ServiceUnavailableError otherwise. */
  async queue(q: WatchedQueue): Promise<QueueDepth> {
    const path = `/api/queues/${encodeURIComponent(this.vhost)}/${encodeURIComponent(q.name)}`;
    const data = (await this.get(path, {
      columns: 'name,messages_ready,messages_unacknowledged,consumers,message_stats',
    })) as ApiQueue | null;
    if (data === null) return { ...q, exists: false, ready: null, unacked: null, consumers: null, inPerS: null, outPerS: null };
    return {
      ...q,
      exists: true,
      ready: data.messages_ready ?? 0,
      unacked: data.messages_unacknowledged ?? 0,
      consumers: data.consumers ?? 0,
      // No message_stats at all means no traffic in the sampling window.
      inPerS: data.message_stats?.publish_details?.rate ?? 0,
      outPerS: data.message_stats?.deliver_get_details?.rate ?? 0,
    };
  }

  /** GET a JSON document; null on 404. */
  async get(path: string, query: Record<string, string> = {}): Promise<unknown> {
    // The API may live under a path prefix (behind a proxy); a bare "/" must not double the slash,
    // or "//api/…" would name a host.
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + path, this.base);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(url, {
        method: 'GET',
        dispatcher: this.agent,
        headers: { accept: 'application/json', ...(this.authorization ? { authorization: this.authorization } : {}) },
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new ServiceUnavailableError('rabbitmq-management', this.endpoint, err);
    }
    if (response.statusCode === 404) {
      await response.body.dump();
      return null;
    }
    if (response.statusCode !== 200) {
      await response.body.dump();
      const hint = response.statusCode === 401 ? ' (wrong user or password in RABBITMQ_API_URL?)' : '';
      throw new ServiceUnavailableError('rabbitmq-management', this.endpoint, new Error(`HTTP ${response.statusCode}${hint}`));
    }
    try {
      return await response.body.json();
    } catch (err) {
      throw new ServiceUnavailableError('rabbitmq-management', this.endpoint, err);
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }
}

/**
 * Counts from AMQP `queue.declare(passive)`: ready messages and consumers. A missing queue closes
 * the channel with 404, so the channel is reopened after one; checks run one at a time.
 */
export class PassiveDeclareReader {
  private channel: Channel | null = null;

  /** A plain or a recovering connection: only `createChannel` is used, a fresh channel after each failure. */
  constructor(private readonly connection: { createChannel(): Promise<Channel> }) {}

  async queue(q: WatchedQueue): Promise<QueueDepth> {
    const channel = await this.openChannel();
    try {
      const ok = await channel.checkQueue(q.name);
      return { ...q, exists: true, ready: ok.messageCount, unacked: null, consumers: ok.consumerCount, inPerS: null, outPerS: null };
    } catch (err) {
      this.channel = null;
      if ((err as { code?: number }).code === 404)
        return { ...q, exists: false, ready: null, unacked: null, consumers: null, inPerS: null, outPerS: null };
      throw err;
    }
  }

  private async openChannel(): Promise<Channel> {
    if (this.channel) return this.channel;
    const channel = await this.connection.createChannel();
    channel.on('error', () => {
      // A 404 on checkQueue closes the channel; the caller sees the rejected promise.
    });
    channel.on('close', () => {
      if (this.channel === channel) this.channel = null;
    });
    this.channel = channel;
    return channel;
  }

  async close(): Promise<void> {
    const channel = this.channel;
    this.channel = null;
    await channel?.close().catch(() => {});
  }
}

/**
 * Reads every watched queue, from the API when it answers and from AMQP otherwise. After the API
 * fails it is retried every `apiRetryMs`, not on every refresh, so a dead API costs one timeout
 * per interval rather than one per second.
 */
export class QueueDepthReader {
  private apiDownUntilMs = 0;
  private lastApiError: string | null = null;

  constructor(
    private readonly queues: readonly WatchedQueue[],
    private readonly api: Pick<ManagementApiClient, 'queue'> | null,
    private readonly passive: Pick<PassiveDeclareReader, 'queue'> | null,
    private readonly apiRetryMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  async read(): Promise<QueueReading> {
    if (this.api && this.now() >= this.apiDownUntilMs) {
      try {
        const api = this.api;
        const queues = await Promise.all(this.queues.map((q) => api.queue(q)));
        this.lastApiError = null;
        return { source: 'management-api', atMs: this.now(), queues, apiError: null };
      } catch (err) {
        this.lastApiError = describeCause(err);
        this.apiDownUntilMs = this.now() + this.apiRetryMs;
      }
    }
    const apiError = this.lastApiError ?? (this.api ? null : 'disabled');
    if (!this.passive) throw new Error(`management API unavailable (${apiError}) and no AMQP fallback`);
    const queues: QueueDepth[] = [];
    for (const q of this.queues) queues.push(await this.passive.queue(q));
    return { source: 'amqp-passive', atMs: this.now(), queues, apiError };
  }
}

/** The vhost named by an AMQP URL's path ("/" when it has none), as the management API expects. */
export function vhostOf(amqpUrl: string): string {
  // Every node of a cluster list serves the same vhost: the first one names it.
  const path = new URL(splitUrlList(amqpUrl)[0] ?? amqpUrl).pathname;
  return path.length > 1 ? decodeURIComponent(path.slice(1)) : '/';
}

/**
 * The last queue reading with the time it was taken (on the reader's clock) and the latest read's
 * error, kept together: a failed read must not leave the last depths looking current.
 */
export interface QueueState {
  readonly reading: QueueReading | null;
  readonly readAtMs: number | null;
  /** Why the latest read failed; null when it succeeded (or none was tried yet). */
  readonly error: string | null;
}

export const NO_QUEUE_STATE: QueueState = { reading: null, readAtMs: null, error: null };

/** A read succeeded at `atMs`. */
export function queueRead(reading: QueueReading, atMs: number): QueueState {
  return { reading, readAtMs: atMs, error: null };
}

/** A read failed: the last reading stays (for its depths, marked stale), the error is shown with it. */
export function queueReadFailed(state: QueueState, error: string): QueueState {
  return { ...state, error };
}

/** A reading with no answer for this long is stale even without an error (a read that hangs). */
export const QUEUE_STALE_AFTER_MS_MIN = 10_000;

/** What every view shows of the queues at one instant. */
export interface QueueView {
  /** The reading to show; while stale, its rates are null (a rate from then is no rate of now). */
  readonly queues: QueueReading | null;
  /** Why the latest read failed (with or without an older reading to show). */
  readonly queueError: string | null;
  /** The reading shown is old: the latest read failed, or none succeeded for `staleAfterMs`. */
  readonly queuesStale: boolean;
  /** How old the reading shown is, on the reader's clock; null without one. */
  readonly queuesAgeMs: number | null;
}

/**
 * The queue part of a frame: the last reading, its age, and whether it is stale. The rule lives here
 * so the TUI, the plain lines, `--json` and the dashboard say the same thing.
 */
export function queueView(state: QueueState, nowMs: number, staleAfterMs: number = QUEUE_STALE_AFTER_MS_MIN): QueueView {
  const { reading, readAtMs, error } = state;
  if (reading === null || readAtMs === null) return { queues: null, queueError: error, queuesStale: false, queuesAgeMs: null };
  const ageMs = Math.max(0, nowMs - readAtMs);
  const stale = error !== null || ageMs > staleAfterMs;
  return {
    queues: stale ? { ...reading, queues: reading.queues.map((q) => ({ ...q, inPerS: null, outPerS: null })) } : reading,
    queueError: error,
    queuesStale: stale,
    queuesAgeMs: ageMs,
  };
}
