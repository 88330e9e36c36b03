import { randomBytes } from 'node:crypto';
import { Option, type Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { TOKEN_ENV } from '../config/config.js';
import type { HttpRunOptions } from '../gen/http-run.js';
import { loadShapeOf } from '../gen/load-flags.js';
import { latenessText, secondText } from '../gen/load-text.js';
import { ProgressBar } from '../gen/progress-bar.js';
import { instanceShare } from '../gen/send-schedule.js';
import {
  publishRun,
  type HttpRunFigures,
  type PublishRunHooks,
  type PublishRunOptions,
  type RunProgress,
  type RunSummary,
} from '../gen/publish-run.js';
import { parseDurationFlag, parseFractionFlag, parseIdListFlag, parseIntFlag, parseRangeFlag, parseWeightsFlag } from '../config/parse.js';
import type { FlowOptions } from '../gen/flows.js';
import { redactUrl } from '../config/redact.js';
import { checkDatabase, createDatabase, type Knex } from '../db/knex.js';
import { isConnectionError } from '../db/with-transaction.js';
import { GENERATED_TYPES, MAX_AMOUNT_MINOR } from '../domain/transaction.js';
import { describeCause, ExitCode, FatalError, PublishIncompleteError, ServiceUnavailableError, UsageError } from '../errors.js';
import type { GenCounts } from '../stats/prometheus.js';
import { startMetricsServer, type MetricsServerOptions, type RunningMetricsServer } from '../stats/metrics-server.js';
import { readPartitionCount } from '../db/partition-leases.js';
import { contextFor, shutdownSignal, type CommandContext } from './context.js';
import { METRICS_HOST_OPTION, METRICS_PORT_OPTION, metricsOptionsFrom } from './metrics-flags.js';
import { plural, toJson } from './format.js';

/** Longest `--seed`: the `runs.seed` column is VARCHAR(64). */
export const SEED_LENGTH_MAX = 64;
/** Largest account id of the message contract (a JSON integer that stays exact). */
const ACCOUNT_ID_MAX = Number.MAX_SAFE_INTEGER;

/** Publishes a run; prints a progress bar on a TTY and a summary (or JSON) at the end. */
export async function handleGen(
  ctx: CommandContext,
  options: PublishRunOptions,
  io: {
    json: boolean;
    progress: ProgressBar | null;
    signal?: AbortSignal;
    onSecond?: (line: string) => void;
    metrics?: MetricsServerOptions | null;
    via?: HttpRunOptions | null;
  },
): Promise<RunSummary> {
  const { config, log } = ctx;
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 2 });
  let readProgress: (() => GenCounts) | null = null;
  let metricsServer: RunningMetricsServer | null = null;
  try {
    if (io.metrics) {
      // prom-client is loaded only when asked for: every other run of the CLI starts without it.
      const { createMetricsRegistry, exportGenMetrics } = await import('../stats/prometheus.js');
      const registry = createMetricsRegistry('gen');
      exportGenMetrics(registry, () => readProgress?.() ?? null);
      metricsServer = await startMetricsServer(registry, io.metrics, log);
    }
    await checkDatabase(db, config.databaseUrl, config.databaseName);
    const bar = io.progress;
    let summary: RunSummary | null = null;
    const recordHooks = {
      onRecordOutage: (err: unknown) =>
        log.warn({ err: describeCause(err) }, "database unreachable: keeping the run's counts and retrying the save (publishing goes on)"),
      onRecordRecovered: (failedSaves: number) => log.warn({ failedSaves }, 'database back: run record saved'),
      ...(io.signal ? { signal: io.signal } : {}),
      ...(bar ? { onProgress: (p: RunProgress) => bar.draw(p) } : {}),
    };
    try {
      summary = io.via
        ? await (await import('../gen/http-run.js')).sendRunOverHttp(db, options, io.via, recordHooks)
        : await publishOverAmqp(ctx, db, options, {
            ...recordHooks,
            ...(io.onSecond ? { onSecond: (line) => io.onSecond?.(secondText(line)) } : {}),
            onPublisher: (progress) => (readProgress = progress),
          });
    } catch (err) {
      // Only the run record's final save can still fail this way: the database stayed away longer than --reconnect-timeout.
      if (isConnectionError(err)) throw new ServiceUnavailableError('database', redactUrl(config.databaseUrl), err);
      throw err;
    } finally {
      bar?.finish(summary);
    }
    if (io.json) ctx.out(toJson(summary));
    else printSummary(ctx, summary);
    throwUnlessComplete(summary);
    return summary;
  } finally {
    await metricsServer?.close();
    await db.destroy();
  }
}

/** The AMQP run: one connection (reconnected after a broker restart), confirms, the run record. */
async function publishOverAmqp(ctx: CommandContext, db: Knex, options: PublishRunOptions, hooks: PublishRunHooks): Promise<RunSummary> {
  const { config, log } = ctx;
  const connection = await connectOnce(config.amqpUrl, log, 'txsim gen');
  try {
    const reconnect = () => connectOnce(config.amqpUrl, log, 'txsim gen');
    // An ordered namespace (setup --partitions) must not get its process queue bound again.
    const topology = topologyOf(config, await readPartitionCount(db, config.namespace));
    return await publishRun({ db, connection, topology, reconnect }, options, {
      ...hooks,
      onRecover: (unconfirmed: number) =>
        log.warn({ unconfirmed }, 'broker back; re-sending unconfirmed messages (duplicates are ignored by id)'),
    });
  } finally {
    await connection.close().catch(() => {});
  }
}

/** The exit of a run that did not send and get confirmed everything: interrupted (130), token refused (2), incomplete (6). */
function throwUnlessComplete(summary: RunSummary): void {
  if (summary.interrupted) {
    throw new FatalError(
      `run ${summary.runId} interrupted: ${summary.published} of ${summary.requested} published, ${plural(summary.notPublished, 'id')} never published, ` +
        `${summary.published - summary.confirmed - summary.returned - summary.refused} unconfirmed; run the same command again to resume it`,
      ExitCode.interrupted,
    );
  }
  const authStatus = ['401', '403'].find((status) => (summary.http?.byStatus[status] ?? 0) > 0);
  if (authStatus) {
    throw new UsageError(
      `${TOKEN_ENV}: ${summary.http!.url} answered ${authStatus} (${summary.firstError ?? ''}); gen --via needs an admin token (txsim tokens create --admin) in ${TOKEN_ENV}`,
    );
  }
  if (!summary.completed || summary.returned > 0) {
    if (summary.http) {
      throw new PublishIncompleteError(
        `run ${summary.runId} incomplete: ${summary.confirmed} of ${summary.requested} accepted, ${summary.failed} not accepted (${statusText(summary.http)})${summary.firstError ? `, first: ${summary.firstError}` : ''}`,
      );
    }
    const unconfirmed = summary.published - summary.confirmed - summary.returned;
    throw new PublishIncompleteError(
      `run ${summary.runId} incomplete: ${summary.confirmed} of ${summary.requested} confirmed, ${unconfirmed} unconfirmed, ${summary.returned} returned unroutable${summary.firstError ? ` (${summary.firstError})` : ''}`,
    );
  }
}

/** `202 ×990, 400 ×10, no answer ×3, 429 waited out and sent again ×7`. */
function statusText(http: HttpRunFigures): string {
  const parts = Object.entries(http.byStatus).map(([status, n]) => `${status} ×${n}`);
  if (http.noAnswer > 0) parts.push(`no answer ×${http.noAnswer}`);
  if (http.throttled > 0) parts.push(`429 waited out and sent again ×${http.throttled}`);
  return parts.join(', ') || 'no answers';
}

/**
 * `--via <url>`: the base URL of a txsim server, http or https, nothing but scheme, host and port
 * (the API's paths are fixed). Credentials in the URL are refused: the token goes in --token.
 */
export function parseViaFlag(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--via: "${redactUrl(value)}" is not a URL; e.g. --via http://127.0.0.1:8080`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--via: "${redactUrl(value)}" must be an http:// or https:// URL of a txsim serve`);
  }
  if (url.username || url.password) throw new UsageError(`--via: no credentials in the URL; pass the token in ${TOKEN_ENV}`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new UsageError(`--via: "${url.origin}${url.pathname}${url.search}" must be the server's base URL only, e.g. ${url.origin}`);
  }
  return url.origin;
}

/** `--amount min..max` within the message contract: 1..10^12 minor units. */
function parseAmountFlag(value: string | undefined): [number, number] {
  const [min, max] = parseRangeFlag('--amount', value, [100, 50_000]);
  if (max > MAX_AMOUNT_MINOR) {
    throw new UsageError(`--amount: ${max} is above the largest amount of the message contract, ${MAX_AMOUNT_MINOR} (10^12 minor units)`);
  }
  return [min, max];
}

/** `--seed`: any text of 1..64 characters (it is stored with the run). */
function parseSeedFlag(value: string | undefined): string {
  if (value === undefined) return randomBytes(4).toString('hex');
  if (value.length < 1 || value.length > SEED_LENGTH_MAX) {
    throw new UsageError(`--seed: "${value.slice(0, 20)}${value.length > 20 ? '…' : ''}" must be 1 to ${SEED_LENGTH_MAX} characters`);
  }
  return value;
}

/** `--accounts`: ids within the message contract (1..2^53−1) before the list is expanded. */
function parseAccountsFlag(value: string): number[] {
  for (const digits of value.match(/\d+/g) ?? []) {
    if (!(Number(digits) <= ACCOUNT_ID_MAX)) {
      throw new UsageError(`--accounts: ${digits} is above the largest account id of the message contract, ${ACCOUNT_ID_MAX}`);
    }
  }
  return parseIdListFlag('--accounts', value);
}

/** The string flags among `keys` that were given. */
function pickDefined<K extends string>(opts: Record<string, string | boolean | undefined>, keys: readonly K[]): Partial<Record<K, string>> {
  return Object.fromEntries(keys.filter((k) => typeof opts[k] === 'string').map((k) => [k, opts[k]])) as Partial<Record<K, string>>;
}

function printSummary(ctx: CommandContext, s: RunSummary): void {
  ctx.out(`run ${s.runId} (seed ${s.seed})${s.http ? ` via ${s.http.url}` : ''}${s.interrupted ? ' — interrupted' : ''}`);
  if (s.http) {
    ctx.out(
      `  sent ${s.published} of ${s.requested}, accepted ${s.confirmed}, refused ${s.refused} (invalid, 400), failed ${s.failed}, of which poison ${s.invalid}` +
        (s.notPublished > 0 ? `; ${s.notPublished} never sent` : '') +
        `; answers ${statusText(s.http)}`,
    );
    ctx.out(
      `  ${(s.elapsedMs / 1000).toFixed(2)} s, ${s.http.requestsPerS} req/s (${s.ratePerS} accepted/s, ${s.http.concurrency} at once); request latency p50 ${s.http.requestLatencyMs.p50} ms, p99 ${s.http.requestLatencyMs.p99} ms, max ${s.http.requestLatencyMs.max} ms`,
    );
  } else {
    ctx.out(
      `  published ${s.published} of ${s.requested}, confirmed ${s.confirmed}, returned ${s.returned}, failed ${s.failed}, of which poison ${s.invalid}` +
        (s.notPublished > 0 ? `; ${s.notPublished} never published` : ''),
    );
    ctx.out(
      `  ${spanText(s)}, ${s.ratePerS} msg/s; confirm latency p50 ${s.confirmLatencyMs.p50} ms, p99 ${s.confirmLatencyMs.p99} ms, max ${s.confirmLatencyMs.max} ms`,
    );
    if (s.profile) ctx.out(`  ${latenessText(s)}`);
  }
  if (s.flows) {
    const p = s.flows.planned;
    ctx.out(
      `  card flows: ${p.authorizations} authorizations planned to end captured ${p.captured}, voided ${p.voided}, expired ${p.expired}; ` +
        `follow-ups ${p.captures} captures, ${p.voids} voids, ${p.refunds} refunds (poison ${p.poison}), published ${s.flows.published}, confirmed ${s.flows.confirmed}`,
    );
  }
  if (s.instance.count > 1)
    ctx.out(
      `  instance ${s.instance.no}/${s.instance.count} of the run: verify accounts for it once all ${s.instance.count} have reported`,
    );
  ctx.out(`  check it: txsim verify --run ${s.runId}`);
}

export function registerGen(program: Command): void {
  program
    .command('gen [count]')
    .description('generate random deposits, withdrawals and card payments and publish them with confirms')
    .option('--seed <seed>', 'seed of the stream: same seed, same ids and transactions (default: random)')
    .option('--rate <tx/s>', 'target rate; 0 = as fast as the broker confirms (default 0)')
    .option(
      '--profile <stages>',
      'load profile: 500@10s,2000@30s (k6 stages, each ramping from the previous rate), constant:500@60s, steps:500,1000@30s, spike:500,5000@10s[/2s]',
    )
    .option(
      '--late-threshold <ms>',
      'a paced message sent more than this after it was due (with --linger: after its group was) counts as late',
      '10',
    )
    .option('--drop-late <ms>', 'drop (record, never send) a paced message already more than this late, instead of sending it late')
    .option(
      '--linger <ms>',
      'paced: a message waits up to this long for the ones due after it and they go out together (fewer, larger writes); latency still counts from each due time (default 0)',
    )
    .option('--per-second', 'a line per second on stderr: due, sent, late, dropped')
    .option(
      '--instance <k/n>',
      'publish share k of n of one run (index i belongs to instance i mod n + 1); run n gens with the same seed and options',
    )
    .option('--mix <weights>', 'type weights', 'deposit=40,withdrawal=30,card_payment=30')
    .option('--accounts <ids>', 'account ids or ranges, e.g. 1-100,200 (default: every customer account)')
    .option('--amount <min..max>', 'amount range in minor units (log-uniform: most are small)', '100..50000')
    .option('--accounts-dist <dist>', 'account choice: uniform, zipf:<exponent> (rank 1 = lowest id) or hot:<share>/<n> (default uniform)')
    .option('--hot-accounts <share>', 'share of traffic (0..1) on the hot set (= --accounts-dist hot:<share>/<hot-set>)')
    .option('--hot-set <n>', 'size of the hot set (the first N accounts; default 3)')
    .option(
      '--invalid <share>',
      'share (0..1) of poison messages: bad JSON, wrong schema, unknown account, currency mismatch, negative amount; in card flows, a capture of an unknown authorization or over the hold',
      '0',
    )
    .option('--capture-share <share>', 'card flows: share (0..1) of authorizations captured after a delay (default 0)')
    .option(
      '--void-share <share>',
      'card flows: share (0..1) of authorizations voided after a delay; the rest are left to expire (default 0)',
    )
    .option('--partial-share <share>', 'card flows: share of captures done in two steps, a partial capture then a final one (default 0)')
    .option(
      '--refund-share <share>',
      'card flows: share of captured flows whose first capture is then refunded in part, by captureId (default 0)',
    )
    .option(
      '--flow-delay <min..max>',
      `card flows: delay of each follow-up after the step before it, log-uniform (default ${FLOW_DELAY_DEFAULT})`,
    )
    .option('--expire-after <duration>', 'card flows: expiresAt of authorizations left to expire, after their due time (default 30s)')
    .option('--window <n>', 'most unconfirmed messages in flight', '1000')
    .option('--confirm-timeout <ms>', 'fail a publish whose confirm takes longer', '30000')
    .option('--reconnect-timeout <s>', 'after losing the broker, keep reconnecting and re-sending unconfirmed messages this long', '60')
    .option('--via <url>', 'send through the HTTP API of a txsim serve at this base URL instead of publishing to RabbitMQ')
    .option('--concurrency <n>', 'with --via: requests in flight at once', '50')
    // Refused with a reason rather than unknown: a bearer token is read from TXSIM_TOKEN only.
    .addOption(new Option('--token <token>').hideHelp())
    .option('--request-timeout <ms>', 'with --via: a request unanswered this long counts as failed', '30000')
    .option('--new-run', 'start a new run (new run id, new transaction ids) from a seed an earlier run used, instead of resuming it')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'no progress bar even on a TTY')
    .option(...METRICS_PORT_OPTION)
    .option(...METRICS_HOST_OPTION)
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim gen 20000 --seed 7 --invalid 0.02\n  $ txsim gen 5000 --rate 500 --hot-accounts 0.5 --mix deposit=1,withdrawal=1\n  $ txsim gen 20000 --seed 7 --mix deposit=20,withdrawal=10,card_payment=10,transfer=20,card_authorization=40 --capture-share 0.7 --void-share 0.2\n  $ txsim gen 500 --seed 7 --new-run\n  $ txsim gen --profile 500@10s,2000@30s,2000@60s,0@10s --accounts-dist zipf:1.1\n  $ txsim gen 20000 --seed 7 --instance 1/2   # and --instance 2/2 elsewhere\n  $ TXSIM_TOKEN=$(txsim tokens create --admin) txsim gen 5000 --via http://127.0.0.1:8080 --concurrency 50\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (count: string | undefined, opts: Record<string, string | boolean | undefined>, command: Command) => {
      const str = (key: string) => opts[key] as string | undefined;
      const [amountMin, amountMax] = parseAmountFlag(str('amount'));
      const shape = loadShapeOf({
        ...(count !== undefined ? { count } : {}),
        ...pickDefined(opts, [
          'rate',
          'profile',
          'accountsDist',
          'hotAccounts',
          'hotSet',
          'instance',
          'lateThreshold',
          'dropLate',
          'linger',
        ]),
      });
      const options: PublishRunOptions = {
        ...shape,
        seed: parseSeedFlag(str('seed')),
        mix: parseWeightsFlag('--mix', str('mix'), GENERATED_TYPES, {
          deposit: 40,
          withdrawal: 30,
          card_payment: 30,
          transfer: 0,
          card_authorization: 0,
        }),
        accountIds: str('accounts') ? parseAccountsFlag(str('accounts')!) : null,
        amountMinMinor: amountMin,
        amountMaxMinor: amountMax,
        invalidShare: parseFractionFlag('--invalid', str('invalid'), 0),
        windowMax: parseIntFlag('--window', str('window'), 1000, 1, 100_000),
        confirmTimeoutMs: parseIntFlag('--confirm-timeout', str('confirmTimeout'), 30_000, 100, 600_000),
        reconnectTimeoutMs: parseIntFlag('--reconnect-timeout', str('reconnectTimeout'), 60, 0, 86_400) * 1000,
        newRun: Boolean(opts.newRun),
        flows: flowOptionsOf(opts),
      };
      if (options.flows && shape.lingerMs * 2 > options.flows.expireAfterMs)
        throw new UsageError(
          `--linger ${shape.lingerMs} ms is more than half of --expire-after ${options.flows.expireAfterMs} ms: an authorization left to expire could expire before it is applied`,
        );
      if (options.flows && !(options.mix.card_authorization > 0))
        throw new UsageError('--capture-share/--void-share/…: card flows follow authorizations; give --mix a card_authorization weight');
      const via = viaOptionsOf(opts, process.env[TOKEN_ENV]);
      const ctx = contextFor(command);
      // The per-second lines and the bar share stderr: with --per-second the lines replace the bar.
      const bar =
        opts.progress !== false && !opts.perSecond && process.stderr.isTTY
          ? new ProgressBar(instanceShare(options.count, shape.instance), (text) => process.stderr.write(text))
          : null;
      // Registered before the shutdown signal's own listener, so the bar's line ends before "stopping" is logged.
      if (bar) process.once('SIGINT', () => bar.interrupt());
      await handleGen(ctx, options, {
        json: Boolean(opts.json),
        progress: bar,
        signal: shutdownSignal(ctx),
        ...(opts.perSecond ? { onSecond: (line: string) => process.stderr.write(`${line}\n`) } : {}),
        metrics: metricsOptionsFrom(opts),
        via,
      });
    });
}

/** The flow flags; a run has flows when any of them is given. */
const FLOW_FLAGS = [
  ['captureShare', '--capture-share'],
  ['voidShare', '--void-share'],
  ['partialShare', '--partial-share'],
  ['refundShare', '--refund-share'],
  ['flowDelay', '--flow-delay'],
  ['expireAfter', '--expire-after'],
] as const;

/** Default delay of a follow-up after the step before it: 50 ms .. 2 s, log-uniform. */
const FLOW_DELAY_DEFAULT = '50ms..2s';
/** Default life of an authorization left to expire, after its due time. */
const EXPIRE_AFTER_DEFAULT_MS = 30_000;

/** `--capture-share` … `--expire-after` → the run's card flows; null when none of them is given. */
function flowOptionsOf(opts: Record<string, string | boolean | undefined>): FlowOptions | null {
  const str = (key: string) => opts[key] as string | undefined;
  if (!FLOW_FLAGS.some(([key]) => opts[key] !== undefined)) return null;
  const captureShare = parseFractionFlag('--capture-share', str('captureShare'), 0);
  const voidShare = parseFractionFlag('--void-share', str('voidShare'), 0);
  if (captureShare + voidShare > 1 + 1e-9)
    throw new UsageError(
      `--capture-share ${captureShare} + --void-share ${voidShare} is more than 1 (the rest of the authorizations expire)`,
    );
  const delay = (str('flowDelay') ?? FLOW_DELAY_DEFAULT).split('..');
  if (delay.length !== 2) throw new UsageError(`--flow-delay: "${str('flowDelay')}" must look like 50ms..2s`);
  const delayMinMs = parseDurationFlag('--flow-delay', delay[0], 50, 1, 600_000);
  const delayMaxMs = parseDurationFlag('--flow-delay', delay[1], 2_000, 1, 600_000);
  if (delayMaxMs < delayMinMs) throw new UsageError(`--flow-delay: ${str('flowDelay')} ends before it starts`);
  return {
    captureShare,
    voidShare,
    partialShare: parseFractionFlag('--partial-share', str('partialShare'), 0),
    refundShare: parseFractionFlag('--refund-share', str('refundShare'), 0),
    delayMinMs,
    delayMaxMs,
    expireAfterMs: parseDurationFlag('--expire-after', str('expireAfter'), EXPIRE_AFTER_DEFAULT_MS, 1_000, 7 * 24 * 3_600_000),
  };
}

/** `--via`, `--concurrency`, `--request-timeout` and the token from TXSIM_TOKEN; null without `--via`. */
function viaOptionsOf(opts: Record<string, string | boolean | undefined>, envToken: string | undefined): HttpRunOptions | null {
  const str = (key: string) => opts[key] as string | undefined;
  if (opts.token !== undefined)
    throw new UsageError(
      `--token: a token is never taken on the command line (argv shows in ps and shell history); export ${TOKEN_ENV} instead`,
    );
  const via = str('via');
  if (via === undefined) return null;
  // Over HTTP the requests are paced by --rate alone: the load-shape flags drive the AMQP publisher only.
  for (const [key, flag] of [
    ['profile', '--profile'],
    ['dropLate', '--drop-late'],
    ['linger', '--linger'],
    ['instance', '--instance'],
  ] as const) {
    if (opts[key] !== undefined) throw new UsageError(`${flag}: not with --via (over HTTP, --rate paces the run)`);
  }
  const token = (envToken ?? '').trim() || null;
  return {
    baseUrl: parseViaFlag(via),
    token,
    concurrency: parseIntFlag('--concurrency', str('concurrency'), 50, 1, 1_000),
    requestTimeoutMs: parseIntFlag('--request-timeout', str('requestTimeout'), 30_000, 100, 600_000),
  };
}

/**
 * The time the summary's rate is over: the span of the run's own messages, and beside it the whole run
 * when the card flows' follow-ups went on after them (so the line's figures divide out).
 */
function spanText(s: RunSummary): string {
  const whole = `${(s.elapsedMs / 1000).toFixed(2)} s`;
  if (s.publishSpanMs === undefined || !s.flows || s.flows.published === 0) return whole;
  return `${(s.publishSpanMs / 1000).toFixed(2)} s (${whole} with the card-flow follow-ups)`;
}
