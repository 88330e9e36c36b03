import { randomUUID } from 'node:crypto';
// hdr-histogram-js is CommonJS: its default import is the whole module.exports.
import hdr from 'hdr-histogram-js';
import type { ConnectionFactory } from '../amqp/connect.js';
import { ManagedConnection, type ManagedChannel } from '../amqp/managed-channel.js';
import type { Logger } from '../log.js';
import type { LatencyHistogram } from './histogram.js';
import { HOPS, type Hop } from './hops.js';
import { ratePerS, round1, type CounterSample } from './rates.js';
import { encodeSnapshot, SNAPSHOT_SCHEMA, type HopsMs, type LatencySummary, type WorkerSnapshot } from './snapshot.js';
import type { WorkerMetrics } from './worker-metrics.js';

/** Workers publish one snapshot per second. */
export const SNAPSHOT_INTERVAL_MS = 1_000;

/** Latency percentiles in a snapshot cover this many recent snapshots (10 s at 1 Hz). */
export const LATENCY_WINDOW_TICKS = 10;

/**
 * A snapshot waiting in a slow watcher's queue for longer than this is worthless (a newer one has
 * been published since): RabbitMQ drops it instead of delivering it late.
 */
export const SNAPSHOT_TTL_MS = 5_000;

/** Who is reporting: fixed for the life of the process. */
export interface StatsIdentity {
  readonly workerId: string;
  readonly pid: number;
  readonly host: string;
  readonly prefetchCount: number;
}

/**
 * Latency over the last N ticks of a cumulative histogram. HdrHistograms subtract exactly, so it
 * keeps a copy of the cumulative histogram per tick and reports `now − copy from N ticks ago` — no
 * change to how the worker records. Copies are plain 32-bit arrays (~53 KiB each for 1 ms .. 1 h at
 * 3 digits), reused from tick to tick: packed copies were a few KiB smaller but made these
 * once-a-second copies and subtractions a measurable share of a busy worker's CPU.
 */
class WindowedHistogram {
  private readonly copies: LatencyHistogram[] = [];
  private readonly window = newHistogram();
  /** The last tick alone (allocated on first use: only hop windows ask for it). */
  private lastTick: LatencyHistogram | null = null;
  /** The cumulative histogram as of the last snapshot sent (`markSent`); null before the first. */
  private sentBase: LatencyHistogram | null = null;
  /** The values since the last snapshot sent, set by `sample()` when asked for. */
  lastTickSummary: LatencySummary = EMPTY_SUMMARY;

  constructor(
    private readonly source: LatencyHistogram,
    private readonly windowTicks: number,
  ) {}

  /**
   * Call once per tick. With `withLastTick`, also sets `lastTickSummary` to the values recorded since
   * the last snapshot that was sent (cumulative now − the copy `markSent` took: exact, one add and one
   * subtract), computed only when something was recorded since — an idle hop costs nothing more. From
   * the last *sent* snapshot, not the last tick: a tick skipped on a congested socket carries its
   * values into the next snapshot instead of losing them.
   */
  sample(withLastTick = false): LatencySummary {
    const window = this.window;
    window.reset();
    window.add(this.source);
    if (this.copies.length >= this.windowTicks) window.subtract(this.copies[0]!);
    if (withLastTick) {
      const previous = this.sentBase;
      const newValues = this.source.totalCount - (previous?.totalCount ?? 0);
      if (newValues <= 0) this.lastTickSummary = EMPTY_SUMMARY;
      else {
        const tick = (this.lastTick ??= newHistogram());
        tick.reset();
        tick.add(this.source);
        if (previous) tick.subtract(previous);
        this.lastTickSummary = summarize(tick, true);
      }
    }
    const copy = this.copies.length >= this.windowTicks ? this.copies.shift()! : newHistogram();
    copy.reset();
    copy.add(this.source);
    this.copies.push(copy);
    return summarize(window, true);
  }

  /** The snapshot just built was sent: the next one's last-second values count from here. Call before recording anything more. */
  markSent(): void {
    if (this.lastTickSummary.count === 0) return; // nothing new since the base: it still holds
    const base = (this.sentBase ??= newHistogram());
    base.reset();
    base.add(this.source);
  }
}

function withoutHistogram(summary: LatencySummary): LatencySummary {
  const { histogram: _histogram, ...rest } = summary;
  return rest;
}

const EMPTY_SUMMARY: LatencySummary = { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };

function newHistogram(): LatencyHistogram {
  return hdr.build({ bitBucketSize: 32, lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: 3 });
}

/** Percentiles of a histogram; with `withHistogram`, the histogram itself so readers can merge exactly. */
export function summarize(h: LatencyHistogram, withHistogram: boolean): LatencySummary {
  const count = h.totalCount;
  if (count === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  // After subtract(), maxValue can be stale; the 100th percentile is computed from the counts.
  const base = {
    count,
    p50: h.getValueAtPercentile(50),
    p90: h.getValueAtPercentile(90),
    p99: h.getValueAtPercentile(99),
    max: h.getValueAtPercentile(100),
  };
  return withHistogram ? { ...base, histogram: hdr.encodeIntoCompressedBase64(h) } : base;
}

/**
 * Turns a worker's live counters into snapshots, one per call to `build()` (once per tick). Keeps
 * just enough history for the 1 s / 10 s rates and the 10 s latency window. Pure apart from what
 * it reads from `metrics`, so tests drive it with a fake clock.
 */
export class SnapshotBuilder {
  private seq = 0;
  /** Drawn once per process: see WorkerSnapshot.instanceId. */
  private readonly instanceId = randomUUID();
  private readonly processed: CounterSample[] = [];
  private readonly applied: CounterSample[] = [];
  private readonly endToEnd: WindowedHistogram;
  private readonly processing: WindowedHistogram;
  private readonly hops: [Hop, WindowedHistogram][];

  constructor(
    private readonly metrics: WorkerMetrics,
    private readonly identity: StatsIdentity,
  ) {
    this.endToEnd = new WindowedHistogram(metrics.endToEndMs, LATENCY_WINDOW_TICKS);
    this.processing = new WindowedHistogram(metrics.processingMs, LATENCY_WINDOW_TICKS);
    this.hops = HOPS.map((hop) => [hop, new WindowedHistogram(metrics.hops.histograms[hop], LATENCY_WINDOW_TICKS)]);
  }

  /** Hops with values only: a worker never sees `statement`, one with --no-relay never sees `relay`. */
  private hopsMs(stopping: boolean): HopsMs {
    const window: Partial<Record<Hop, LatencySummary>> = {};
    const second: Partial<Record<Hop, LatencySummary>> = {};
    const total: Partial<Record<Hop, LatencySummary>> = {};
    for (const [hop, windowed] of this.hops) {
      const source = this.metrics.hops.histograms[hop];
      // Sampled every tick even when empty, so the window's history stays aligned.
      const w = windowed.sample(true);
      if (source.totalCount === 0) continue;
      // The goodbye snapshot carries the totals' histograms (bench's exact merge) and the last second's;
      // the 10 s window's would add as much again and could pass SNAPSHOT_BYTES_MAX on a wide spread,
      // while no reader merges the window of a worker that is leaving: its percentiles stay, not its histogram.
      window[hop] = stopping ? withoutHistogram(w) : w;
      if (windowed.lastTickSummary.count > 0) second[hop] = windowed.lastTickSummary;
      total[hop] = summarize(source, stopping);
    }
    return { windowS: LATENCY_WINDOW_TICKS, window, second, total };
  }

  /**
   * The snapshot `build()` returned last was sent: the next one's `hopsMs.second` starts after it. A
   * snapshot not sent (skipped) leaves its values to the next. Call synchronously after `build()`.
   */
  markSent(): void {
    for (const [, windowed] of this.hops) windowed.markSent();
  }

  build(nowMs: number, stopping = false): WorkerSnapshot {
    const m = this.metrics;
    pushBounded(this.processed, { atMs: nowMs, count: m.processed });
    pushBounded(this.applied, { atMs: nowMs, count: m.applied });
    return {
      schema: SNAPSHOT_SCHEMA,
      workerId: this.identity.workerId,
      pid: this.identity.pid,
      host: this.identity.host,
      startedAtMs: m.startedAt,
      instanceId: this.instanceId,
      sentAtMs: nowMs,
      seq: ++this.seq,
      stopping,
      counts: {
        applied: m.applied,
        rejected: { ...m.rejected },
        retried: m.retried,
        parked: m.parked,
        duplicates: m.duplicates,
        batches: m.batches,
      },
      processedPerS: { last1s: round1(ratePerS(this.processed, 1_000)), last10s: round1(ratePerS(this.processed, 10_000)) },
      appliedPerS: { last1s: round1(ratePerS(this.applied, 1_000)), last10s: round1(ratePerS(this.applied, 10_000)) },
      latencyMs: { windowS: LATENCY_WINDOW_TICKS, endToEnd: this.endToEnd.sample(), processing: this.processing.sample() },
      latencyTotalMs: { endToEnd: summarize(m.endToEndMs, false), processing: summarize(m.processingMs, false) },
      inFlight: m.inFlight,
      prefetchCount: this.identity.prefetchCount,
      blocked: m.blocked,
      paused: m.paused,
      lastError: m.lastError ? { message: m.lastError.message, atMs: m.lastError.at } : null,
      hopsMs: this.hopsMs(stopping),
      ...(m.stages ? { stages: m.stages.summary() } : {}),
    };
  }
}

/** Rate history: a little more than the 10 s window, so "closest to 10 s ago" exists despite timer drift. */
const COUNTER_SAMPLES_MAX = 12;

function pushBounded(samples: CounterSample[], sample: CounterSample): void {
  samples.push(sample);
  if (samples.length > COUNTER_SAMPLES_MAX) samples.shift();
}

export interface StatsPublisherOptions {
  readonly amqpUrl: string;
  /** The `<ns>.stats` fanout exchange (topology.statsExchange). */
  readonly exchange: string;
  readonly identity: StatsIdentity;
  readonly intervalMs?: number;
  /** Opens the recovering AMQP connection; the real one unless a test passes a fake. */
  readonly connect?: ConnectionFactory;
}

/**
 * Publishes a worker's snapshot to the stats exchange every second. Snapshots are transient and
 * unconfirmed on purpose: a lost one is replaced a second later, and stats must never slow down or
 * stop the worker. It has its own connection (named `txsim stats <id>` in the RabbitMQ console) so
 * that a stats problem cannot close the worker's channels, and it skips ticks rather than buffer
 * while the socket is congested or the broker is away.
 */
export class StatsPublisher {
  private readonly builder: SnapshotBuilder;
  private readonly connection: ManagedConnection;
  private readonly channel: ManagedChannel;
  private started = false;
  private timer: NodeJS.Timeout | null = null;
  private congested = false;
  private closed: Promise<void> | null = null;
  /** Snapshots not sent (no channel, or socket congested). */
  skipped = 0;
  published = 0;

  constructor(
    private readonly options: StatsPublisherOptions,
    metrics: WorkerMetrics,
    private readonly log: Logger,
  ) {
    this.builder = new SnapshotBuilder(metrics, options.identity);
    this.connection = new ManagedConnection({
      url: options.amqpUrl,
      log,
      clientName: `txsim stats ${options.identity.workerId}`,
      // Same declaration as assertTopology: fanout, transient.
      setup: async (channel) => {
        await channel.assertExchange(options.exchange, 'fanout', { durable: false });
      },
      initialMaxRetries: 3,
      ...(options.connect ? { connect: options.connect } : {}),
    });
    this.channel = this.connection.channel({
      name: 'stats channel',
      setup: (channel) => {
        channel.on('drain', () => (this.congested = false));
        this.congested = false;
        return Promise.resolve();
      },
    });
  }

  /**
   * Connects and starts the 1 s ticker. Never throws: a worker without stats still does its job,
   * so a failure to connect is a warning. Returns at once, not started, when `signal` aborts.
   */
  async start(signal?: AbortSignal): Promise<void> {
    try {
      if (!(await this.connection.start(signal))) return;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'stats publisher could not connect; running without stats');
      return;
    }
    // close() ran while we were connecting: the connection closed itself as it came up.
    if (this.closed) return;
    this.started = true;
    this.timer = setInterval(() => this.publishOnce(false), this.options.intervalMs ?? SNAPSHOT_INTERVAL_MS);
    this.timer.unref();
  }

  /** Builds a snapshot every tick (the rate history needs it) and sends it when it can. */
  private publishOnce(stopping: boolean): void {
    const snapshot = this.builder.build(Date.now(), stopping);
    const channel = this.channel.channel;
    if (!channel || this.congested) {
      this.skipped++;
      return;
    }
    try {
      const writable = channel.publish(this.options.exchange, '', encodeSnapshot(snapshot), {
        contentType: 'application/json',
        type: SNAPSHOT_SCHEMA,
        persistent: false,
        expiration: String(SNAPSHOT_TTL_MS),
        timestamp: Math.floor(snapshot.sentAtMs / 1000),
        appId: 'txsim',
      });
      this.published++;
      this.builder.markSent();
      // publish() returning false still buffered this one; skip the next ones until 'drain'.
      if (!writable) this.congested = true;
    } catch (err) {
      this.skipped++;
      this.log.debug({ err: (err as Error).message }, 'stats snapshot not sent');
    }
  }

  /** Stops the ticker, sends a last snapshot marked `stopping`, closes. Safe to call twice. */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (!this.started) {
      await this.connection.close();
      return;
    }
    this.publishOnce(true);
    try {
      // Closes the channel first, which flushes what was written on it: the goodbye snapshot goes out.
      await this.connection.close();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'stats connection close failed');
    }
  }
}
