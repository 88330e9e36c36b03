import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { topologyOf } from '../amqp/topology.js';
import { readPartitionCount } from '../db/partition-leases.js';
import type { Config } from '../config/config.js';
import { redactUrl } from '../config/redact.js';
import { checkDatabase, createDatabase, type Knex } from '../db/knex.js';
import { isConnectionError } from '../db/with-transaction.js';
import { describeCause, ServiceRefusedError, ServiceUnavailableError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { DASHBOARD_DEFAULTS, DashboardStats } from './dashboard-stats.js';
import { DerivedIds } from './derived-ids.js';
import { FeedHub, FINAL_STATES } from './feed-hub.js';
import { FeedSource } from './feed-source.js';
import type { ServeContext, ServeOptions } from './serve-context.js';
import { buildServer } from './server.js';
import { feedEventOfView, readTransactionView } from './transaction-status.js';
import { TransactionPublisher } from './transaction-publisher.js';

/** A running server: where it listens, and how to stop it. */
export interface RunningServer {
  readonly url: string;
  readonly app: FastifyInstance;
  /** Stops accepting, closes sockets, the feed, the publisher (after its confirms) and the pool. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts `txsim serve`: database pool, producer, live feed, HTTP server. Waits up to
 * `config.connectTimeoutMs` (`--connect-timeout`) for the database and the broker, then throws
 * ServiceUnavailableError naming the one that is not there (exit 3); later outages are answered per
 * request with 503.
 */
export async function startServer(
  config: Config,
  options: ServeOptions,
  log: Logger,
  hooks: Pick<ServeContext, 'onResponse' | 'onTokenCheck'> = {},
): Promise<RunningServer> {
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 16 });
  const topology = topologyOf(config);
  const clientName = `txsim serve ${hostname()}-${process.pid}`;
  const publisher = new TransactionPublisher(
    {
      amqpUrl: config.amqpUrl,
      topology,
      clientName: `${clientName} publish`,
      windowMax: options.publishWindowMax,
      confirmTimeoutMs: options.confirmTimeoutMs,
    },
    log.child({ part: 'publisher' }),
  );
  const hub = new FeedHub({ sendBufferBytesMax: options.sendBufferBytesMax, subscriptionsMax: 1_000 });
  const stats = new DashboardStats(
    {
      amqpUrl: config.amqpUrl,
      rabbitmqApiUrl: config.rabbitmqApiUrl,
      topology,
      clientName: `${clientName} dashboard`,
      ...DASHBOARD_DEFAULTS,
    },
    log.child({ part: 'dashboard' }),
  );
  const dashboard = { stats, tickMs: DASHBOARD_DEFAULTS.tickMs };
  const ids = new DerivedIds(db, config.namespace);
  const ctx: ServeContext = { db, publisher, hub, log, namespace: config.namespace, ids, options, dashboard, ...hooks };
  const feed = new FeedSource(
    { amqpUrl: config.amqpUrl, topology, clientName: `${clientName} feed`, queueLengthMax: 100_000 },
    log.child({ part: 'feed' }),
    {
      onEvent: (event) => hub.publish(event),
      // Events published while the feed was away are gone: re-read what clients still wait for.
      onReconnect: () => void resync(ctx),
    },
  );
  let app: FastifyInstance | null = null;
  const close = async () => {
    await app?.close().catch(() => {});
    await feed.close().catch(() => {});
    await stats.close().catch(() => {});
    await publisher.close().catch(() => {});
    await db.destroy().catch(() => {});
  };
  let closing: Promise<void> | null = null;
  try {
    const deadline = Date.now() + config.connectTimeoutMs;
    await waitForDatabase(db, config, deadline);
    // Read (or created) at start: a namespace set up before the key's table is told so at once.
    await ids.load();
    const namespaceTopology = topologyOf(config, await readPartitionCount(db, config.namespace));
    publisher.useTopology(namespaceTopology);
    stats.useTopology(namespaceTopology);
    await waitForBroker(publisher, config, deadline);
    await feed.start();
    await stats.start();
    app = await buildServer(ctx);
    await app.listen({ port: options.port, host: options.host }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL')
        throw new UsageError(`--port/--host: cannot listen on ${options.host}:${options.port} (${err.code})`);
      throw err;
    });
  } catch (err) {
    await close();
    throw err;
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `http://${host}:${address.port}`, app, close: () => (closing ??= close()) };
}

/** Pause between two start-up attempts at a service, growing to this. */
const START_RETRY_DELAY_MAX_MS = 2_000;

/**
 * Tries `attempt` until it succeeds or `deadline` passes (an attempt still running then is given
 * up): a server started beside its services (compose, CI) waits for them, one started against a
 * wrong address fails within `--connect-timeout`. `retryable` says which failures waiting can cure.
 */
async function untilDeadline(
  attempt: () => Promise<string | null>,
  deadline: number,
  retryable: (err: unknown) => boolean,
): Promise<string | null> {
  let last: string | null = null;
  for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, START_RETRY_DELAY_MAX_MS)) {
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) return last ?? 'no answer';
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(last ?? 'no answer'), remainingMs)));
    try {
      last = await Promise.race([attempt(), timeout]);
      if (last === null) return null;
    } catch (err) {
      if (!retryable(err)) throw err;
      last = describeCause(err);
    } finally {
      clearTimeout(timer);
    }
    if (Date.now() + delayMs >= deadline) return last;
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

function waitedText(config: Config): string {
  return `no connection within ${Number((config.connectTimeoutMs / 1000).toFixed(1))} s (--connect-timeout)`;
}

/** The database, waited for while it refuses connections; a missing database or bad credentials fail at once. */
async function waitForDatabase(db: Knex, config: Config, deadline: number): Promise<void> {
  const failure = await untilDeadline(
    async () => {
      await checkDatabase(db, config.databaseUrl, config.databaseName);
      return null;
    },
    deadline,
    (err) => err instanceof ServiceUnavailableError && isConnectionError(err.cause),
  );
  if (failure !== null)
    throw new ServiceUnavailableError(
      'database',
      redactUrl(config.databaseUrl),
      new Error(`${stripPrefix(failure)}; ${waitedText(config)}`),
    );
}

/** The broker, through the producer's own connection (kept for the first requests). */
async function waitForBroker(publisher: TransactionPublisher, config: Config, deadline: number): Promise<void> {
  const failure = await untilDeadline(
    async () => {
      const ready = await publisher.ready();
      // A refused login stays refused: said at once, not waited on until the deadline.
      if (ready.error instanceof ServiceRefusedError) throw ready.error;
      // Blocked by an alarm is still a broker: serve starts, and answers 503 until it clears.
      return ready.ok || ready.detail.startsWith('connection blocked') ? null : ready.detail;
    },
    deadline,
    (err) => !(err instanceof ServiceRefusedError),
  );
  if (failure !== null)
    throw new ServiceUnavailableError('rabbitmq', redactUrl(config.amqpUrl), new Error(`${stripPrefix(failure)}; ${waitedText(config)}`));
}

/** `database unreachable at …: ECONNREFUSED …` → `ECONNREFUSED …` (the outer error names the service again). */
function stripPrefix(text: string): string {
  return text.replace(/^[a-z-]+ unreachable at \S+: /, '');
}

async function resync(ctx: ServeContext): Promise<void> {
  for (const id of ctx.hub.openTransactions()) {
    try {
      const view = await readTransactionView(ctx.db, id);
      // Final states, and the failed attempts a client may have missed (a parked one waits for nothing else).
      if (view && (FINAL_STATES.has(view.status) || view.status === 'retrying' || view.status === 'parked'))
        ctx.hub.publish(feedEventOfView(view));
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message }, 'feed resync failed');
      return;
    }
  }
}
