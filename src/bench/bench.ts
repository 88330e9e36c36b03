import { spawn, type ChildProcess } from 'node:child_process';
import type { ChannelModel } from 'amqplib';
import { assertTopology, deleteTopology, type Topology } from '../amqp/topology.js';
import type { Config } from '../config/config.js';
import { seedAccounts } from '../db/accounts.js';
import { createDatabase, type Knex } from '../db/knex.js';
import { outcomeMarks } from '../db/ledger.js';
import { unsentOutboxEventCount } from '../db/outbox.js';
import { runLatencyTimeline, runOutcomeCount, runOutcomesByStatus, runSpan } from '../db/transactions.js';
import { dropDatabase, ensureSchema } from '../db/schema.js';
import type { Logger } from '../log.js';
import { createLatencyHistogram, percentilesOf, recordMs, type Percentiles } from '../stats/histogram.js';
import { insertToken } from '../db/api-tokens.js';
import { sendRunOverHttp } from '../gen/http-run.js';
import { publishRun, type HttpRunFigures, type PublishRunOptions, type RunProgress, type RunSummary } from '../gen/publish-run.js';
import type { FlowOptions } from '../gen/flows.js';
import { newToken } from '../serve/credentials.js';
import { verifyBooks } from '../verify/verify.js';
import { cpuPerAppliedTx, idleShareOf, type CpuPerTx, type MachineTicks } from './cpu-budget.js';
import { CpuSampler, pidsNamed, readMachineTicks } from './cpu-sampler.js';
import { efficiencyOf, runCeiling, type CeilingResult } from './ceiling.js';
import type { RelayProcessSettings } from './relay-process.js';
import { firstMessageOf, forkWithSettings } from './helper-process.js';
import { HopLatencyCollector, type BenchHopLatency, type SecondHopLatency } from './hop-latency.js';
import { DiskSyncProbe, type DiskSyncFigures } from './disk-probe.js';
import { ProcessWatch } from './process-watch.js';

import type { BenchMix } from './mixes.js';

/** Options of one bench run. Units are in the names. */
export interface BenchOptions {
  readonly workers: number;
  readonly batchSizeMax: number;
  /** Batches each worker applies at once. */
  readonly transactionsMax: number;
  /** How long a worker's partial batch waits for more messages. */
  readonly batchWaitMs: number;
  readonly prefetchCount: number;
  readonly accounts: number;
  readonly hotShare: number;
  readonly ratePerS: number;
  /** Paced: gen's `--linger` (absent: 0, each message at its time). */
  readonly lingerMs?: number;
  readonly count: number;
  /** Stop publishing after this long even if `count` is not reached (0 = no limit). */
  readonly durationS: number;
  readonly invalidShare: number;
  /** Most time to wait for the workers to drain after publishing. */
  readonly drainTimeoutS: number;
  /** Node flags of the worker processes (worker/node-options.ts's, then --cpu-prof's and --worker-node-option's). */
  readonly workerNodeArgs: readonly string[];
  readonly seed: string;
  /**
   * How the transactions go in: published to RabbitMQ as `gen` does, or posted to a `txsim serve` the
   * bench starts (`gen --via`), so the API's requests/s and request latency are measured too.
   */
  readonly via: 'amqp' | 'http';
  /** With `via: 'http'`: requests in flight at once. */
  readonly httpConcurrency: number;
  /** Type weights of the generated transactions (BENCH_V1_MIX by default). */
  readonly mix: BenchMix;
  /**
   * Run the outbox relay in the workers, as a real deployment does (default): its database and broker
   * work is part of the pipeline's cost, and the relay hop is measured. False: workers run --no-relay.
   */
  readonly relay: boolean;
  /**
   * With the relay on: run it in one process of its own (workers --no-relay) instead of inside every
   * worker, so its CPU is measured apart (`cpuUsPerAppliedTx.components.relay`). A different deployment
   * from the default one: compare such runs with each other.
   */
  readonly relayProcess: boolean;
  /** Most accounting events in one relay message (worker --relay-events-per-message); 1 measures a message per event. */
  readonly relayEventsPerMessageMax: number;
  /** After the run, measure the machine's ceiling with the same load (ceiling.ts) and report the efficiency. */
  readonly ceiling: boolean;
  /** Probe the fdatasync latency of this directory's disk while the run goes (disk-probe.ts); null: not probed. */
  readonly diskProbeDir: string | null;
}

/** One line per second while the bench runs, like PerfTest's. */
export interface SecondSample {
  /** Seconds since the start of publishing, to 0.1 s. Counts below are per second over the interval that ends here. */
  readonly t: number;
  readonly sent: number;
  readonly confirmed: number;
  readonly applied: number;
  readonly rejected: number;
  readonly workerCpuPct: number;
  /** CPU % (of one core) of the broker, the database and this process (gen), when they run here. */
  readonly brokerCpuPct: number;
  readonly databaseCpuPct: number;
  readonly genCpuPct: number;
  /** CPU % of the `txsim serve` process (0 when the bench publishes over AMQP). */
  readonly serveCpuPct?: number;
  /** CPU % of the relay's own process (with --relay-process only). */
  readonly relayCpuPct?: number;
  /** RSS of all the workers together. */
  readonly workerRssMb: number;
  /** RSS of the largest single worker (the figure a per-process memory limit is about). */
  readonly workerRssMbLargest?: number;
  /** Share (%) of the machine's CPU time that was idle in this interval, from /proc/stat (absent where there is none). */
  readonly idlePct?: number;
  /**
   * created → committed latency of the outcomes committed in this interval, from the database after the
   * run (absent in the live lines, and for an interval with no outcome).
   */
  readonly endToEndP50Ms?: number;
  readonly endToEndP99Ms?: number;
  /**
   * p50/p99 per hop (queue_wait, processing, commit, ack, relay, end_to_end) of the values the workers
   * recorded in the snapshots that arrived during this interval (each covers its worker's last second),
   * merged exactly over the workers. Hops with no value in the interval are absent.
   */
  readonly hopsMs?: SecondHopLatency;
  /** The slowest 4 KiB fdatasync of the disk probe in this interval (ms); absent without the probe or when none finished. */
  readonly diskSyncMaxMs?: number;
}

export interface BenchReport {
  readonly options: BenchOptions;
  readonly runId: string;
  readonly published: number;
  readonly confirmed: number;
  /** Card-flow follow-ups (captures, voids, refunds) gen sent and the broker confirmed beside `confirmed`; 0 without flows. */
  readonly followUps: number;
  readonly publishRatePerS: number;
  readonly outcomes: number;
  /** Outcomes of the run by status, counted in the database after the run: applied + rejected == outcomes. */
  readonly applied: number;
  readonly rejected: number;
  /** With the relay on: every outbox event was relayed before the workers stopped (false: the relay hop misses the tail). */
  readonly relayDrained: boolean | null;
  /** Outcomes per second from the first message created to the last committed. */
  readonly endToEndRatePerS: number;
  /**
   * With --ceiling: tx/s the same messages and rows reach through the same broker and database with
   * none of txsim's logic (ceiling.ts); null without. `efficiency` = endToEndRatePerS ÷ ceiling.
   */
  readonly ceiling: number | null;
  readonly efficiency: number | null;
  /** The ceiling run's own figures (null without --ceiling). */
  readonly ceilingRun: CeilingResult | null;
  readonly elapsedS: number;
  /** Over HTTP: from each request's intended send time to its 202 (which the API sends after the broker's confirm). */
  readonly confirmLatencyMs: Percentiles;
  readonly endToEndLatencyMs: Percentiles;
  /**
   * Latency per hop (queue_wait, processing, commit, ack, end_to_end; see README "Where the time goes"),
   * as the workers measured it, merged over all of them.
   */
  readonly hopLatencyMs: BenchHopLatency;
  /** How the transactions went in (see BenchOptions.via). */
  readonly via: 'amqp' | 'http';
  /** Requests/s, request latency and answers by status of a bench through the API; null over AMQP. */
  readonly http: HttpRunFigures | null;
  readonly workerCpuPctAvg: number;
  /** Average CPU % (of one core) over the busy seconds: where the machine's cores went. */
  readonly cpuPctAvg: { workers: number; broker: number; database: number; gen: number; serve: number };
  /**
   * µs of CPU per applied transaction, per component and in total (the sum of the components), over
   * the run (start of publishing to the last sample). null for a component not measured: not running
   * here (broker, database elsewhere; serve over AMQP), or `relay`, unless it has its own process
   * (--relay-process): by default it runs inside the workers and is counted in theirs. Null throughout when nothing was applied.
   */
  readonly cpuUsPerAppliedTx: CpuPerTx;
  /** Share (0..1) of the whole machine's CPU time that was idle over the same span (/proc/stat); null where unreadable. */
  readonly idleShare: number | null;
  /** Workers' RSS, summed over the workers: the largest, first and last sample. */
  readonly workerRssMbMax: number;
  readonly workerRssMbFirst: number;
  readonly workerRssMbLast: number;
  /** The largest RSS of any one worker, in any sample (first and last: of the largest worker in that sample). */
  readonly workerRssMbPerWorker: { readonly max: number; readonly first: number; readonly last: number };
  /** Every confirmed message had an outcome before `--drain-timeout`; false makes the bench fail. */
  readonly drained: boolean;
  readonly verifyOk: boolean;
  readonly lost: number;
  readonly duplicated: number;
  /** The disk probe's fdatasync latency from the start of publishing to the drain; null when not probed (`--disk-probe off`). */
  readonly diskSync: DiskSyncFigures | null;
  readonly seconds: SecondSample[];
}

const CLI = new URL('../cli.js', import.meta.url).pathname;

/**
 * The card flows of a bench run whose mix has authorizations, over AMQP or HTTP alike:
 * most are captured (some in two steps, some refunded in part), a fifth voided, the rest left to expire
 * after the run. Follow-ups count in the drain and in the ceiling's message count like the run's own.
 */
export const BENCH_CARD_FLOWS: FlowOptions = {
  captureShare: 0.7,
  voidShare: 0.2,
  partialShare: 0.2,
  refundShare: 0.1,
  delayMinMs: 50,
  delayMaxMs: 2_000,
  expireAfterMs: 30_000,
};

/** The gen options of a bench run: a fixed mix and amounts, the bench's rate, size and poison share. */
export function benchRunOptions(options: BenchOptions): PublishRunOptions {
  return {
    count: options.count,
    seed: options.seed,
    ratePerS: options.ratePerS,
    ...(options.lingerMs ? { lingerMs: options.lingerMs } : {}),
    mix: options.mix,
    accountIds: null,
    amountMinMinor: 100,
    amountMaxMinor: 50_000,
    accountsDist: { kind: 'hot', share: options.hotShare, setSize: 3 },
    invalidShare: options.invalidShare,
    windowMax: 2_000,
    confirmTimeoutMs: 60_000,
    reconnectTimeoutMs: 60_000,
    ...((options.mix.card_authorization ?? 0) > 0 ? { flows: BENCH_CARD_FLOWS } : {}),
  };
}

/** Every message of a run the workers must decide: the confirmed ones and the confirmed card-flow follow-ups. */
function confirmedOf(summary: RunSummary): number {
  return summary.confirmed + (summary.flows?.confirmed ?? 0);
}

/**
 * Runs one benchmark: resets the bench namespace (exchanges, queues, database), seeds accounts,
 * starts W worker processes, publishes, waits until drained, then measures throughput, latency
 * (HdrHistogram) and worker CPU/RSS, and ends with `verify`.
 */
export async function runBench(
  deps: { config: Config; connection: ChannelModel; topology: Topology; log: Logger },
  options: BenchOptions,
  onSecond: (sample: SecondSample) => void,
): Promise<BenchReport> {
  const { config, connection, topology, log } = deps;
  await resetNamespace(config, connection, topology);
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 2 });
  const workers: ChildProcess[] = [];
  const hops = new HopLatencyCollector();
  /** Other processes the bench started (`txsim serve`). */
  const children: ChildProcess[] = [];
  let disk: DiskSyncProbe | null = null;
  // A process of the bench that dies before the bench stops it voids the run (process-watch.ts):
  // publishing is aborted at once and every wait below gives up at its next check.
  const watch = new ProcessWatch('bench');
  const controller = new AbortController();
  watch.onExit(() => controller.abort());
  /** The running sampler, for the cleanup of a failed run. */
  let started: SecondSampler | null = null;
  let stopTimer: NodeJS.Timeout | null = null;
  try {
    await hops.start(connection, topology.statsExchange);
    await seedAccounts(db, { count: options.accounts, firstId: 1, openingBalanceMinor: 10_000_000n, currency: 'EUR', chunkSize: 1_000 });
    for (let i = 1; i <= options.workers; i++) {
      const id = `bench-w${i}`;
      const worker = startWorkerProcess(config, options, id);
      workers.push(worker);
      watch.add(`worker ${id}`, worker);
    }
    const relay = options.relay && options.relayProcess ? await startRelayProcess(config, options.relayEventsPerMessageMax) : null;
    if (relay) {
      children.push(relay);
      watch.add('the relay process', relay);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // let them connect and subscribe
    watch.throwIfExited();

    const serve = options.via === 'http' ? await startServeProcess(config, db) : null;
    if (serve) {
      children.push(serve.child);
      watch.add('txsim serve', serve.child);
    }

    disk = options.diskProbeDir === null ? null : await DiskSyncProbe.start(options.diskProbeDir);
    watch.throwIfExited();
    // Seeding posted opening balances: count only what happens from here on.
    const sampler = new SecondSampler(hops, workers, serve?.child ?? null, relay, disk, await outcomeMarks(db), onSecond);
    started = sampler;
    sampler.start(log);
    watch.publishingStarted(sampler.t0);
    stopTimer = options.durationS > 0 ? setTimeout(() => controller.abort(), options.durationS * 1000) : null;
    const hooks = { signal: controller.signal, onProgress: (p: RunProgress) => sampler.setProgress(p) };
    const summary = serve
      ? await sendRunOverHttp(
          db,
          benchRunOptions(options),
          { baseUrl: serve.url, token: serve.token, concurrency: options.httpConcurrency, requestTimeoutMs: 60_000 },
          hooks,
        )
      : await publishRun({ db, connection, topology }, benchRunOptions(options), hooks);
    if (stopTimer) clearTimeout(stopTimer);
    watch.setPhase('draining', `bench ${summary.runId}`);
    watch.throwIfExited();
    sampler.setProgress(summary);

    const drainDeadlineMs = Date.now() + options.drainTimeoutS * 1000;
    const giveUp = () => watch.throwIfExited();
    const drained = await waitForDrain(db, sampler.baseline, summary, drainDeadlineMs, giveUp);
    // The relay runs behind the commits: its last events are measured only if the workers live until they are sent.
    watch.setPhase('waiting for the relay');
    const relayDrained = options.relay ? drained && (await waitForRelay(db, drainDeadlineMs, giveUp)) : null;
    // The per-second counts and hops come from the workers' snapshots, up to a second behind the commits
    // and relays the database shows: wait for a snapshot of each made after that, so the seconds hold the last ones.
    watch.setPhase('waiting for the last snapshots');
    await hops.waitForSnapshotsAfter(Date.now(), SNAPSHOT_CATCH_UP_MS);
    await sampler.stop();
    // The last moment a death could have changed the figures: from here the bench stops them itself.
    watch.throwIfExited();
    watch.disarm();
    // The probe is beside the run, not part of it: a probe that failed (a full disk, say) costs its figures, not the run's.
    const diskSync = disk
      ? await disk.stop().catch((err: Error) => {
          log.warn({ err: err.message }, 'disk probe failed: no disk figures for this run');
          return null;
        })
      : null;
    disk = null;
    // Workers stop before verify: a delivery a worker holds is in no queue count, so a verify of an
    // undrained run would call it lost. Stopped, it is back in the queue and counted as pending.
    await Promise.all(workers.map(stopProcess));
    await Promise.all(children.map(stopProcess));
    await hops.stop();

    const latency = await endToEndLatency(db, summary.runId);
    const byStatus = await runOutcomesByStatus(db, summary.runId);
    const verify = await verifyBooks({ db, connection, topology }, { runId: summary.runId });
    // Nothing consumes the accounting queue in a bench: its events would sit in the broker until the next bench.
    if (options.relay) await purgeQueue(connection, topology.accountingQueue);
    // After the run, never during it: the two would share the machine's cores and each measure half of it.
    const ceiling = options.ceiling
      ? await runCeiling(
          { config, connection, db },
          {
            consumers: options.workers,
            count: confirmedOf(summary),
            accounts: options.accounts,
            hotShare: options.hotShare,
            mix: options.mix,
            seed: options.seed,
            prefetchCount: options.prefetchCount,
            batchSizeMax: options.batchSizeMax,
            transactionsMax: options.transactionsMax,
            batchWaitMs: options.batchWaitMs,
            windowMax: benchRunOptions(options).windowMax,
            timeoutMs: options.drainTimeoutS * 1000,
          },
        )
      : null;
    return benchReport(options, summary, latency, sampler, hops.result(), ceiling, {
      applied: byStatus.applied,
      rejected: byStatus.rejected,
      relayDrained,
      drained,
      verifyOk: verify.ok,
      lost: verify.run?.lost ?? 0,
      duplicated: verify.run?.duplicated ?? 0,
      diskSync,
    });
  } finally {
    // On a failed run too: no timer may keep sampling (or the process alive) after it.
    if (stopTimer) clearTimeout(stopTimer);
    started?.cancel();
    watch.disarm();
    await disk?.stop().catch(() => {});
    await Promise.all([...workers, ...children].map(stopProcess));
    await hops.stop();
    await db.destroy();
  }
}

/**
 * Drained when every confirmed message has an outcome (poison included: all gen poison has an id).
 * The exact count scans the run's index, which on a large run is real work for the database the
 * workers are still using: it runs only once the O(1) high-water marks say the run may be done
 * (they can overcount — after a rolled-back batch, or as an applied transfer writes
 * two events — but never undercount: every outcome writes at least one event).
 * `giveUp` is called before each check and ends the wait by throwing (a process of the bench died).
 */
async function waitForDrain(db: Knex, baseline: OutcomeMarks, summary: RunSummary, deadline: number, giveUp: () => void): Promise<boolean> {
  for (;;) {
    giveUp();
    const eventsSinceStart = (await outcomeMarks(db)).events - baseline.events;
    const expected = confirmedOf(summary);
    const drained = eventsSinceStart >= expected && (await runOutcomeCount(db, summary.runId)) >= expected;
    if (drained || Date.now() > deadline) return drained;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Longest wait for the workers' snapshots to count the run's last outcomes (they come once a second). */
const SNAPSHOT_CATCH_UP_MS = 2_500;

/** Waits until the relay sent every outbox event (the pending index makes this a short range scan), or the deadline; `giveUp` as waitForDrain's. */
async function waitForRelay(db: Knex, deadline: number, giveUp: () => void): Promise<boolean> {
  for (;;) {
    giveUp();
    if ((await unsentOutboxEventCount(db)) === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function purgeQueue(connection: ChannelModel, queue: string): Promise<void> {
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    await channel.purgeQueue(queue);
  } finally {
    await channel.close().catch(() => {});
  }
}

/** The report from the run's figures and the per-second samples. */
function benchReport(
  options: BenchOptions,
  summary: RunSummary,
  latency: EndToEndLatency,
  sampler: SecondSampler,
  hopLatencyMs: BenchHopLatency,
  ceiling: CeilingResult | null,
  outcome: {
    applied: number;
    rejected: number;
    relayDrained: boolean | null;
    drained: boolean;
    verifyOk: boolean;
    diskSync: DiskSyncFigures | null;
    lost: number;
    duplicated: number;
  },
): BenchReport {
  const seconds = withSecondLatencies(sampler.seconds, latency.timeline);
  const rss = rangeOf(seconds.map((s) => s.workerRssMb));
  const busy = seconds.filter((s) => s.applied + s.rejected > 0);
  const endToEndRatePerS = latency.spanMs > 0 ? Math.round((latency.count * 1000) / latency.spanMs) : 0;
  return {
    options,
    runId: summary.runId,
    published: summary.published,
    confirmed: summary.confirmed,
    followUps: summary.flows?.confirmed ?? 0,
    publishRatePerS: summary.ratePerS,
    outcomes: latency.count,
    applied: outcome.applied,
    rejected: outcome.rejected,
    relayDrained: outcome.relayDrained,
    endToEndRatePerS,
    cpuUsPerAppliedTx: cpuPerAppliedTx(sampler.cpuSeconds(), outcome.applied),
    idleShare: sampler.idleShare(),
    ceiling: ceiling?.txPerS ?? null,
    efficiency: efficiencyOf(endToEndRatePerS, ceiling?.txPerS ?? null),
    ceilingRun: ceiling,
    elapsedS: (Date.now() - sampler.t0) / 1000,
    confirmLatencyMs: summary.confirmLatencyMs,
    endToEndLatencyMs: latency.percentiles,
    hopLatencyMs,
    via: summary.via,
    http: summary.http,
    workerCpuPctAvg: avg(busy, (s) => s.workerCpuPct),
    cpuPctAvg: {
      workers: avg(busy, (s) => s.workerCpuPct),
      broker: avg(busy, (s) => s.brokerCpuPct),
      database: avg(busy, (s) => s.databaseCpuPct),
      gen: avg(busy, (s) => s.genCpuPct),
      serve: avg(busy, (s) => s.serveCpuPct ?? 0),
    },
    workerRssMbMax: rss.max,
    workerRssMbFirst: rss.first,
    workerRssMbLast: rss.last,
    workerRssMbPerWorker: rangeOf(seconds.map((s) => s.workerRssMbLargest ?? 0)),
    drained: outcome.drained,
    verifyOk: outcome.verifyOk,
    lost: outcome.lost,
    duplicated: outcome.duplicated,
    diskSync: outcome.diskSync,
    seconds,
  };
}

type OutcomeMarks = { entries: number; events: number };

/**
 * One sample a second while the bench runs: gen's progress, the outcomes and hop latency the workers
 * reported in their stats snapshots, and CPU/RSS of the workers, the broker, the database and gen
 * itself. `baseline` (the database's high-water marks before publishing) is for the drain check.
 */
class SecondSampler {
  readonly seconds: SecondSample[] = [];
  readonly t0 = Date.now();
  private lastMs = this.t0;
  private last = { sent: 0, confirmed: 0, applied: 0, rejected: 0 };
  private progress: RunProgress = { published: 0, confirmed: 0, returned: 0, failed: 0 };
  private readonly cpu: CpuSampler;
  private readonly broker = new CpuSampler(pidsNamed(['beam.smp']));
  private readonly database = new CpuSampler(pidsNamed(['mariadbd', 'mysqld']));
  private readonly self = new CpuSampler([process.pid]);
  private readonly serve: CpuSampler;
  /** The relay's own process (--relay-process); no pids otherwise (it runs inside the workers or not at all). */
  private readonly relay: CpuSampler;
  private readonly machineAtStart = readMachineTicks();
  private machineLast = this.machineAtStart;
  private machineAtStop: MachineTicks | null = null;
  /** Samples run one after another: a slow one delays the next rather than overlapping it. */
  private sampling: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly hops: HopLatencyCollector,
    workers: readonly ChildProcess[],
    serve: ChildProcess | null,
    relay: ChildProcess | null,
    private readonly disk: DiskSyncProbe | null,
    readonly baseline: OutcomeMarks,
    private readonly onSecond: (sample: SecondSample) => void,
  ) {
    this.cpu = new CpuSampler(workers.map((w) => w.pid!));
    this.serve = new CpuSampler(serve?.pid ? [serve.pid] : []);
    this.relay = new CpuSampler(relay?.pid ? [relay.pid] : []);
  }

  setProgress(progress: RunProgress): void {
    this.progress = progress;
  }

  start(log: Logger): void {
    this.timer = setInterval(() => {
      this.sampling = this.sampling.then(() => this.sample()).catch((err) => log.warn({ err: (err as Error).message }, 'sample failed'));
    }, 1_000);
  }

  /** Stops the timer without a last sample: the run failed, nothing more is measured. Safe to call twice. */
  cancel(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Stops the timer, waits for a sample in progress, then takes the tail since the last tick unless it is too short to be a rate worth printing. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sampling;
    // Hop values the workers sent since the last tick belong in a second: when there are some, the tail
    // is stretched to the shortest interval worth a rate instead of dropped (a run shorter than a tick
    // would otherwise have no per-second hops at all).
    const shortByMs = TAIL_MIN_MS - (Date.now() - this.lastMs);
    if (this.hops.hasPendingSeconds() && shortByMs > 0) await new Promise((resolve) => setTimeout(resolve, shortByMs));
    if (Date.now() - this.lastMs >= TAIL_MIN_MS) this.sample();
    this.machineAtStop = readMachineTicks();
  }

  /** CPU seconds per component from the start of publishing to `stop()`; relay null unless it has its own process. */
  cpuSeconds(): Record<string, number | null> {
    const measured = (c: CpuSampler) => (c.measures ? c.cpuSecondsSinceStart() : null);
    return {
      workers: measured(this.cpu),
      broker: measured(this.broker),
      database: measured(this.database),
      gen: measured(this.self),
      ...(this.serve.measures ? { serve: this.serve.cpuSecondsSinceStart() } : {}),
      relay: measured(this.relay),
    };
  }

  /** Idle share of the machine over the same span. */
  idleShare(): number | null {
    return idleShareOf(this.machineAtStart, this.machineAtStop);
  }

  private idlePctSinceLast(): { idlePct?: number } {
    const now = readMachineTicks();
    const share = idleShareOf(this.machineLast, now);
    this.machineLast = now;
    return share === null ? {} : { idlePct: Math.round(share * 100) };
  }

  private diskSyncSinceLast(): { diskSyncMaxMs?: number } {
    const max = this.disk?.takeIntervalMaxMs();
    return max === undefined ? {} : { diskSyncMaxMs: max };
  }

  private sample(): void {
    const counts = this.hops.outcomeCounts();
    const hopsMs = this.hops.takeSecond();
    const usage = this.cpu.sample();
    // Timer ticks drift (a slow sample delays the next): counts are turned into rates over the
    // interval actually measured, so a 0.7 s or 1.3 s interval still reads as per second.
    const nowMs = Date.now();
    const intervalMs = Math.max(1, nowMs - this.lastMs);
    const perS = (delta: number) => Math.round((delta * 1000) / intervalMs);
    this.lastMs = nowMs;
    const { progress, last } = this;
    const s: SecondSample = {
      t: Math.round((nowMs - this.t0) / 100) / 10,
      sent: perS(progress.published - last.sent),
      confirmed: perS(progress.confirmed - last.confirmed),
      applied: perS(counts.applied - last.applied),
      rejected: perS(counts.rejected - last.rejected),
      workerCpuPct: usage.cpuPct,
      workerRssMb: usage.rssMb,
      workerRssMbLargest: usage.rssMbLargest,
      brokerCpuPct: this.broker.sample().cpuPct,
      databaseCpuPct: this.database.sample().cpuPct,
      genCpuPct: this.self.sample().cpuPct,
      serveCpuPct: this.serve.sample().cpuPct,
      ...(this.relay.measures ? { relayCpuPct: this.relay.sample().cpuPct } : {}),
      ...this.idlePctSinceLast(),
      ...(Object.keys(hopsMs).length > 0 ? { hopsMs } : {}),
      ...this.diskSyncSinceLast(),
    };
    this.last = { sent: progress.published, confirmed: progress.confirmed, applied: counts.applied, rejected: counts.rejected };
    this.seconds.push(s);
    this.onSecond(s);
  }
}

/** The largest, first and last of the measured (positive) values of a series; 0 for each when none was measured. */
function rangeOf(values: readonly number[]): { max: number; first: number; last: number } {
  const measured = values.filter((v) => v > 0);
  return { max: measured.length ? Math.max(...measured) : 0, first: measured[0] ?? 0, last: measured[measured.length - 1] ?? 0 };
}

/** The shortest last interval the sampler turns into a per-second line. */
const TAIL_MIN_MS = 250;

/** Deletes and re-creates the bench namespace: a bench always starts from empty queues and books. */
async function resetNamespace(config: Config, connection: ChannelModel, topology: Topology): Promise<void> {
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    await deleteTopology(channel, topology);
    await assertTopology(channel, topology);
  } finally {
    await channel.close().catch(() => {});
  }
  await dropDatabase(config.databaseUrl, config.databaseName);
  await ensureSchema(config.databaseUrl, config.databaseName);
}

function startWorkerProcess(config: Config, options: BenchOptions, id: string): ChildProcess {
  const child = spawn(
    process.execPath,
    [
      ...options.workerNodeArgs,
      CLI,
      'worker',
      '--id',
      id,
      '--batch-size',
      String(options.batchSizeMax),
      '--transactions',
      String(options.transactionsMax),
      '--batch-wait',
      String(options.batchWaitMs),
      '--prefetch',
      String(options.prefetchCount),
      '--log-level',
      'warn',
      ...(options.relay && !options.relayProcess
        ? ['--relay-events-per-message', String(options.relayEventsPerMessageMax)]
        : ['--no-relay']),
    ],
    {
      env: childEnv(config),
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  return child;
}

const RELAY_PROCESS = new URL('./relay-process.js', import.meta.url).pathname;

/** Starts the relay in a process of its own (--relay-process); resolves once it relays. */
async function startRelayProcess(config: Config, eventsPerMessageMax: number): Promise<ChildProcess> {
  const settings: RelayProcessSettings = {
    id: 'bench-relay',
    eventsPerMessageMax,
    amqpUrl: config.amqpUrl,
    databaseUrl: config.databaseUrl,
    databaseName: config.databaseName,
    namespace: config.namespace,
    retryDelaysMs: config.retryDelaysMs,
  };
  const child = forkWithSettings(RELAY_PROCESS, 'TXSIM_RELAY_PROCESS', settings);
  await firstMessageOf(child, SERVE_START_TIMEOUT_MS, 'the relay process');
  return child;
}

/** The environment of a process the bench starts (a worker, serve): the bench's namespace and services. */
function childEnv(config: Config): NodeJS.ProcessEnv {
  return {
    ...process.env,
    TXSIM_NAMESPACE: config.namespace,
    AMQP_URL: config.amqpUrl,
    DATABASE_URL: config.databaseUrl,
    TXSIM_RETRY_DELAYS: config.retryDelaysMs.join(','),
  };
}

/** Longest wait for the bench's `txsim serve` to listen. */
const SERVE_START_TIMEOUT_MS = 30_000;

/**
 * Starts `txsim serve` for a bench through the API: a child process (its CPU is measured apart from
 * gen's), on a free port, without rate limiting, with an admin token the bench creates for itself
 * (only an admin may name the run). Resolves once it listens.
 */
async function startServeProcess(config: Config, db: Knex): Promise<{ child: ChildProcess; url: string; token: string }> {
  const token = newToken();
  await insertToken(db, {
    id: token.id,
    secretHash: token.secretHash,
    isAdmin: true,
    accountId: null,
    label: 'txsim bench',
    createdAt: new Date(),
    expiresAt: new Date(Date.now() + 24 * 3_600_000),
  });
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--rate-limit', '0', '--log-level', 'warn'], {
    env: childEnv(config),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => fail(new Error(`txsim serve did not listen within ${SERVE_START_TIMEOUT_MS} ms`)),
      SERVE_START_TIMEOUT_MS,
    );
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    const onExit = (code: number | null) => fail(new Error(`txsim serve exited with code ${code} before listening`));
    const onData = (d: Buffer) => {
      out += d.toString();
      const match = /listening on (http:\/\/\S+) /.exec(out);
      if (!match) return;
      clearTimeout(timer);
      child.removeListener('exit', onExit);
      child.stdout.removeListener('data', onData);
      child.stdout.resume(); // nothing more is read from it; it must not fill up and block serve
      resolve(match[1]!);
    };
    child.stdout.on('data', onData);
    child.once('exit', onExit);
  });
  return { child, url, token: token.token };
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** created → processed latency of every outcome of the run, from the database rows themselves. */
async function endToEndLatency(db: Knex, runId: string): Promise<EndToEndLatency> {
  const histogram = createLatencyHistogram();
  const timeline = await runLatencyTimeline(db, runId);
  for (const o of timeline) recordMs(histogram, o.latencyUs / 1000);
  const span = await runSpan(db, runId);
  return { percentiles: percentilesOf(histogram), count: span.count, spanMs: span.spanUs / 1000, timeline };
}

interface EndToEndLatency {
  readonly percentiles: Percentiles;
  readonly count: number;
  readonly spanMs: number;
  readonly timeline: readonly { atUs: number; latencyUs: number }[];
}

/**
 * The per-second samples with the latency of the outcomes committed in each interval. An outcome's time
 * counts from the run's first created message, the samples' from the start of publishing: the two
 * differ by the moment between them (milliseconds), small against a one-second interval.
 */
export function withSecondLatencies(seconds: readonly SecondSample[], timeline: EndToEndLatency['timeline']): SecondSample[] {
  const buckets: number[][] = seconds.map(() => []);
  for (const o of timeline) {
    // The first interval that ends at or after the outcome (binary search: samples are in time order).
    let lo = 0;
    let hi = seconds.length - 1;
    if (hi < 0) break;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seconds[mid]!.t * 1_000_000 >= o.atUs) hi = mid;
      else lo = mid + 1;
    }
    buckets[lo]!.push(o.latencyUs / 1000);
  }
  return seconds.map((s, i) => {
    const ms = buckets[i]!.sort((a, b) => a - b);
    if (ms.length === 0) return s;
    const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.ceil(q * ms.length) - 1)]! * 10) / 10;
    return { ...s, endToEndP50Ms: at(0.5), endToEndP99Ms: at(0.99) };
  });
}

function avg(samples: SecondSample[], pick: (s: SecondSample) => number): number {
  return samples.length ? Math.round(samples.reduce((a, s) => a + pick(s), 0) / samples.length) : 0;
}
