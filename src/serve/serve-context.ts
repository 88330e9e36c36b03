import type { Knex } from '../db/knex.js';
import type { Logger } from '../log.js';
import type { TokenCheckResult } from './auth.js';
import type { DashboardStats } from './dashboard-stats.js';
import type { DerivedIds } from './derived-ids.js';
import type { FeedHub } from './feed-hub.js';
import type { TransactionPublisher } from './transaction-publisher.js';

/** What the routes of `txsim serve` share: the database, the producer, the live feed and the options. */
export interface ServeContext {
  readonly db: Knex;
  readonly publisher: TransactionPublisher;
  readonly hub: FeedHub;
  readonly log: Logger;
  readonly namespace: string;
  /** Ids derived from an Idempotency-Key or a webhook's transaction_id (keyed per namespace, so nobody can compute another's). */
  readonly ids: DerivedIds;
  readonly options: ServeOptions;
  /** The workers' stats and queue depths behind the dashboard (absent in servers built without it). */
  readonly dashboard?: { readonly stats: DashboardStats; readonly tickMs: number } | null;
  /** Told of every response (the Prometheus exporter, with `--metrics-port`). */
  readonly onResponse?: ((method: string, route: string, status: number, durationMs: number) => void) | null;
  /**
   * Told of every check of a well-formed bearer token: `valid` and `invalid` after its database read,
   * `limited` when its address had failed too often and it was refused without one.
   */
  readonly onTokenCheck?: ((result: TokenCheckResult) => void) | null;
}

export interface ServeOptions {
  readonly port: number;
  readonly host: string;
  /** Everyone is admin: for local demos only (the server says so loudly at start). */
  readonly noAuth: boolean;
  /** Requests per second per token on average (0 = unlimited), and the burst allowed above it. */
  readonly rateLimitPerS: number;
  readonly rateLimitBurst: number;
  /** Logins and registrations a minute per client address, an IPv6 one per /64 (0 = unlimited), all at once at most as many. */
  readonly credentialRateLimitPerMin: number;
  /**
   * Failed checks of well-formed bearer tokens a minute per client address, an IPv6 one per /64 (0 =
   * unlimited), all at once at most as many; past them the address's tokens neither seen valid nor
   * issued by this server (login, registration) are answered 429 without a database read.
   */
  readonly authFailureRateLimitPerMin: number;
  /**
   * Reverse proxies (addresses, CIDR ranges, `loopback` …) whose `X-Forwarded-For` names the client:
   * the address the credential and failed-token limits count. Empty: the TCP peer is the client, the
   * header is ignored.
   */
  readonly trustProxy: readonly string[];
  /** Largest page any list returns; `limit` above it is a 400. */
  readonly pageSizeMax: number;
  /** WebSocket ping interval; a client that did not answer the previous ping is disconnected. */
  readonly heartbeatMs: number;
  /** Bytes a WebSocket client may have unsent before it is told and disconnected. */
  readonly sendBufferBytesMax: number;
  /** Most unconfirmed publishes at once over all requests. */
  readonly publishWindowMax: number;
  readonly confirmTimeoutMs: number;
}

export const SERVE_DEFAULTS = {
  port: 8080,
  host: '127.0.0.1',
  rateLimitPerS: 500,
  rateLimitBurst: 1_000,
  credentialRateLimitPerMin: 30,
  authFailureRateLimitPerMin: 30,
  trustProxy: [] as readonly string[],
  pageSizeMax: 200,
  heartbeatMs: 30_000,
  sendBufferBytesMax: 1024 * 1024,
  publishWindowMax: 1_000,
  confirmTimeoutMs: 10_000,
} as const;
