import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { ApiError } from './api-error.js';
import { ISO_4217_MINOR_UNITS } from '../domain/currency-exponents.js';
import { principalOf } from './auth.js';
import type { DashboardFrame } from './dashboard-stats.js';
import type { FeedClient } from './feed-hub.js';
import type { ServeContext } from './serve-context.js';
import { tokenWatchOf } from './token-check.js';
import { logUpgrade } from './request-log.js';

/**
 * The browser dashboard: `GET /` (plain HTML, ES modules and CSS from web/, uPlot from its
 * package), `GET /v1/dashboard/session` (does this token open it?) and `GET /v1/dashboard/ws`, one
 * WebSocket carrying the stats frames (once per tick) and the live feed of every transaction
 * (batched, newest kept). Admin only: it shows every account. Its socket is closed with 1008 when
 * its token is revoked or expires (see TokenWatch); the page then asks for a token again.
 */

/** web/ at the package root: the same path from src/serve/ (tests) and dist/serve/ (the CLI). */
export const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url));
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot'));

/** The files the page loads, by URL: no directory listing, no path from the request touches the disk. */
const ASSETS: Readonly<Record<string, { readonly file: string; readonly type: string }>> = {
  '/': { file: join(WEB_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/web/dashboard.js': { file: join(WEB_DIR, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/web/dashboard-view.js': { file: join(WEB_DIR, 'dashboard-view.js'), type: 'text/javascript; charset=utf-8' },
  '/web/dashboard.css': { file: join(WEB_DIR, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.esm.js': { file: join(UPLOT_DIR, 'uPlot.esm.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { file: join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** Feed events held for one dashboard between flushes; beyond it the oldest are dropped (and counted). */
export const FEED_BATCH_MAX = 200;
/** How often a dashboard gets the transactions that arrived since the last batch. */
export const FEED_FLUSH_MS = 250;
/** A dashboard with more than this many bytes unsent gets no frames or batches until it catches up. */
const DASHBOARD_BUFFER_BYTES_MAX = 1024 * 1024;

export function dashboardRoutes(app: FastifyInstance, ctx: ServeContext): void {
  for (const [url, asset] of Object.entries(ASSETS)) {
    app.get(url, { config: { public: true }, schema: { hide: true } }, async (_request, reply) => {
      const body = await readFile(asset.file);
      return reply.type(asset.type).header('cache-control', 'no-cache').send(body);
    });
  }

  // The page formats money with each currency's ISO 4217 decimals: the server's table, as a module.
  const exponents = Object.fromEntries([...ISO_4217_MINOR_UNITS].filter(([, exponent]) => exponent !== 2));
  const exponentsModule = `// Minor-unit digits of the ISO 4217 currencies whose minor unit is not 2 (from txsim serve).\nexport const EXPONENTS = ${JSON.stringify(exponents)};\n`;
  app.get('/web/currency-exponents.js', { config: { public: true }, schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(exponentsModule),
  );

  const requireAdmin = (request: Parameters<typeof principalOf>[0], _reply: unknown, done: (err?: Error) => void) => {
    done(principalOf(request).kind === 'admin' ? undefined : new ApiError(403, 'forbidden', 'the dashboard needs an admin token'));
  };

  app.get(
    '/v1/dashboard/session',
    {
      preHandler: requireAdmin,
      schema: {
        summary: 'Whether this token opens the dashboard (admin), and what it will show',
        tags: ['dashboard'],
        security: [{ bearer: [] }],
      },
    },
    () => ({ namespace: ctx.namespace, noAuth: ctx.options.noAuth, tickMs: ctx.dashboard?.tickMs ?? null }),
  );

  const tokens = tokenWatchOf(app, ctx);
  app.get(
    '/v1/dashboard/ws',
    {
      websocket: true,
      preHandler: requireAdmin,
      schema: {
        summary: 'The dashboard feed (WebSocket): stats frames and every transaction',
        tags: ['dashboard'],
        security: [{ bearer: [] }],
      },
    },
    (socket, request) => {
      logUpgrade(request);
      const principal = principalOf(request);
      /** Sends unless the socket is closed or too far behind; says whether it did (a skipped feed batch is counted). */
      const send = (text: string): boolean => {
        if (socket.readyState !== socket.OPEN || socket.bufferedAmount > DASHBOARD_BUFFER_BYTES_MAX) return false;
        socket.send(text);
        return true;
      };
      const stats = ctx.dashboard?.stats ?? null;
      send(
        JSON.stringify({
          type: 'hello',
          namespace: ctx.namespace,
          history: stats?.points() ?? [],
          frame: stats?.current() ?? null,
          feedBatchMax: FEED_BATCH_MAX,
        }),
      );
      // A frame skipped by the buffer guard is simply replaced by the next one: frames are snapshots.
      const unsubscribe = stats?.subscribe((frame: DashboardFrame) => void send(JSON.stringify({ type: 'frame', ...frame }))) ?? (() => {});
      const batch = new FeedBatch((code, reason) => socket.close(code, reason), send);
      ctx.hub.add(batch, principal);
      ctx.hub.subscribe(batch, { kind: 'all' });
      tokens.admit(principal);
      const flusher = setInterval(() => batch.flush(), FEED_FLUSH_MS);
      flusher.unref();
      let alive = true;
      socket.on('pong', () => (alive = true));
      const heartbeat = setInterval(() => {
        if (!alive) return socket.terminate();
        alive = false;
        socket.ping();
      }, ctx.options.heartbeatMs);
      heartbeat.unref();
      socket.on('message', () => {
        // Nothing to ask: everything is pushed. Ignored.
      });
      socket.on('close', () => {
        clearInterval(flusher);
        clearInterval(heartbeat);
        unsubscribe();
        ctx.hub.remove(batch);
      });
      socket.on('error', () => socket.terminate());
    },
  );
}

/**
 * The hub's view of a dashboard: events are held and sent together every FEED_FLUSH_MS, at most
 * FEED_BATCH_MAX of them (the newest), so thousands of transactions a second cost the browser four
 * messages a second and a known number of rows. Every event that never reaches the page is counted
 * in the next batch's `dropped`: those pushed out of a full batch, and whole batches the socket
 * would not take (too far behind).
 */
export class FeedBatch implements FeedClient {
  private events: string[] = [];
  private dropped = 0;

  constructor(
    private readonly closeSocket: (code: number, reason: string) => void,
    /** Sends one message; false when it was not sent (the socket is closed or too far behind). */
    private readonly sendText: (text: string) => boolean,
  ) {}

  get bufferedBytes(): number {
    // The batch bounds itself; the hub's too-slow rule would cut a dashboard off during a burst.
    return 0;
  }

  send(text: string): void {
    if (this.events.push(text) > FEED_BATCH_MAX) {
      this.events.shift();
      this.dropped++;
    }
  }

  close(code: number, reason: string): void {
    this.closeSocket(code, reason);
  }

  /** Sends what is held; a batch the socket does not take is dropped, and its events counted for the next one. */
  flush(): void {
    // Nothing new, but events were lost since the last batch the page got: still say how many.
    if (this.events.length === 0 && this.dropped === 0) return;
    const events = this.events;
    const dropped = this.dropped;
    this.events = [];
    this.dropped = 0;
    if (!this.sendText(`{"type":"tx","dropped":${dropped},"events":[${events.join(',')}]}`)) this.dropped += dropped + events.length;
  }
}
