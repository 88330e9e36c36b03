import { randomBytes } from 'node:crypto';
import { accessSync, constants, statSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import type { BenchOptions, BenchReport, SecondSample } from '../bench/bench.js';
import { BENCH_FULL_MIX, BENCH_V1_MIX, type BenchMix } from '../bench/mixes.js';
import type { SecondHopLatency } from '../bench/hop-latency.js';
import { readBenchReports, renderBenchHtml, type NamedBenchReport } from '../bench/html-report.js';
import type { Config } from '../config/config.js';
import { parseFractionFlag, parseIntFlag, parseNumberFlag, parseWeightsFlag } from '../config/parse.js';
import { GENERATED_TYPES } from '../domain/transaction.js';
import { parseLingerFlag } from '../gen/load-flags.js';
import { checkDatabase, createDatabase } from '../db/knex.js';
import { UsageError, VerificationFailedError } from '../errors.js';
import { registerBenchCompare } from './bench-compare.js';
import { WORKER_NODE_OPTIONS } from '../worker/node-options.js';
import { RELAY_EVENTS_OPTION, relayEventsPerMessageFrom } from './relay-flags.js';
import { collect, contextFor, refuseStrayOperands, type CommandContext } from './context.js';
import { toJson } from './format.js';

/**
 * The bench namespace and database are wiped at the start of every run, so they are never the
 * user's: `<namespace>_bench`, and the database is named after it whatever DATABASE_URL's path says.
 */
export function benchConfig(config: Config): Config {
  const namespace = `${config.namespace}_bench`.slice(0, 41);
  const url = new URL(config.databaseUrl);
  url.pathname = '';
  return Object.freeze({ ...config, namespace, databaseName: namespace, databaseUrl: url.toString() });
}

export async function handleBench(
  ctx: CommandContext,
  options: BenchOptions,
  format: 'table' | 'json' | 'csv',
  output: { readonly htmlPath?: string } = {},
): Promise<BenchReport> {
  const config = benchConfig(ctx.config);
  const probe = createDatabase({ databaseUrl: config.databaseUrl, databaseName: 'mysql', poolMax: 1 });
  try {
    await checkDatabase(probe, config.databaseUrl, 'mysql');
  } finally {
    await probe.destroy();
  }
  const connection = await connectOnce(config.amqpUrl, ctx.log, 'txsim bench');
  let report: BenchReport;
  try {
    if (format === 'csv')
      ctx.out(`t,sent,confirmed,applied,rejected,worker_cpu_pct,worker_rss_mb,${CSV_HOP_COLUMNS.join(',')},disk_sync_max_ms`);
    else if (format === 'table')
      ctx.out(
        `bench ${config.namespace}${options.via === 'http' ? ` via http (${options.httpConcurrency} at once)` : ''}: ${options.workers} workers, batch ${options.batchSizeMax} × ${options.transactionsMax} in flight, prefetch ${options.prefetchCount}, ${options.accounts} accounts, hot ${options.hotShare}, rate ${options.ratePerS || 'max'}${options.lingerMs ? ` (linger ${options.lingerMs} ms)` : ''}, count ${options.count}, mix ${mixText(options.mix)}, relay ${options.relay ? `${options.relayProcess ? 'in its own process' : 'on'}, ${options.relayEventsPerMessageMax} events a message` : 'off'}`,
      );
    // Loaded here, not at the top: the bench's machinery (gen, verify, the ceiling) is only needed by bench.
    const { runBench } = await import('../bench/bench.js');
    report = await runBench({ config, connection, topology: topologyOf(config), log: ctx.log }, options, (s) =>
      printSecond(ctx, s, format),
    );
  } finally {
    await connection.close().catch(() => {});
  }
  if (format === 'json') ctx.out(toJson(report));
  else if (format === 'table') printReport(ctx, report);
  // Written before the checks below throw: the charts of a failed run are what explains it.
  if (output.htmlPath) writeHtmlReport(ctx, output.htmlPath, [{ name: report.runId, report }]);
  if (!report.drained) {
    throw new VerificationFailedError(
      `bench ${report.runId}: not drained within --drain-timeout ${options.drainTimeoutS} s (${report.outcomes} of ${report.confirmed} confirmed messages have an outcome); the figures would be wrong`,
    );
  }
  if (!report.verifyOk || report.lost > 0 || report.duplicated > 0) {
    throw new VerificationFailedError(`bench ${report.runId}: verify failed (${report.lost} lost, ${report.duplicated} duplicated)`);
  }
  return report;
}

/** `--worker-node-option` values: each one flag of Node's own (`--name` or `--name=value`). */
export function workerNodeOptionsFrom(values: readonly string[] | undefined): string[] {
  for (const value of values ?? [])
    if (!/^--[a-z][a-z0-9-]*(=\S+)?$/.test(value))
      throw new UsageError(`--worker-node-option: "${value}" is not a Node.js flag (--name or --name=value)`);
  return [...(values ?? [])];
}

/** `txsim bench report <json…> --html <file>`: charts from saved `bench --json` reports. */
export function handleBenchReport(ctx: CommandContext, paths: readonly string[], htmlPath: string): void {
  let runs: NamedBenchReport[];
  try {
    runs = readBenchReports(paths);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  writeHtmlReport(ctx, htmlPath, runs);
}

function writeHtmlReport(ctx: CommandContext, htmlPath: string, runs: readonly NamedBenchReport[]): void {
  writeFileSync(htmlPath, renderBenchHtml(runs));
  ctx.log.info({ file: htmlPath, runs: runs.length }, 'bench html report written');
  if (process.stderr.isTTY) process.stderr.write(`bench: html report in ${htmlPath}\n`);
}

/** The hops of the per-second lines, in flow order, with their short names. */
const SECOND_HOPS = [
  ['queue_wait', 'queue'],
  ['processing', 'proc'],
  ['commit', 'commit'],
  ['relay', 'relay'],
  ['end_to_end', 'e2e'],
] as const;
const CSV_HOP_COLUMNS = SECOND_HOPS.flatMap(([hop]) => [`${hop}_p50_ms`, `${hop}_p99_ms`]);

/** `queue 3/9 proc 5/6 commit 12/20 relay 40/90 e2e 30/61 ms` (p50/p99), or '' when no hop had a value. */
export function secondHopsText(hops: SecondHopLatency | undefined): string {
  if (!hops) return '';
  const parts = SECOND_HOPS.flatMap(([hop, name]) => {
    const h = hops[hop];
    return h ? [`${name} ${h.p50}/${h.p99}`] : [];
  });
  return parts.length ? `${parts.join(' ')} ms` : '';
}

function mixText(mix: BenchMix): string {
  return Object.entries(mix)
    .filter(([, w]) => w > 0)
    .map(([type, w]) => `${type}=${w}`)
    .join(',');
}

function printSecond(ctx: CommandContext, s: SecondSample, format: 'table' | 'json' | 'csv'): void {
  if (format === 'csv') {
    const hopCells = SECOND_HOPS.flatMap(([hop]) => [s.hopsMs?.[hop]?.p50 ?? '', s.hopsMs?.[hop]?.p99 ?? '']);
    ctx.out(
      `${s.t},${s.sent},${s.confirmed},${s.applied},${s.rejected},${s.workerCpuPct},${s.workerRssMb},${hopCells.join(',')},${s.diskSyncMaxMs ?? ''}`,
    );
  } else if (format === 'table') {
    const hops = secondHopsText(s.hopsMs);
    ctx.out(
      `t=${s.t.toFixed(1).padStart(5)}s  sent ${String(s.sent).padStart(6)}/s  confirmed ${String(s.confirmed).padStart(6)}/s  applied ${String(s.applied).padStart(6)}/s  rejected ${String(s.rejected).padStart(5)}/s  workers cpu ${s.workerCpuPct}% rss ${s.workerRssMb} MB${hops ? `  p50/p99 ${hops}` : ''}${s.diskSyncMaxMs === undefined ? '' : `  disk max ${s.diskSyncMaxMs} ms`}`,
    );
  }
}

/**
 * `--mix`: `full` (the default: transfers and card flows beside the v1 types), `v1` (deposits,
 * withdrawals and card payments: the headline figures' mix), or gen's syntax `deposit=40,transfer=20,…`.
 */
export function parseBenchMix(value: string | undefined): BenchMix {
  if (value === 'v1') return { ...BENCH_V1_MIX };
  if (value === undefined || value === 'full') return { ...BENCH_FULL_MIX };
  return parseWeightsFlag('--mix', value, GENERATED_TYPES, BENCH_V1_MIX);
}

function printReport(ctx: CommandContext, r: BenchReport): void {
  const p = (x: { p50: number; p90: number; p99: number; p999: number; max: number }) =>
    `p50 ${x.p50}  p90 ${x.p90}  p99 ${x.p99}  p99.9 ${x.p999}  max ${x.max} ms`;
  ctx.out('');
  ctx.out(
    `run ${r.runId}: published ${r.published}, confirmed ${r.confirmed}, outcomes ${r.outcomes} (applied ${r.applied}, rejected ${r.rejected}) in ${r.elapsedS.toFixed(1)} s`,
  );
  ctx.out(`publish rate        ${r.publishRatePerS} msg/s`);
  ctx.out(`end-to-end rate     ${r.endToEndRatePerS} tx/s (first created → last committed)`);
  if (r.ceilingRun && r.efficiency !== null)
    ctx.out(
      `ceiling             ${r.ceilingRun.txPerS} tx/s (same messages and rows, no txsim logic: ${r.ceilingRun.consumers} consumers, ${r.ceilingRun.messageBytesAvg} B/msg, publish ${r.ceilingRun.publishRatePerS} msg/s); efficiency ${(r.efficiency * 100).toFixed(1)} %`,
    );
  if (r.ceilingRun?.cpuUsPerTx) {
    const c = r.ceilingRun.cpuUsPerTx;
    const parts = Object.entries(c.components).map(([component, us]) => `${component} ${us ?? '–'}`);
    ctx.out(
      `ceiling cpu per tx  ${parts.join(', ')}; total ${c.total ?? '–'} µs${r.ceilingRun.idleShare === null ? '' : `; machine idle ${(r.ceilingRun.idleShare * 100).toFixed(1)} %`}`,
    );
  }
  if (r.http) {
    const statuses = Object.entries(r.http.byStatus)
      .map(([status, n]) => `${status} ×${n}`)
      .join(', ');
    ctx.out(
      `http requests       ${r.http.requestsPerS} req/s, ${r.http.concurrency} at once via ${r.http.url} (${statuses}${r.http.noAnswer ? `, no answer ×${r.http.noAnswer}` : ''})`,
    );
    ctx.out(`request latency     ${p(r.http.requestLatencyMs)} (intended send → 202, after the broker's confirm)`);
  } else ctx.out(`confirm latency     ${p(r.confirmLatencyMs)}`);
  ctx.out(`created → committed ${p(r.endToEndLatencyMs)}`);
  // Where the time went, hop by hop, as the workers measured it.
  for (const [hop, l] of Object.entries(r.hopLatencyMs?.hops ?? {})) ctx.out(`  hop ${hop.padEnd(15)} ${p(l)}`);
  if (r.hopLatencyMs && !r.hopLatencyMs.exact)
    ctx.out(
      `  (hops: final snapshots of ${r.hopLatencyMs.workersFinal} of ${r.hopLatencyMs.workersReporting} workers; the others' percentiles are upper bounds)`,
    );
  ctx.out(
    `workers             cpu avg ${r.workerCpuPctAvg}% (of one core, all workers), rss (all workers) first ${r.workerRssMbFirst} MB, last ${r.workerRssMbLast} MB, max ${r.workerRssMbMax} MB; largest one worker first ${r.workerRssMbPerWorker.first} MB, last ${r.workerRssMbPerWorker.last} MB, max ${r.workerRssMbPerWorker.max} MB`,
  );
  ctx.out(
    `cpu (% of one core) workers ${r.cpuPctAvg.workers}, broker ${r.cpuPctAvg.broker}, database ${r.cpuPctAvg.database}, gen ${r.cpuPctAvg.gen}${r.http ? `, serve ${r.cpuPctAvg.serve}` : ''}`,
  );
  const perTx = Object.entries(r.cpuUsPerAppliedTx.components)
    .map(
      ([component, us]) =>
        `${component} ${us === null ? (component === 'relay' ? (r.options.relay ? '(in workers)' : '(off)') : '–') : us}`,
    )
    .join(', ');
  ctx.out(
    `cpu per applied tx  ${perTx}; total ${r.cpuUsPerAppliedTx.total ?? '–'} µs${r.idleShare === null ? '' : `; machine idle ${(r.idleShare * 100).toFixed(1)} % of the run`}`,
  );
  if (r.relayDrained === false) ctx.out('relay               NOT drained before the workers stopped: the relay hop misses the last events');
  if (r.diskSync)
    ctx.out(
      `disk fdatasync      p50 ${r.diskSync.p50Ms}  p99 ${r.diskSync.p99Ms}  max ${r.diskSync.maxMs} ms (4 KiB every ${r.diskSync.intervalMs} ms in ${r.diskSync.dir}, ${r.diskSync.samples} probes)`,
    );
  if (!r.drained) ctx.out(`drained             NO: ${r.outcomes} of ${r.confirmed} confirmed messages have an outcome`);
  ctx.out(`verify              ${r.verifyOk ? 'OK' : 'FAILED'} (lost ${r.lost}, duplicated ${r.duplicated})`);
}

/** `--disk-probe <dir>|off`: an existing directory this process can write its probe file in, or off (null). */
export function parseDiskProbeFlag(value: string | undefined): string | null {
  if (value === 'off') return null;
  const dir = value ?? '.';
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new UsageError(
      `--disk-probe: "${dir}" is not a writable directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give one on the services' disk, or off`,
    );
  }
  return dir;
}

/** `--via amqp|http`. */
function parseTransportFlag(value: string | undefined): BenchOptions['via'] {
  if (value === undefined || value === 'amqp' || value === 'http') return value ?? 'amqp';
  throw new UsageError(`--via: "${value}" must be amqp or http`);
}

export function registerBench(program: Command): void {
  const bench = program.command('bench');
  bench
    // An operand here is a mistyped subcommand (`bench compre a b`): refused by name in the action.
    .allowExcessArguments(true)
    .description('measure throughput and latency end to end: reset a bench namespace, start W workers, publish, drain, verify')
    .option('--workers <n>', 'worker processes', '3')
    .option('--batch-size <n>', 'messages per DB transaction (1 = one commit per message)', '100')
    .option('--transactions <n>', 'batches each worker applies at once', '2')
    .option('--batch-wait <ms>', 'how long a partial batch waits for more messages', '5')
    .option('--prefetch <n>', 'prefetch per worker', '300')
    .option('--accounts <n>', 'customer accounts', '10000')
    .option('--hot-accounts <share>', 'share of traffic on 3 hot accounts', '0')
    .option('--rate <tx/s>', 'paced publishing; 0 = flat out', '0')
    .option('--linger <ms>', "paced: gen's --linger, messages due within this go out together (default 0)")
    .option('--count <n>', 'transactions to publish (default 100000, or rate × duration when both are given)')
    .option('--duration <s>', 'stop publishing after this long (0 = until --count)', '0')
    .option('--invalid <share>', 'share of poison messages', '0')
    .option('--drain-timeout <s>', 'most time to wait for the workers to finish', '300')
    .option('--seed <seed>', 'seed (default: random)')
    .option('--via <transport>', 'amqp: publish as gen does; http: post through a txsim serve the bench starts (gen --via)', 'amqp')
    .option('--concurrency <n>', 'with --via http: requests in flight at once', '50')
    .option(
      '--mix <weights>',
      'type weights: full (the default: deposit=30,withdrawal=20,card_payment=20,transfer=20,card_authorization=10, authorizations as card flows), v1 (deposit=40,withdrawal=30,card_payment=30) or as gen --mix',
      'full',
    )
    .option(
      '--ceiling',
      "after the run, measure the machine's ceiling: the same messages and rows through the same broker and database with no txsim logic; reports ceiling and efficiency",
    )
    .option(
      '--relay-process',
      "run the relay in one process of its own (workers --no-relay), so its CPU is measured apart from the workers'",
    )
    .option('--no-relay', 'workers run without the outbox relay (default: relay on, as in a real deployment; its hop is measured)')
    .option(...RELAY_EVENTS_OPTION)
    .option(
      '--disk-probe <dir>',
      "fdatasync 4 KiB in this directory every 50 ms during the run and report its latency (give one on the services' disk; off: none)",
      '.',
    )
    .option('--cpu-prof', 'run workers under node --cpu-prof (profiles in ./.txsim/profiles)')
    .option(
      '--worker-node-option <flag>',
      `a Node.js or V8 flag for every worker process, after bench's own (${WORKER_NODE_OPTIONS.join(' ')}); repeatable, e.g. --worker-node-option=--max-old-space-size=4096`,
      collect,
    )
    .option('--json', 'print the report as JSON')
    .option('--csv', 'print per-second lines as CSV')
    .option('--html <file>', 'also write a self-contained HTML report with charts')
    .addHelpText(
      'after',
      '\nThe namespace <namespace>_bench and its database are wiped first.\n\nExample:\n  $ txsim bench --workers 3 --count 100000\n  $ txsim bench --batch-size 1 --count 5000\n  $ txsim bench --rate 2000 --duration 30\n  $ txsim bench --via http --concurrency 50 --count 20000\n  $ txsim bench --mix v1 --count 20000\n  $ txsim bench --ceiling --count 50000\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (opts: Record<string, string | boolean | undefined>, command: Command) => {
      refuseStrayOperands(bench, command);
      const str = (k: string) => opts[k] as string | undefined;
      if (opts.json && opts.csv) throw new UsageError('--json and --csv: choose one');
      if (opts.relayProcess && opts.relay === false) throw new UsageError('--relay-process and --no-relay: choose one');
      const ratePerS = parseNumberFlag('--rate', str('rate'), 0);
      const durationS = parseIntFlag('--duration', str('duration'), 0, 0, 86_400);
      const lingerMs = parseLingerFlag(str('linger'), ratePerS > 0, '--rate');
      if (str('linger') !== undefined && str('via') === 'http')
        throw new UsageError('--linger: not with --via http (over HTTP, --rate paces the run)');
      const options: BenchOptions = {
        workers: parseIntFlag('--workers', str('workers'), 3, 1, 32),
        batchSizeMax: parseIntFlag('--batch-size', str('batchSize'), 100, 1, 5_000),
        transactionsMax: parseIntFlag('--transactions', str('transactions'), 2, 1, 16),
        batchWaitMs: parseIntFlag('--batch-wait', str('batchWait'), 5, 0, 10_000),
        prefetchCount: parseIntFlag('--prefetch', str('prefetch'), 300, 1, 65_535),
        accounts: parseIntFlag('--accounts', str('accounts'), 10_000, 1, 1_000_000),
        hotShare: parseFractionFlag('--hot-accounts', str('hotAccounts'), 0),
        ratePerS,
        ...(lingerMs > 0 ? { lingerMs } : {}),
        // With a duration and a rate, the count follows from them unless given.
        count: parseIntFlag(
          '--count',
          str('count') ?? (durationS > 0 && ratePerS > 0 ? String(Math.ceil(durationS * ratePerS)) : undefined),
          100_000,
          1,
          100_000_000,
        ),
        durationS,
        invalidShare: parseFractionFlag('--invalid', str('invalid'), 0),
        drainTimeoutS: parseIntFlag('--drain-timeout', str('drainTimeout'), 300, 1, 86_400),
        workerNodeArgs: [
          ...WORKER_NODE_OPTIONS,
          ...(opts.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', '.txsim/profiles'] : []),
          ...workerNodeOptionsFrom(opts.workerNodeOption as unknown as string[] | undefined),
        ],
        seed: str('seed') ?? `bench-${randomBytes(4).toString('hex')}`,
        via: parseTransportFlag(str('via')),
        httpConcurrency: parseIntFlag('--concurrency', str('concurrency'), 50, 1, 1_000),
        mix: parseBenchMix(str('mix')),
        relay: opts.relay !== false,
        relayProcess: Boolean(opts.relayProcess),
        relayEventsPerMessageMax: relayEventsPerMessageFrom(opts),
        ceiling: Boolean(opts.ceiling),
        diskProbeDir: parseDiskProbeFlag(str('diskProbe')),
      };
      await handleBench(contextFor(command), options, opts.json ? 'json' : opts.csv ? 'csv' : 'table', { htmlPath: str('html') });
    });
  bench
    .command('report')
    .description('render saved bench --json reports as one self-contained HTML file with charts')
    .argument('<json...>', 'reports written by txsim bench --json')
    .option('--html <file>', 'where to write the HTML (required)')
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim bench --json > run1.json && txsim bench --batch-size 1 --json > run2.json\n  $ txsim bench report run1.json run2.json --html report.html\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action((paths: string[], _opts: unknown, command: Command) => {
      // `bench` has an --html of its own, and commander hands a flag shared by both to the parent.
      const html = command.optsWithGlobals<{ html?: string }>().html;
      if (!html) throw new UsageError('bench report: --html <file> is required');
      handleBenchReport(contextFor(command), paths, html);
    });
  registerBenchCompare(bench);
}
