import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { publishRun, type PublishRunOptions, type RunProgress, type RunSummary } from '../gen/publish-run.js';
import { parseFractionFlag, parseIdListFlag, parseIntFlag, parseNumberFlag, parseRangeFlag, parseWeightsFlag } from '../config/parse.js';
import { checkDatabase, createDatabase } from '../db/knex.js';
import { TRANSACTION_TYPES } from '../domain/transaction.js';
import { PublishIncompleteError } from '../errors.js';
import { contextFor, shutdownSignal, type CommandContext } from './context.js';
import { toJson } from './format.js';

/** Publishes a run; prints a progress bar on a TTY and a summary (or JSON) at the end. */
export async function handleGen(ctx: CommandContext, options: PublishRunOptions, io: { json: boolean; progress: boolean; signal?: AbortSignal }): Promise<RunSummary> {
  const { config, log } = ctx;
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 2 });
  try {
    await checkDatabase(db, config.databaseUrl, config.databaseName);
    const connection = await connectOnce(config.amqpUrl, log, 'txsim gen');
    let summary: RunSummary;
    try {
      const reconnect = () => connectOnce(config.amqpUrl, log, 'txsim gen');
      summary = await publishRun({ db, connection, topology: topologyOf(config), reconnect }, options, {
        onRecover: (unconfirmed: number) => log.warn({ unconfirmed }, 'broker back; re-sending unconfirmed messages (duplicates are ignored by id)'),
        ...(io.signal ? { signal: io.signal } : {}),
        ...(io.progress ? { onProgress: (p: RunProgress) => drawProgress(p, options.count) } : {}),
      });
    } finally {
      if (io.progress) process.stderr.write('\n');
      await connection.close().catch(() => {});
    }
    if (io.json) ctx.out(toJson(summary));
    else printSummary(ctx, summary);
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

function drawProgress(p: RunProgress, total: number): void {
  const width = 30;
  const done = Math.min(width, Math.round((p.confirmed / Math.max(1, total)) * width));
  process.stderr.write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${p.confirmed}/${total} confirmed, ${p.published - p.confirmed - p.returned - p.failed} in flight`);
}

function printSummary(ctx: CommandContext, s: RunSummary): void {
  ctx.out(`run ${s.runId} (seed ${s.seed})`);
  ctx.out(`  published ${s.published}, confirmed ${s.confirmed}, returned ${s.returned}, failed ${s.failed}, of which poison ${s.invalid}`);
  ctx.out(`  ${(s.elapsedMs / 1000).toFixed(2)} s, ${s.ratePerS} msg/s; confirm latency p50 ${s.confirmLatencyMs.p50} ms, p99 ${s.confirmLatencyMs.p99} ms, max ${s.confirmLatencyMs.max} ms`);
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
    .option('--invalid <share>', 'share (0..1) of poison messages: bad JSON, wrong schema, unknown account, currency mismatch, negative amount', '0')
    .option('--window <n>', 'most unconfirmed messages in flight', '1000')
    .option('--confirm-timeout <ms>', 'fail a publish whose confirm takes longer', '30000')
    .option('--reconnect-timeout <s>', 'after losing the broker, keep reconnecting and re-sending unconfirmed messages this long', '60')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'no progress bar even on a TTY')
    .addHelpText('after', '\nExample:\n  $ txsim gen 20000 --seed 7 --invalid 0.02\n  $ txsim gen 5000 --rate 500 --hot-accounts 0.5 --mix deposit=1,withdrawal=1')
    .action(async (count: string, opts: Record<string, string | boolean | undefined>, command: Command) => {
      const str = (key: string) => opts[key] as string | undefined;
      const [amountMin, amountMax] = parseRangeFlag('--amount', str('amount'), [100, 50_000]);
      const options: PublishRunOptions = {
        count: parseIntFlag('<count>', count, 0, 1, 100_000_000),
        seed: str('seed') ?? randomBytes(4).toString('hex'),
        ratePerS: parseNumberFlag('--rate', str('rate'), 0),
        mix: parseWeightsFlag('--mix', str('mix'), TRANSACTION_TYPES, { deposit: 40, withdrawal: 30, card_payment: 30 }),
        accountIds: str('accounts') ? parseIdListFlag('--accounts', str('accounts')!) : null,
        amountMinMinor: amountMin,
        amountMaxMinor: amountMax,
        hotShare: parseFractionFlag('--hot-accounts', str('hotAccounts'), 0),
        hotSetSize: parseIntFlag('--hot-set', str('hotSet'), 3, 1, 1_000_000),
        invalidShare: parseFractionFlag('--invalid', str('invalid'), 0),
        windowMax: parseIntFlag('--window', str('window'), 1000, 1, 100_000),
        confirmTimeoutMs: parseIntFlag('--confirm-timeout', str('confirmTimeout'), 30_000, 100, 600_000),
        reconnectTimeoutMs: parseIntFlag('--reconnect-timeout', str('reconnectTimeout'), 60, 0, 86_400) * 1000,
      };
      const ctx = contextFor(command);
      await handleGen(ctx, options, { json: Boolean(opts.json), progress: opts.progress !== false && Boolean(process.stderr.isTTY), signal: shutdownSignal(ctx) });
    });
}
