import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { topologyOf } from '../amqp/topology.js';
import { eventToWire } from '../domain/accounting-event.js';
import { ACCOUNTING_PREFETCH_MAX, AccountingConsumer } from '../accounting/statements-consumer.js';
import { formatStatementLine, outcomeText, signedAmountText, whatHappened } from '../accounting/statement-text.js';
import { readStatement } from '../db/statements.js';
import { DEFAULT_RETRY_POLICY, type WebhookRetryPolicy } from '../accounting/webhook-delivery.js';
import { defaultOrphanAfterMs, orphanAfterMsMin } from '../accounting/webhook-forwarder.js';
import { parseIntFlag } from '../config/parse.js';
import { redactUrl } from '../config/redact.js';
import { checkDatabase, createDatabase } from '../db/knex.js';
import { formatAmount, formatMinor } from '../domain/money.js';
import { NotFoundError, UsageError } from '../errors.js';
import { createWebhookReceiver } from '../accounting/webhook-receiver.js';
import { flushLogger } from '../log.js';
import { registerAccountingRedeliver } from './accounting-redeliver.js';
import { withDatabase } from './accounts.js';
import { startMetricsServer, type MetricsServerOptions, type RunningMetricsServer } from '../stats/metrics-server.js';
import { contextFor, refuseStrayOperands, shutdownSignal, type CommandContext } from './context.js';
import { METRICS_HOST_OPTION, METRICS_PORT_OPTION, metricsOptionsFrom } from './metrics-flags.js';
import { table, toJson } from './format.js';

/** The environment variable holding the shared webhook secret (never a flag: argv is visible in `ps`). */
export const WEBHOOK_SECRET_ENV = 'TXSIM_WEBHOOK_SECRET';

/** Reads and checks the webhook secret from an environment; the error names the key, never the value. */
export function webhookSecretFrom(env: NodeJS.ProcessEnv): string {
  const secret = env[WEBHOOK_SECRET_ENV];
  if (secret === undefined || secret.length === 0)
    throw new UsageError(
      `${WEBHOOK_SECRET_ENV} is not set: webhooks are signed with it (e.g. export ${WEBHOOK_SECRET_ENV}=$(openssl rand -hex 32))`,
    );
  if (secret.length < 8)
    throw new UsageError(
      `${WEBHOOK_SECRET_ENV} is too short (${secret.length} characters; at least 8, 32 random hex characters recommended)`,
    );
  return secret;
}

/**
 * Default of `--webhook-give-up`: 20 minutes, below RabbitMQ's default consumer_timeout (30 minutes).
 * A message is acked only once its webhooks have an outcome, so a give-up longer than the broker's
 * timeout would have the broker close the channel and redeliver first; the redelivered events then
 * resume the same clock, which works, but costs a channel and a redelivery each time.
 */
export const ACCOUNTING_WEBHOOK_GIVE_UP_S = DEFAULT_RETRY_POLICY.giveUpAfterMs / 1_000;

export interface AccountingCommandOptions {
  readonly prefetchCount: number;
  readonly shutdownDeadlineMs: number;
  /** JSON lines instead of readable statement lines. */
  readonly json: boolean;
  readonly webhook: {
    readonly url: string;
    readonly secret: string;
    readonly attemptTimeoutMs: number;
    readonly policy: WebhookRetryPolicy;
    /** A pending delivery nobody has worked on for this long is taken over and sent (`--webhook-orphan-after`). */
    readonly orphanAfterMs: number;
  } | null;
  /** Serve Prometheus metrics there (`--metrics-port`); null/absent = off. */
  readonly metrics?: MetricsServerOptions | null;
}

/**
 * Runs the accounting consumer until `signal` aborts, printing one statement line per new event.
 * Resolves once everything is closed.
 */
export async function handleAccounting(ctx: CommandContext, options: AccountingCommandOptions, signal: AbortSignal): Promise<void> {
  const { config } = ctx;
  const log = ctx.log.child({ component: 'accounting' });
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 4 });
  // undici is loaded only when HTTP requests are made (here: webhooks on); the worker's process never needs it.
  const transport = options.webhook
    ? new (await import('../accounting/webhook-client.js')).WebhookClient({
        attemptTimeoutMs: options.webhook.attemptTimeoutMs,
        connectionsMax: Math.min(options.prefetchCount, 64),
      })
    : null;
  const consumer = new AccountingConsumer(
    {
      amqpUrl: config.amqpUrl,
      topology: topologyOf(config),
      prefetchCount: options.prefetchCount,
      shutdownDeadlineMs: options.shutdownDeadlineMs,
      webhook: options.webhook
        ? {
            url: options.webhook.url,
            secret: options.webhook.secret,
            policy: options.webhook.policy,
            orphanAfterMs: options.webhook.orphanAfterMs,
          }
        : null,
      clientName: `txsim accounting ${hostname()}-${process.pid}`,
      connectTimeoutMs: config.connectTimeoutMs,
    },
    { db, log, transport, onStatement: (event) => ctx.out(options.json ? JSON.stringify(eventToWire(event)) : formatStatementLine(event)) },
  );
  let metricsServer: RunningMetricsServer | null = null;
  try {
    if (options.metrics) {
      // prom-client is loaded only when asked for: every other run of the CLI starts without it.
      const { createMetricsRegistry, exportAccountingMetrics } = await import('../stats/prometheus.js');
      const registry = createMetricsRegistry('accounting');
      exportAccountingMetrics(registry, {
        metrics: consumer.metrics,
        hops: consumer.hops,
        inFlight: () => consumer.inFlightCount,
        connected: () => consumer.connected,
      });
      metricsServer = await startMetricsServer(registry, options.metrics, log);
    }
    await checkDatabase(db, config.databaseUrl, config.databaseName);
    // A SIGINT while waiting for the broker ends the wait at once (start resolves false).
    if (!signal.aborted) await consumer.start(signal);
    if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    log.info('shutting down');
  } finally {
    await consumer.close();
    await metricsServer?.close();
    await transport?.close();
    await db.destroy().catch(() => {});
    await flushLogger(log);
  }
}

/** Prints the last `limit` lines of an account's statement, in sequence order. */
export async function handleStatement(ctx: CommandContext, accountId: number, options: { limit: number; json: boolean }): Promise<void> {
  const statement = await withDatabase(ctx, (db) => readStatement(db, accountId, options.limit));
  if (statement.lineCount === 0)
    throw new NotFoundError(`account ${accountId} has no statement lines (yet): is \`txsim accounting\` running?`);
  if (options.json) return ctx.out(toJson(statement));
  const shown =
    statement.lines.length < statement.lineCount
      ? `last ${statement.lines.length} of ${statement.lineCount} lines`
      : `${statement.lineCount} lines`;
  ctx.out(`Statement of account ${accountId} (${shown})`);
  ctx.out(
    table(
      ['#', 'time', 'what', 'amount', 'balance after', 'note'],
      statement.lines.map((l) => [
        l.accountSeq,
        l.occurredAt.replace('T', ' ').replace(/Z$/, ''),
        whatHappened(l),
        signedAmountText(l),
        l.balanceMinor === null ? '' : formatMinor(l.balanceMinor, l.currency ?? undefined),
        l.outcome === 'rejected' ? outcomeText(l) : '',
      ]),
    ),
  );
  if (statement.missingSeqs.length > 0) ctx.out(`not received yet: #${statement.missingSeqs.join(', #')}`);
}

export interface ReceiveOptions {
  readonly host: string;
  readonly port: number;
  readonly json: boolean;
  readonly secret: string;
}

/**
 * The demo webhook receiver: verifies each POST's signature, drops repeats by idempotency key, and
 * prints what arrives until `signal` aborts. Prints `listening on <url>` once it accepts requests.
 */
export async function handleReceive(ctx: CommandContext, options: ReceiveOptions, signal: AbortSignal): Promise<void> {
  const log = ctx.log.child({ component: 'webhook-receiver' });
  const server = createWebhookReceiver({
    secret: options.secret,
    onAccepted: (r) => {
      if (options.json)
        return ctx.out(JSON.stringify({ accepted: true, eventId: r.eventId, duplicate: r.duplicate, attempt: r.attempt, body: r.body }));
      const body = r.body as Record<string, unknown>;
      // A field of a body that may be anything: its text when it is a string or number, else the fallback.
      const field = (key: string, fallback: string) => {
        const v = body[key];
        return typeof v === 'string' || typeof v === 'number' ? String(v) : fallback;
      };
      // Minor units in the body, shown in the currency's own decimals (500 JPY, 2.50 EUR, 1.234 KWD).
      const minor = field('amountMinor', '');
      const currency = field('currency', '');
      const amount = /^\d{1,19}$/.test(minor) ? formatAmount(BigInt(minor), currency || undefined) : minor;
      const what =
        `${field('outcome', '?')} ${field('type', '')} ${amount} ${currency} account ${field('accountId', '-')} #${field('accountSeq', '-')}`.replace(
          /\s+/g,
          ' ',
        );
      ctx.out(
        `${r.duplicate ? 'repeat  ' : 'received'} ${r.eventId}  ${what}${r.attempt && r.attempt > 1 ? `  (attempt ${r.attempt})` : ''}`,
      );
    },
    onRefused: (r) => {
      if (options.json) return ctx.out(JSON.stringify({ accepted: false, status: r.status, reason: r.reason, eventId: r.eventId }));
      ctx.out(`REFUSED  ${r.eventId ?? '-'}  ${r.status} ${r.reason}`);
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new UsageError(`--port: ${options.port} is already in use`) : err),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  ctx.out(
    options.json
      ? JSON.stringify({ listening: `http://${options.host}:${address.port}/` })
      : `listening on http://${options.host}:${address.port}/`,
  );
  try {
    if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await flushLogger(log);
  }
}

/** Parses `--webhook`: an http(s) URL; the error shows it without credentials. */
function parseWebhookUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--webhook: "${redactUrl(value)}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--webhook: "${redactUrl(value)}" must start with http:// or https://`);
  return value;
}

/** The --webhook flags, checked: the URL, the secret from the environment, the retry policy and the orphan window. */
function parseWebhookFlags(url: string, str: (key: string) => string | undefined): NonNullable<AccountingCommandOptions['webhook']> {
  const checkedUrl = parseWebhookUrl(url);
  const secret = webhookSecretFrom(process.env);
  const attemptTimeoutMs = parseIntFlag('--webhook-timeout', str('webhookTimeout'), 5_000, 100, 120_000);
  const policy: WebhookRetryPolicy = {
    ...DEFAULT_RETRY_POLICY,
    backoffMaxMs: parseIntFlag('--webhook-backoff-max', str('webhookBackoffMax'), DEFAULT_RETRY_POLICY.backoffMaxMs, 10, 3_600_000),
    giveUpAfterMs: parseIntFlag('--webhook-give-up', str('webhookGiveUp'), ACCOUNTING_WEBHOOK_GIVE_UP_S, 0, 7 * 86_400) * 1000,
  };
  // Shorter than two gaps between attempts, a delivery another consumer is still retrying would look
  // abandoned and be sent twice at once.
  const minS = Math.ceil(orphanAfterMsMin(policy, attemptTimeoutMs) / 1_000);
  const orphanAfterS = parseIntFlag(
    '--webhook-orphan-after',
    str('webhookOrphanAfter'),
    Math.ceil(defaultOrphanAfterMs(policy, attemptTimeoutMs) / 1_000),
    1,
    7 * 86_400,
  );
  if (orphanAfterS < minS)
    throw new UsageError(
      `--webhook-orphan-after: ${orphanAfterS} s is too short for these retries; at least ${minS} s, twice (--webhook-backoff-max + --webhook-timeout)`,
    );
  return { url: checkedUrl, secret, attemptTimeoutMs, policy, orphanAfterMs: orphanAfterS * 1_000 };
}

export function registerAccounting(program: Command): void {
  const accounting = program
    .command('accounting')
    .description('the user-facing accounting system: statements from accounting events, optional signed webhooks')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim accounting\n  $ txsim accounting statement 42\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    );

  accounting
    .command('consume', { isDefault: true })
    // An operand here is a mistyped subcommand (`accounting statment 7`): refused by name below.
    .allowExcessArguments(true)
    .description(
      'consume accounting events: keep per-account statements, print each new line, forward to --webhook (the default sub-command)',
    )
    .option('--webhook <url>', `also POST each event there, signed with HMAC-SHA256 under $${WEBHOOK_SECRET_ENV}`)
    .option('--prefetch <n>', 'events in progress at once (DB transactions and webhook POSTs)', '50')
    .option('--webhook-timeout <ms>', 'longest one webhook attempt may take', '5000')
    .option(
      '--webhook-backoff-max <ms>',
      'cap of the exponential delay between webhook attempts',
      String(DEFAULT_RETRY_POLICY.backoffMaxMs),
    )
    .option(
      '--webhook-give-up <s>',
      "record a still-failing webhook as failed this long after the event was first stored (keep it below RabbitMQ's consumer_timeout, 30 min by default)",
      String(ACCOUNTING_WEBHOOK_GIVE_UP_S),
    )
    .option(
      '--webhook-orphan-after <s>',
      'send pending deliveries nobody has tried for this long (left by a consumer that crashed); at least twice (--webhook-backoff-max + --webhook-timeout); default 60 or that',
    )
    .option('--shutdown-deadline <ms>', 'how long shutdown waits for events in progress', '10000')
    .option(
      '--connect-timeout <s>',
      'how long to wait for RabbitMQ at start before giving up with exit 3 (env TXSIM_CONNECT_TIMEOUT; default 15)',
    )
    .option('--json', 'print each new statement line as a JSON event')
    .option(...METRICS_PORT_OPTION)
    .option(...METRICS_HOST_OPTION)
    .addHelpText(
      'after',
      `
Acknowledges an event only after its statement line (and, with --webhook, the webhook outcome) is
recorded. A 2xx delivers; 5xx, 408, 429, timeouts and refused connections are retried with capped
exponential backoff; any other status is recorded as failed and not retried. The give-up clock
starts when an event is first stored and survives redeliveries. With --webhook it also sends the
deliveries an earlier consumer left pending (it crashed, and a run without --webhook acked the
events again): any not tried for --webhook-orphan-after, oldest first, each taken over by one consumer.

Example:
  $ txsim accounting
  $ ${WEBHOOK_SECRET_ENV}=s3cret-s3cret txsim accounting --webhook http://127.0.0.1:8080/hooks

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(async (opts: Record<string, string | boolean | undefined>, command: Command) => {
      refuseStrayOperands(accounting, command);
      const str = (key: string) => opts[key] as string | undefined;
      const url = str('webhook');
      const options: AccountingCommandOptions = {
        prefetchCount: parseIntFlag('--prefetch', str('prefetch'), 50, 1, ACCOUNTING_PREFETCH_MAX),
        shutdownDeadlineMs: parseIntFlag('--shutdown-deadline', str('shutdownDeadline'), 10_000, 0, 600_000),
        json: Boolean(opts.json),
        metrics: metricsOptionsFrom(opts),
        webhook: url ? parseWebhookFlags(url, str) : null,
      };
      const ctx = contextFor(command);
      await handleAccounting(ctx, options, shutdownSignal(ctx));
    });

  accounting
    .command('statement <accountId>')
    .description("print an account's statement: its lines in sequence order with the balance after each")
    .option('--limit <n>', 'show the last n lines', '50')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      '\nExit code 5 when the account has no statement lines.\n\nExample:\n  $ txsim accounting statement 42 --limit 20\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (accountId: string, opts: { limit: string; json?: boolean }, command: Command) => {
      await handleStatement(contextFor(command), parseIntFlag('<accountId>', accountId, 0, 1), {
        limit: parseIntFlag('--limit', opts.limit, 50, 1, 100_000),
        json: Boolean(opts.json),
      });
    });

  registerAccountingRedeliver(accounting);

  accounting
    .command('receive')
    .description(
      `a tiny webhook receiver for demos and tests: verifies the signature (secret from $${WEBHOOK_SECRET_ENV}), drops repeats, prints what arrives`,
    )
    .requiredOption('--port <n>', 'port to listen on (0 = any free port)')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--json', 'one JSON object per request')
    .addHelpText(
      'after',
      `\nExample:\n  $ ${WEBHOOK_SECRET_ENV}=s3cret-s3cret txsim accounting receive --port 8080

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(async (opts: { port: string; host: string; json?: boolean }, command: Command) => {
      const ctx = contextFor(command);
      const options: ReceiveOptions = {
        port: parseIntFlag('--port', opts.port, 0, 0, 65_535),
        host: opts.host,
        json: Boolean(opts.json),
        secret: webhookSecretFrom(process.env),
      };
      await handleReceive(ctx, options, shutdownSignal(ctx));
    });
}
