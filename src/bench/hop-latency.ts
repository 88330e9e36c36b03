// hdr-histogram-js is CommonJS: its default import is the whole module.exports.
import hdr from 'hdr-histogram-js';
import type { ChannelModel } from 'amqplib';
import { HOPS, type Hop } from '../stats/hops.js';
import type { Percentiles } from '../stats/histogram.js';
import type { LatencySummary, WorkerSnapshot } from '../stats/snapshot.js';
import { subscribeStats } from '../watch/stats-subscriber.js';

/** Per-hop latency of a bench run, from the workers' own measurements. */
export interface BenchHopLatency {
  /** Percentiles per hop the workers measured (the relay hop is absent: bench workers run --no-relay). */
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
  private close: (() => Promise<void>) | null = null;

  /** Subscribes on its own channel of `connection` to the namespace's stats exchange. */
  async start(connection: ChannelModel, statsExchange: string): Promise<void> {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    await subscribeStats(channel, statsExchange, {
      onSnapshot: (snapshot) => {
        const previous = this.latest.get(snapshot.workerId);
        if (!previous || previous.pid !== snapshot.pid || snapshot.seq > previous.seq) this.latest.set(snapshot.workerId, snapshot);
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

  /** The merged per-hop totals over every worker seen. */
  result(): BenchHopLatency {
    const snapshots = [...this.latest.values()];
    return { ...mergeHopTotals(snapshots), workersFinal: snapshots.filter((s) => s.stopping).length, workersReporting: snapshots.length };
  }
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
