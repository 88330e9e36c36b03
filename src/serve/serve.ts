import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { topologyOf } from '../amqp/topology.js';
import type { Config } from '../config/config.js';
import { checkDatabase, createDatabase } from '../db/knex.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { DASHBOARD_DEFAULTS, DashboardStats } from './dashboard-stats.js';
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
 * Starts `txsim serve`: database pool, producer, live feed, HTTP server. Throws
 * ServiceUnavailableError when the database or the broker is unreachable at start (later outages
 * are answered per request with 503).
 */
export async function startServer(
  config: Config,
  options: ServeOptions,
  log: Logger,
  hooks: Pick<ServeContext, 'onResponse'> = {},
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
    log.child({ component: 'publisher' }),
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
    log.child({ component: 'dashboard' }),
  );
  const dashboard = { stats, tickMs: DASHBOARD_DEFAULTS.tickMs };
  const ctx: ServeContext = { db, publisher, hub, log, namespace: config.namespace, options, dashboard, ...hooks };
  const feed = new FeedSource(
    { amqpUrl: config.amqpUrl, topology, clientName: `${clientName} feed`, queueLengthMax: 100_000 },
    log.child({ component: 'feed' }),
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
    await checkDatabase(db, config.databaseUrl, config.databaseName);
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
