import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { ProgressBar } from '../gen/progress-bar.js';
import { publishRun, type PublishRunOptions, type RunSummary } from '../gen/publish-run.js';
import { parseFractionFlag, parseIdListFlag, parseIntFlag, parseNumberFlag, parseRangeFlag, parseWeightsFlag } from '../config/parse.js';
import { redactUrl } from '../config/redact.js';
import { checkDatabase, createDatabase } from '../db/knex.js';
import { isConnectionError } from '../db/with-transaction.js';
import { GENERATED_TYPES, MAX_AMOUNT_MINOR } from '../domain/transaction.js';
import { describeCause, ExitCode, FatalError, PublishIncompleteError, ServiceUnavailableError, UsageError } from '../errors.js';
import { contextFor, shutdownSignal, type CommandContext } from './context.js';
import { plural, toJson } from './format.js';

/** Longest `--seed`: the `runs.seed` column is VARCHAR(64). */
export const SEED_LENGTH_MAX = 64;
/** Largest account id of the message contract (a JSON integer that stays exact). */
const ACCOUNT_ID_MAX = Number.MAX_SAFE_INTEGER;

/** Publishes a run; prints a progress bar on a TTY and a summary (or JSON) at the end. */
export async function handleGen(
  ctx: CommandContext,
  options: PublishRunOptions,
  io: { json: boolean; progress: ProgressBar | null; signal?: AbortSignal },
): Promise<RunSummary> {
  const { config, log } = ctx;
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 2 });
  try {
    await checkDatabase(db, config.databaseUrl, config.databaseName);
    const connection = await connectOnce(config.amqpUrl, log, 'txsim gen');
    let summary: RunSummary | null = null;
    const bar = io.progress;
    try {
      const reconnect = () => connectOnce(config.amqpUrl, log, 'txsim gen');
      summary = await publishRun({ db, connection, topology: topologyOf(config), reconnect }, options, {
        onRecover: (unconfirmed: number) =>
          log.warn({ unconfirmed }, 'broker back; re-sending unconfirmed messages (duplicates are ignored by id)'),
        onRecordOutage: (err: unknown) =>
          log.warn(
            { err: describeCause(err) },
            "database unreachable: keeping the run's counts and retrying the save (publishing goes on)",
          ),
        onRecordRecovered: (failedSaves: number) => log.warn({ failedSaves }, 'database back: run record saved'),
        ...(io.signal ? { signal: io.signal } : {}),
        ...(bar ? { onProgress: (p) => bar.draw(p) } : {}),
      });
    } catch (err) {
      // Only the run record's final save can still fail this way: the database stayed away longer than --reconnect-timeout.
      if (isConnectionError(err)) throw new ServiceUnavailableError('database', redactUrl(config.databaseUrl), err);
      throw err;
    } finally {
      bar?.finish(summary);
      await connection.close().catch(() => {});
    }
    if (io.json) ctx.out(toJson(summary));
    else printSummary(ctx, summary);
    if (summary.interrupted) {
      throw new FatalError(
        `run ${summary.runId} interrupted: ${summary.published} of ${summary.requested} published, ${plural(summary.notPublished, 'id')} never published, ` +
          `${summary.published - summary.confirmed - summary.returned} unconfirmed; run the same command again to resume it`,
        ExitCode.interrupted,
      );
    }
    if (!summary.completed || summary.returned > 0) {
      const unconfirmed = summary.published - summary.confirmed - summary.returned;
      throw new PublishIncompleteError(
        `run ${summary.runId} incomplete: ${summary.confirmed} of ${summary.requested} confirmed, ${unconfirmed} unconfirmed, ${summary.returned} returned unroutable${summary.firstError ? ` (${summary.firstError})` : ''}`,
      );
    }
    return summary;
  } finally {
    await db.destroy();
  }
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

function printSummary(ctx: CommandContext, s: RunSummary): void {
  ctx.out(`run ${s.runId} (seed ${s.seed})${s.interrupted ? ' — interrupted' : ''}`);
  ctx.out(
    `  published ${s.published} of ${s.requested}, confirmed ${s.confirmed}, returned ${s.returned}, failed ${s.failed}, of which poison ${s.invalid}` +
      (s.notPublished > 0 ? `; ${s.notPublished} never published` : ''),
  );
  ctx.out(
    `  ${(s.elapsedMs / 1000).toFixed(2)} s, ${s.ratePerS} msg/s; confirm latency p50 ${s.confirmLatencyMs.p50} ms, p99 ${s.confirmLatencyMs.p99} ms, max ${s.confirmLatencyMs.max} ms`,
  );
  ctx.out(`  check it: txsim verify --run ${s.runId}`);
}

export function registerGen(program: Command): void {
  program
    .command('gen <count>')
    .description('generate random deposits, withdrawals and card payments and publish them with confirms')
    .option('--seed <seed>', 'seed of the stream: same seed, same ids and transactions (default: random)')
    .option('--rate <tx/s>', 'target rate; 0 = as fast as the broker confirms', '0')
    .option('--mix <weights>', 'type weights', 'deposit=40,withdrawal=30,card_payment=30')
    .option('--accounts <ids>', 'account ids or ranges, e.g. 1-100,200 (default: every customer account)')
    .option('--amount <min..max>', 'amount range in minor units (log-uniform: most are small)', '100..50000')
    .option('--hot-accounts <share>', 'share of traffic (0..1) on the hot set', '0')
    .option('--hot-set <n>', 'size of the hot set (the first N accounts)', '3')
    .option(
      '--invalid <share>',
      'share (0..1) of poison messages: bad JSON, wrong schema, unknown account, currency mismatch, negative amount',
      '0',
    )
    .option('--window <n>', 'most unconfirmed messages in flight', '1000')
    .option('--confirm-timeout <ms>', 'fail a publish whose confirm takes longer', '30000')
    .option('--reconnect-timeout <s>', 'after losing the broker, keep reconnecting and re-sending unconfirmed messages this long', '60')
    .option('--new-run', 'start a new run (new run id, new transaction ids) from a seed an earlier run used, instead of resuming it')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'no progress bar even on a TTY')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim gen 20000 --seed 7 --invalid 0.02\n  $ txsim gen 5000 --rate 500 --hot-accounts 0.5 --mix deposit=1,withdrawal=1\n  $ txsim gen 500 --seed 7 --new-run\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (count: string, opts: Record<string, string | boolean | undefined>, command: Command) => {
      const str = (key: string) => opts[key] as string | undefined;
      const [amountMin, amountMax] = parseAmountFlag(str('amount'));
      const options: PublishRunOptions = {
        count: parseIntFlag('<count>', count, 0, 1, 100_000_000),
        seed: parseSeedFlag(str('seed')),
        ratePerS: parseNumberFlag('--rate', str('rate'), 0),
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
        hotShare: parseFractionFlag('--hot-accounts', str('hotAccounts'), 0),
        hotSetSize: parseIntFlag('--hot-set', str('hotSet'), 3, 1, 1_000_000),
        invalidShare: parseFractionFlag('--invalid', str('invalid'), 0),
        windowMax: parseIntFlag('--window', str('window'), 1000, 1, 100_000),
        confirmTimeoutMs: parseIntFlag('--confirm-timeout', str('confirmTimeout'), 30_000, 100, 600_000),
        reconnectTimeoutMs: parseIntFlag('--reconnect-timeout', str('reconnectTimeout'), 60, 0, 86_400) * 1000,
        newRun: Boolean(opts.newRun),
      };
      const ctx = contextFor(command);
      const bar =
        opts.progress !== false && process.stderr.isTTY ? new ProgressBar(options.count, (text) => process.stderr.write(text)) : null;
      // Registered before the shutdown signal's own listener, so the bar's line ends before "stopping" is logged.
      if (bar) process.once('SIGINT', () => bar.interrupt());
      await handleGen(ctx, options, { json: Boolean(opts.json), progress: bar, signal: shutdownSignal(ctx) });
    });
}
