import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { ChannelModel } from 'amqplib';
import { assertTopology, deleteTopology, type Topology } from '../amqp/topology.js';
import type { Config } from '../config/config.js';
import { seedAccounts } from '../db/accounts.js';
import { createDatabase, type Knex } from '../db/knex.js';
import { dropDatabase, ensureSchema } from '../db/schema.js';
import type { Logger } from '../log.js';
import { createLatencyHistogram, percentilesOf, recordMs, type Percentiles } from '../stats/histogram.js';
import { publishRun, type PublishRunOptions, type RunProgress } from '../gen/publish-run.js';
import { verifyBooks } from '../verify/verify.js';

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
  readonly count: number;
  /** Stop publishing after this long even if `count` is not reached (0 = no limit). */
  readonly durationS: number;
  readonly invalidShare: number;
  /** Most time to wait for the workers to drain after publishing. */
  readonly drainTimeoutS: number;
  /** Extra node flags for the worker processes (e.g. --cpu-prof). */
  readonly workerNodeArgs: readonly string[];
  readonly seed: string;
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
  readonly workerRssMb: number;
}

export interface BenchReport {
  readonly options: BenchOptions;
  readonly runId: string;
  readonly published: number;
  readonly confirmed: number;
  readonly publishRatePerS: number;
  readonly outcomes: number;
  /** Outcomes per second from the first message created to the last committed. */
  readonly endToEndRatePerS: number;
  readonly elapsedS: number;
  readonly confirmLatencyMs: Percentiles;
  readonly endToEndLatencyMs: Percentiles;
  readonly workerCpuPctAvg: number;
  /** Average CPU % (of one core) over the busy seconds: where the machine's cores went. */
  readonly cpuPctAvg: { workers: number; broker: number; database: number; gen: number };
  readonly workerRssMbMax: number;
  readonly workerRssMbFirst: number;
  readonly workerRssMbLast: number;
  /** Every confirmed message had an outcome before `--drain-timeout`; false makes the bench fail. */
  readonly drained: boolean;
  readonly verifyOk: boolean;
  readonly lost: number;
  readonly duplicated: number;
  readonly seconds: SecondSample[];
}

const CLI = new URL('../cli.js', import.meta.url).pathname;

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
  try {
    await seedAccounts(db, { count: options.accounts, firstId: 1, openingBalanceMinor: 10_000_000n, currency: 'EUR', chunkSize: 1_000 });
    for (let i = 1; i <= options.workers; i++) workers.push(startWorkerProcess(config, options, `bench-w${i}`));
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // let them connect and subscribe

    const cpu = new CpuSampler(workers.map((w) => w.pid!));
    const broker = new CpuSampler(pidsNamed(['beam.smp']));
    const database = new CpuSampler(pidsNamed(['mariadbd', 'mysqld']));
    const self = new CpuSampler([process.pid]);
    const seconds: SecondSample[] = [];
    let progress: RunProgress = { published: 0, confirmed: 0, returned: 0, failed: 0 };
    // Seeding posted opening balances: count only what happens from here on.
    const baseline = await outcomeMarks(db);
    let last = { sent: 0, confirmed: 0, applied: 0, rejected: 0 };
    const t0 = Date.now();
    let lastMs = t0;
    const sample = async () => {
      const counts = outcomesSince(await outcomeMarks(db), baseline);
      const usage = cpu.sample();
      // Timer ticks drift (a slow sample delays the next): counts are turned into rates over the
      // interval actually measured, so a 0.7 s or 1.3 s interval still reads as per second.
      const nowMs = Date.now();
      const intervalMs = Math.max(1, nowMs - lastMs);
      const perS = (delta: number) => Math.round((delta * 1000) / intervalMs);
      lastMs = nowMs;
      const s: SecondSample = {
        t: Math.round((nowMs - t0) / 100) / 10,
        sent: perS(progress.published - last.sent),
        confirmed: perS(progress.confirmed - last.confirmed),
        applied: perS(counts.applied - last.applied),
        rejected: perS(counts.rejected - last.rejected),
        workerCpuPct: usage.cpuPct,
        workerRssMb: usage.rssMb,
        brokerCpuPct: broker.sample().cpuPct,
        databaseCpuPct: database.sample().cpuPct,
        genCpuPct: self.sample().cpuPct,
      };
      last = { sent: progress.published, confirmed: progress.confirmed, applied: counts.applied, rejected: counts.rejected };
      seconds.push(s);
      onSecond(s);
      return counts;
    };
    let sampling = Promise.resolve();
    const timer = setInterval(() => {
      sampling = sampling.then(() => sample().then(() => undefined)).catch((err) => log.warn({ err: (err as Error).message }, 'sample failed'));
    }, 1_000);

    const controller = new AbortController();
    const stopTimer = options.durationS > 0 ? setTimeout(() => controller.abort(), options.durationS * 1000) : null;
    const runOptions: PublishRunOptions = {
      count: options.count,
      seed: options.seed,
      ratePerS: options.ratePerS,
      mix: { deposit: 40, withdrawal: 30, card_payment: 30 },
      accountIds: null,
      amountMinMinor: 100,
      amountMaxMinor: 50_000,
      hotShare: options.hotShare,
      hotSetSize: 3,
      invalidShare: options.invalidShare,
      windowMax: 2_000,
      confirmTimeoutMs: 60_000,
      reconnectTimeoutMs: 60_000,
    };
    const summary = await publishRun({ db, connection, topology }, runOptions, { signal: controller.signal, onProgress: (p) => (progress = p) });
    if (stopTimer) clearTimeout(stopTimer);
    progress = summary;

    // Drained when every confirmed message has an outcome (poison included: all gen poison has an id).
    // The exact count scans the run's index, which on a large run is real work for the database the
    // workers are still using: it runs only once the O(1) high-water marks say the run may be done
    // (they can overcount, after a rolled-back batch, but never undercount).
    const drainDeadline = Date.now() + options.drainTimeoutS * 1000;
    let drained = false;
    for (;;) {
      const eventsSinceStart = (await outcomeMarks(db)).events - baseline.events;
      drained = eventsSinceStart >= summary.confirmed && (await runOutcomeCount(db, summary.runId)) >= summary.confirmed;
      if (drained || Date.now() > drainDeadline) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    clearInterval(timer);
    await sampling;
    // The tail since the last tick, unless it is too short to be a rate worth printing.
    if (Date.now() - lastMs >= 250) await sample();
    // Workers stop before verify: a delivery a worker holds is in no queue count, so a verify of an
    // undrained run would call it lost. Stopped, it is back in the queue and counted as pending.
    await Promise.all(workers.map(stopProcess));

    const latency = await endToEndLatency(db, summary.runId);
    const verify = await verifyBooks({ db, connection, topology }, { runId: summary.runId });
    const rss = seconds.map((s) => s.workerRssMb).filter((v) => v > 0);
    const busy = seconds.filter((s) => s.applied + s.rejected > 0);
    return {
      options,
      runId: summary.runId,
      published: summary.published,
      confirmed: summary.confirmed,
      publishRatePerS: summary.ratePerS,
      outcomes: latency.count,
      endToEndRatePerS: latency.spanMs > 0 ? Math.round((latency.count * 1000) / latency.spanMs) : 0,
      elapsedS: (Date.now() - t0) / 1000,
      confirmLatencyMs: summary.confirmLatencyMs,
      endToEndLatencyMs: latency.percentiles,
      workerCpuPctAvg: avg(busy, (s) => s.workerCpuPct),
      cpuPctAvg: { workers: avg(busy, (s) => s.workerCpuPct), broker: avg(busy, (s) => s.brokerCpuPct), database: avg(busy, (s) => s.databaseCpuPct), gen: avg(busy, (s) => s.genCpuPct) },
      workerRssMbMax: rss.length ? Math.max(...rss) : 0,
      workerRssMbFirst: rss[0] ?? 0,
      workerRssMbLast: rss[rss.length - 1] ?? 0,
      drained,
      verifyOk: verify.ok,
      lost: verify.run?.lost ?? 0,
      duplicated: verify.run?.duplicated ?? 0,
      seconds,
    };
  } finally {
    await Promise.all(workers.map(stopProcess));
    await db.destroy();
  }
}

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
    [...options.workerNodeArgs, CLI, 'worker', '--id', id, '--batch-size', String(options.batchSizeMax), '--transactions', String(options.transactionsMax), '--batch-wait', String(options.batchWaitMs), '--prefetch', String(options.prefetchCount), '--log-level', 'warn', '--no-relay'],
    {
      env: { ...process.env, TXSIM_NAMESPACE: config.namespace, AMQP_URL: config.amqpUrl, DATABASE_URL: config.databaseUrl, TXSIM_RETRY_DELAYS: config.retryDelaysMs.join(',') },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  return child;
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

/** AUTO_INCREMENT high-water marks of the ledger and the outbox: O(1), where COUNT(*) over a growing table would load the database. */
async function outcomeMarks(db: Knex): Promise<{ entries: number; events: number }> {
  const [[row]] = (await db.raw('SELECT (SELECT COALESCE(MAX(id), 0) FROM ledger_entries) AS entries, (SELECT COALESCE(MAX(id), 0) FROM outbox_events) AS events')) as [[{ entries: string; events: string }]];
  return { entries: Number(row.entries), events: Number(row.events) };
}

/**
 * Outcomes since `base`: ledger entries come in pairs per applied transaction, outbox events one per
 * recorded outcome. Both marks are taken relative to `base`, because seeding posts opening entries
 * (two per account) and no events: mixing the two absolute marks hid rejects behind the openings.
 */
function outcomesSince(marks: { entries: number; events: number }, base: { entries: number; events: number }): { applied: number; rejected: number } {
  const applied = Math.floor((marks.entries - base.entries) / 2);
  return { applied, rejected: Math.max(0, marks.events - base.events - applied) };
}

async function runOutcomeCount(db: Knex, runId: string): Promise<number> {
  const [[row]] = (await db.raw('SELECT COUNT(*) AS n FROM transactions WHERE run_id = ?', [runId])) as [[{ n: string }]];
  return Number(row.n);
}

/** created → processed latency of every outcome of the run, from the database rows themselves. */
async function endToEndLatency(db: Knex, runId: string): Promise<{ percentiles: Percentiles; count: number; spanMs: number }> {
  const histogram = createLatencyHistogram();
  const [rows] = (await db.raw(
    `SELECT TIMESTAMPDIFF(MICROSECOND, created_at, processed_at) AS us FROM transactions WHERE run_id = ? AND created_at IS NOT NULL`,
    [runId],
  )) as [{ us: string }[]];
  for (const r of rows) recordMs(histogram, Number(r.us) / 1000);
  const [[span]] = (await db.raw(
    `SELECT TIMESTAMPDIFF(MICROSECOND, MIN(created_at), MAX(processed_at)) AS us, COUNT(*) AS n FROM transactions WHERE run_id = ?`,
    [runId],
  )) as [[{ us: string | null; n: string }]];
  return { percentiles: percentilesOf(histogram), count: Number(span.n), spanMs: Number(span.us ?? 0) / 1000 };
}

function avg(samples: SecondSample[], pick: (s: SecondSample) => number): number {
  return samples.length ? Math.round(samples.reduce((a, s) => a + pick(s), 0) / samples.length) : 0;
}

/** Pids of local processes with one of these names (the broker's and the database's, when they run here). */
function pidsNamed(names: readonly string[]): number[] {
  const pids: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (names.includes(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) pids.push(Number(entry));
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // no /proc (not Linux): nothing to sample
  }
  return pids;
}

/** CPU % (of one core) summed over some processes, and their total RSS, from /proc. */
class CpuSampler {
  private lastTicks = 0;
  private lastAt = Date.now();
  constructor(private readonly pids: readonly number[]) {
    this.lastTicks = this.ticks();
  }

  sample(): { cpuPct: number; rssMb: number } {
    const now = Date.now();
    const ticks = this.ticks();
    const cpuPct = now > this.lastAt ? Math.round(((ticks - this.lastTicks) / 100 / ((now - this.lastAt) / 1000)) * 100) : 0;
    this.lastTicks = ticks;
    this.lastAt = now;
    return { cpuPct, rssMb: Math.round(this.rssKb() / 1024) };
  }

  private ticks(): number {
    let total = 0;
    for (const pid of this.pids) {
      try {
        // Fields 14 and 15 of /proc/<pid>/stat: user and system time in clock ticks (100/s on Linux).
        const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        total += Number(fields[11]) + Number(fields[12]);
      } catch {
        // process gone or not Linux: counted as zero
      }
    }
    return total;
  }

  private rssKb(): number {
    let total = 0;
    for (const pid of this.pids) {
      try {
        const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        total += Number(match?.[1] ?? 0);
      } catch {
        // gone
      }
    }
    return total;
  }
}
