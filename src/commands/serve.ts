import type { Command } from 'commander';
import { parseIntFlag, parseProxyListFlag } from '../config/parse.js';
import { UsageError } from '../errors.js';
import { flushLogger } from '../log.js';
import { SERVE_DEFAULTS, type ServeOptions } from '../serve/serve-context.js';
import { startMetricsServer, type MetricsServerOptions, type RunningMetricsServer } from '../stats/metrics-server.js';
import { contextFor, shutdownSignal, type CommandContext } from './context.js';
import { METRICS_HOST_OPTION, METRICS_PORT_OPTION, metricsOptionsFrom } from './metrics-flags.js';
import { registerTokens } from './tokens.js';

/** Runs the HTTP API until `signal` aborts. */
export async function handleServe(
  ctx: CommandContext,
  options: ServeOptions,
  signal: AbortSignal,
  metrics: MetricsServerOptions | null = null,
): Promise<void> {
  const log = ctx.log.child({ component: 'serve' });
  if (options.noAuth) {
    const warning =
      'txsim serve --no-auth: EVERY REQUEST IS ADMIN — no tokens are checked. For local demos only; never expose this server.';
    log.warn(warning);
    process.stderr.write(`\n*** ${warning} ***\n\n`);
  }
  // prom-client is loaded only when asked for: every other run of the CLI starts without it.
  const prometheus = metrics ? await import('../stats/prometheus.js') : null;
  const registry = prometheus ? prometheus.createMetricsRegistry('serve') : null;
  // Loaded here, not at the top: Fastify and its plugins are only needed by serve.
  const { startServer } = await import('../serve/serve.js');
  const server = await startServer(
    ctx.config,
    options,
    log,
    prometheus && registry ? { onResponse: prometheus.exportHttpMetrics(registry) } : {},
  );
  let metricsServer: RunningMetricsServer | null = null;
  try {
    if (registry && metrics) metricsServer = await startMetricsServer(registry, metrics, log);
    ctx.out(
      `txsim serve: listening on ${server.url} (dashboard ${server.url}/, API docs ${server.url}/docs, OpenAPI ${server.url}/openapi.json)`,
    );
    if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    log.info('shutting down');
  } finally {
    await metricsServer?.close();
    await server.close();
    await flushLogger(log);
  }
}

/**
 * Registers `txsim serve` and `txsim tokens` (the tokens it checks), so cli.ts wires the API with one
 * call.
 */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('the HTTP API and live WebSocket feed: ingest, status, balances, history, daily figures')
    .option('--port <n>', 'TCP port (0 = any free port)', String(SERVE_DEFAULTS.port))
    .option('--host <address>', 'address to listen on', SERVE_DEFAULTS.host)
    .option('--no-auth', 'accept every request as admin (local demos only; said loudly at start)')
    .option(
      '--rate-limit <req/s>',
      "requests per second per token, an account's tokens counting as one, on average (0 = unlimited)",
      String(SERVE_DEFAULTS.rateLimitPerS),
    )
    .option(
      '--rate-burst <n>',
      "requests a token (an account's tokens counting as one) may send at once above the average",
      String(SERVE_DEFAULTS.rateLimitBurst),
    )
    .option(
      '--credential-rate-limit <n/min>',
      'logins and registrations a minute per client address, an IPv6 one per /64 (0 = unlimited)',
      String(SERVE_DEFAULTS.credentialRateLimitPerMin),
    )
    .option(
      '--auth-failure-limit <n/min>',
      'failed token checks a minute per client address (IPv6: per /64); past them its tokens neither seen valid nor issued by this server get 429 without a database read (0 = unlimited)',
      String(SERVE_DEFAULTS.authFailureRateLimitPerMin),
    )
    .option(
      '--trust-proxy <addresses>',
      'reverse proxies (IPs, CIDR ranges, loopback, linklocal, uniquelocal; comma-separated) whose X-Forwarded-For names the client for the credential and failed-token limits (default: none, the TCP peer is the client)',
    )
    .option('--page-size-max <n>', 'largest page a list returns', String(SERVE_DEFAULTS.pageSizeMax))
    .option(
      '--heartbeat <ms>',
      'WebSocket ping interval; a client that misses one ping is disconnected',
      String(SERVE_DEFAULTS.heartbeatMs),
    )
    .option('--confirm-timeout <ms>', 'a broker confirm that takes longer answers 503', String(SERVE_DEFAULTS.confirmTimeoutMs))
    .option(...METRICS_PORT_OPTION)
    .option(...METRICS_HOST_OPTION)
    .option(
      '--connect-timeout <s>',
      'how long to wait at start for the database and RabbitMQ before giving up with exit 3 (env TXSIM_CONNECT_TIMEOUT; default 15)',
    )
    .addHelpText(
      'after',
      `
POST /v1/transactions is answered 202 only after RabbitMQ confirmed the message; 503 with
Retry-After when the broker or the database is unreachable. Tokens: \`txsim tokens create\`.

Example:
  $ txsim tokens create --admin
  $ txsim serve --port 8080
  $ curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{"type":"deposit","accountId":1,"amountMinor":1000,"currency":"EUR"}' http://127.0.0.1:8080/v1/transactions

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(async (opts: Record<string, string | boolean | undefined>, command: Command) => {
      const str = (key: string) => opts[key] as string | undefined;
      const host = str('host') ?? SERVE_DEFAULTS.host;
      if (host.trim() === '') throw new UsageError('--host: must not be empty');
      const options: ServeOptions = {
        port: parseIntFlag('--port', str('port'), SERVE_DEFAULTS.port, 0, 65_535),
        host,
        noAuth: opts.auth === false,
        rateLimitPerS: parseIntFlag('--rate-limit', str('rateLimit'), SERVE_DEFAULTS.rateLimitPerS, 0, 1_000_000),
        rateLimitBurst: parseIntFlag('--rate-burst', str('rateBurst'), SERVE_DEFAULTS.rateLimitBurst, 1, 1_000_000),
        credentialRateLimitPerMin: parseIntFlag(
          '--credential-rate-limit',
          str('credentialRateLimit'),
          SERVE_DEFAULTS.credentialRateLimitPerMin,
          0,
          1_000_000,
        ),
        authFailureRateLimitPerMin: parseIntFlag(
          '--auth-failure-limit',
          str('authFailureLimit'),
          SERVE_DEFAULTS.authFailureRateLimitPerMin,
          0,
          1_000_000,
        ),
        trustProxy: parseProxyListFlag('--trust-proxy', str('trustProxy')),
        pageSizeMax: parseIntFlag('--page-size-max', str('pageSizeMax'), SERVE_DEFAULTS.pageSizeMax, 1, 10_000),
        heartbeatMs: parseIntFlag('--heartbeat', str('heartbeat'), SERVE_DEFAULTS.heartbeatMs, 100, 3_600_000),
        sendBufferBytesMax: SERVE_DEFAULTS.sendBufferBytesMax,
        publishWindowMax: SERVE_DEFAULTS.publishWindowMax,
        confirmTimeoutMs: parseIntFlag('--confirm-timeout', str('confirmTimeout'), SERVE_DEFAULTS.confirmTimeoutMs, 100, 600_000),
      };
      const ctx = contextFor(command);
      await handleServe(ctx, options, shutdownSignal(ctx), metricsOptionsFrom(opts));
    });
  registerTokens(program);
}
