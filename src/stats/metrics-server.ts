import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';

/** Where `--metrics-port` serves: loopback by default, since metrics say a lot about a system. */
export interface MetricsServerOptions {
  readonly host: string;
  /** 0 = any free port (the chosen one is logged and returned). */
  readonly port: number;
}

export const DEFAULT_METRICS_HOST = '127.0.0.1';

export interface RunningMetricsServer {
  /** `http://host:port/metrics` */
  readonly url: string;
  /** Stops listening; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` from one registry on a plain node:http server of its own, apart from any
 * application server (serve's auth, rate limit and request log do not apply to scrapes, and gen,
 * worker and accounting have no HTTP server at all). A failing collect answers 500 for that scrape
 * only; it never stops the process.
 */
export async function startMetricsServer(registry: Registry, options: MetricsServerOptions, log: Logger): Promise<RunningMetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        log.warn({ err: (err as Error).message }, 'metrics scrape failed');
        response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  // Keep-alive sockets of a scraper must not hold the process open at shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new UsageError(`--metrics-port: ${options.port} is already in use on ${options.host}`) : err),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}/metrics`;
  // Not under `url`: the logger redacts every field of that name (URLs may carry passwords; this one
  // never does), and with --metrics-port 0 this line is the only place the chosen port is told.
  log.info({ metricsUrl: url, port: address.port }, 'metrics served');
  let closed: Promise<void> | null = null;
  return {
    url,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}
