// hdr-histogram-js is CommonJS: its default import is the whole module.exports.
import hdr from 'hdr-histogram-js';
import type { ChannelModel } from 'amqplib';
import { HOPS, type Hop } from '../stats/hops.js';
import type { Percentiles } from '../stats/histogram.js';
import type { LatencySummary, WorkerSnapshot } from '../stats/snapshot.js';
import { subscribeStats } from '../watch/stats-subscriber.js';

/** Per-hop latency of a bench run, from the workers' own measurements. */
export interface BenchHopLatency {
  /** Percentiles per hop the workers measured (the relay hop is absent when the bench ran with --no-relay). */
  readonly hops: Partial<Record<Hop, Percentiles>>;
  /** Workers whose final (stopping) snapshot arrived, of those that reported at all. */
  readonly workersFinal: number;
  readonly workersReporting: number;
  /**
   * True when every worker's final totals came with histograms, merged exactly. Otherwise, for a
   * worker whose last snapshot was lost, its last totals count with their percentiles: p50/p90/p99
   * are then the worst worker's, an upper bound, and p99.9 is its max.
   */
  readonly exact: boolean;
}

/**
 * Listens to the bench workers' stats snapshots for the whole run and keeps each worker's latest.
 * A worker's last snapshot (sent as it stops) carries its per-hop totals with histograms, which add
 * up exactly across workers: percentiles from the processes that measured them, not re-derived.
 */
export class HopLatencyCollector {
  private readonly latest = new Map<string, WorkerSnapshot>();
  /** When (this process's clock) each worker's latest snapshot arrived. */
  private readonly receivedAtMs = new Map<string, number>();
  /** The `second` hop windows of the snapshots received since the last `takeSecond()`. */
  private pendingSeconds: Partial<Record<Hop, LatencySummary>>[] = [];
  private close: (() => Promise<void>) | null = null;

  /** Subscribes on its own channel of `connection` to the namespace's stats exchange. */
  async start(connection: ChannelModel, statsExchange: string): Promise<void> {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    await subscribeStats(channel, statsExchange, {
      onSnapshot: (snapshot) => {
        const previous = this.latest.get(snapshot.workerId);
        if (!previous || previous.pid !== snapshot.pid || snapshot.seq > previous.seq) this.latest.set(snapshot.workerId, snapshot);
        this.receivedAtMs.set(snapshot.workerId, Date.now());
        // Bounded: the sampler takes them every second; a stalled sampler must not grow this forever.
        if (snapshot.hopsMs?.second && this.pendingSeconds.length < PENDING_SECONDS_MAX) this.pendingSeconds.push(snapshot.hopsMs.second);
      },
    });
    this.close = () => channel.close().catch(() => {});
  }

  /** Stops listening; call after the workers stopped (their last snapshots arrive as they exit). */
  async stop(): Promise<void> {
    // The goodbye snapshot is sent just before a worker's connection closes: give it a moment to arrive.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await this.close?.();
    this.close = null;
  }

  /** Snapshots have arrived with values that no `takeSecond()` has taken yet. */
  hasPendingSeconds(): boolean {
    return this.pendingSeconds.length > 0;
  }

  /**
   * The hop latency of the values the workers recorded in the snapshots received since the last call
   * (each worker sends one a second, covering its last second), merged exactly over the workers.
   */
  takeSecond(): SecondHopLatency {
    const seconds = this.pendingSeconds;
    this.pendingSeconds = [];
    return mergeSecondHops(seconds);
  }

  /**
   * Outcomes the workers recorded so far, from each one's latest snapshot: applied, and rejected over
   * every reason. Counted by the workers as they commit, whatever the transaction type (a transfer
   * posts two entries and two events, an authorization no entry at all): no per-type arithmetic on
   * table marks, and no query on the database under load. Lags the commits by up to one snapshot (1 s).
   */
  outcomeCounts(): { applied: number; rejected: number } {
    let applied = 0;
    let rejected = 0;
    for (const s of this.latest.values()) {
      applied += s.counts.applied;
      for (const n of Object.values(s.counts.rejected)) rejected += n;
    }
    return { applied, rejected };
  }

  /**
   * Resolves once every worker seen has sent a snapshot that arrived after `sinceMs`, or after
   * `timeoutMs`. A snapshot built after a moment covers every value recorded before it: called once the
   * database shows the run drained (and relayed), it makes the per-second figures include the last ones.
   */
  async waitForSnapshotsAfter(sinceMs: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const fresh = [...this.receivedAtMs.values()].every((at) => at > sinceMs);
      if ((fresh && this.receivedAtMs.size > 0) || Date.now() >= deadline) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The merged per-hop totals over every worker seen. */
  result(): BenchHopLatency {
    const snapshots = [...this.latest.values()];
    return { ...mergeHopTotals(snapshots), workersFinal: snapshots.filter((s) => s.stopping).length, workersReporting: snapshots.length };
  }
}

/** Snapshots kept between two samples at most (32 workers × a few seconds of a stalled sampler). */
const PENDING_SECONDS_MAX = 256;

/** p50 and p99 of one hop over one second, in whole ms, with how many values they cover. */
export interface SecondHop {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
}
export type SecondHopLatency = Partial<Record<Hop, SecondHop>>;

/**
 * Merges the one-second hop windows of several snapshots (several workers, or a worker whose two
 * snapshots fell into one sample) exactly through their histograms. A window without a histogram
 * (not sent by this build, but allowed by the contract) counts with its own p50/p99 when it is the only one.
 */
export function mergeSecondHops(seconds: readonly Partial<Record<Hop, LatencySummary>>[]): SecondHopLatency {
  const out: { [hop in Hop]?: SecondHop } = {};
  for (const hop of HOPS) {
    const summaries = seconds.flatMap((s) => {
      const l = s[hop];
      return l && l.count > 0 ? [l] : [];
    });
    if (summaries.length === 0) continue;
    const merged = mergeSummaries(summaries).percentiles;
    out[hop] = { count: merged.count, p50: merged.p50, p99: merged.p99 };
  }
  return out;
}

/** Adds the workers' per-hop totals: exactly through their histograms, or as an upper bound without. */
export function mergeHopTotals(snapshots: readonly WorkerSnapshot[]): { hops: Partial<Record<Hop, Percentiles>>; exact: boolean } {
  const hops: Partial<Record<Hop, Percentiles>> = {};
  let exact = true;
  for (const hop of HOPS) {
    const summaries = snapshots.flatMap((s) => {
      const l = s.hopsMs?.total[hop];
      return l && l.count > 0 ? [l] : [];
    });
    if (summaries.length === 0) continue;
    const merged = mergeSummaries(summaries);
    exact &&= merged.exact;
    hops[hop] = merged.percentiles;
  }
  return { hops, exact };
}

function mergeSummaries(summaries: readonly LatencySummary[]): { percentiles: Percentiles; exact: boolean } {
  if (summaries.every((s) => s.histogram !== undefined)) {
    try {
      const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: 3 });
      for (const s of summaries) h.add(hdr.decodeFromCompressedBase64(s.histogram!));
      const at = (p: number) => h.getValueAtPercentile(p);
      return { percentiles: { count: h.totalCount, p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: at(100) }, exact: true };
    } catch {
      // An unreadable histogram: fall through to the upper bound.
    }
  }
  const worst = (f: (s: LatencySummary) => number) => Math.max(...summaries.map(f));
  return {
    percentiles: {
      count: summaries.reduce((n, s) => n + s.count, 0),
      p50: worst((s) => s.p50),
      p90: worst((s) => s.p90),
      p99: worst((s) => s.p99),
      p999: worst((s) => s.max),
      max: worst((s) => s.max),
    },
    exact: summaries.length === 1 && summaries[0]!.histogram !== undefined,
  };
}
