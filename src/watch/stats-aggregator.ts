// hdr-histogram-js is CommonJS: its default import is the whole module.exports.
import hdr from 'hdr-histogram-js';
import { HOPS, type Hop } from '../stats/hops.js';
import type { LatencySummary, StageStats, WorkerSnapshot } from '../stats/snapshot.js';
import { round1 } from '../stats/rates.js';

/**
 * The pure side of `watch`: what the workers' snapshots add up to. Every function here takes the
 * current time as an argument and returns new values, so the rules (rates, staleness, totals,
 * sorting, percentiles) are unit-tested without a broker or a clock.
 */

/**
 * - active: reporting, and processed something in the last 10 s (or holds deliveries);
 * - idle: reporting, nothing to do;
 * - stale: no snapshot for `staleAfterMs` — maybe busy, maybe dead;
 * - gone: no snapshot for `goneAfterMs`, or it said goodbye (clean shutdown).
 */
export type WorkerStatus = 'active' | 'idle' | 'stale' | 'gone';
const STATUS_ORDER: readonly WorkerStatus[] = ['active', 'idle', 'stale', 'gone'];

export interface StalenessOptions {
  /** No snapshot for this long: stale. Workers publish every second, so 3 s is three lost in a row. */
  readonly staleAfterMs: number;
  /** No snapshot for this long: gone. */
  readonly goneAfterMs: number;
  /** A gone worker's row is dropped this long after its last snapshot, so restarts don't pile up. */
  readonly forgetAfterMs: number;
}

export const DEFAULT_STALENESS: StalenessOptions = { staleAfterMs: 3_000, goneAfterMs: 15_000, forgetAfterMs: 300_000 };

/** Samples of throughput history kept per worker and in total (one per tick: two minutes at 1 Hz). */
export const HISTORY_LENGTH_MAX = 120;

export interface WorkerEntry {
  readonly snapshot: WorkerSnapshot;
  /** Receiver's clock when the snapshot arrived: staleness never depends on the sender's clock. */
  readonly receivedAtMs: number;
  /** Processed tx/s sampled once per tick, oldest first; 0 while stale or gone. */
  readonly history: readonly number[];
}

export interface StatsState {
  readonly workers: Readonly<Record<string, WorkerEntry>>;
  /** Sum of the workers' histories, sampled on the same ticks. */
  readonly totalHistory: readonly number[];
  /** Messages on the stats exchange that were not valid snapshots. */
  readonly invalidCount: number;
}

export function emptyStats(): StatsState {
  return { workers: {}, totalHistory: [], invalidCount: 0 };
}

/**
 * Records one snapshot. A snapshot older than the one held (lower `seq` from the same process)
 * is ignored: fanout delivery is ordered per publisher, but a restarted watch can see leftovers.
 * A worker restarted under the same id (new pid or start time) simply replaces the old row.
 */
export function receiveSnapshot(state: StatsState, snapshot: WorkerSnapshot, receivedAtMs: number): StatsState {
  const previous = state.workers[snapshot.workerId];
  const sameProcess =
    previous !== undefined && previous.snapshot.pid === snapshot.pid && previous.snapshot.startedAtMs === snapshot.startedAtMs;
  if (sameProcess && snapshot.seq < previous.snapshot.seq) return state;
  const entry: WorkerEntry = { snapshot, receivedAtMs, history: previous?.history ?? [] };
  return { ...state, workers: { ...state.workers, [snapshot.workerId]: entry } };
}

/** Counts a message that failed to decode (shown in the UI, so a broken publisher is visible). */
export function receiveInvalid(state: StatsState): StatsState {
  return { ...state, invalidCount: state.invalidCount + 1 };
}

/** Once per refresh: appends a throughput sample per worker and in total; forgets long-gone workers. */
export function tick(state: StatsState, nowMs: number, options: StalenessOptions = DEFAULT_STALENESS): StatsState {
  const workers: Record<string, WorkerEntry> = {};
  let total = 0;
  for (const [id, entry] of Object.entries(state.workers)) {
    if (nowMs - entry.receivedAtMs > options.forgetAfterMs) continue;
    const sample = liveRateOf(entry, nowMs, options) ?? 0;
    total += sample;
    workers[id] = { ...entry, history: appendBounded(entry.history, sample) };
  }
  return { ...state, workers, totalHistory: appendBounded(state.totalHistory, round1(total)) };
}

export function statusOf(entry: WorkerEntry, nowMs: number, options: StalenessOptions = DEFAULT_STALENESS): WorkerStatus {
  const ageMs = nowMs - entry.receivedAtMs;
  if (entry.snapshot.stopping || ageMs > options.goneAfterMs) return 'gone';
  if (ageMs > options.staleAfterMs) return 'stale';
  const s = entry.snapshot;
  return s.processedPerS.last10s > 0 || s.processedPerS.last1s > 0 || s.inFlight > 0 ? 'active' : 'idle';
}

/** The worker's current rate, or null when its last report is too old to say anything about now. */
function liveRateOf(entry: WorkerEntry, nowMs: number, options: StalenessOptions): number | null {
  const status = statusOf(entry, nowMs, options);
  return status === 'active' || status === 'idle' ? round1(entry.snapshot.processedPerS.last1s) : null;
}

/** One row of the workers table (and one element of `watch --json`). */
export interface WorkerRow {
  readonly workerId: string;
  readonly status: WorkerStatus;
  readonly host: string;
  readonly pid: number;
  readonly startedAtMs: number;
  readonly lastSeenAgoMs: number;
  /** Processed tx/s over the last second, rounded to 0.1; null while stale or gone. */
  readonly ratePerS: number | null;
  /** Processed tx/s over the last 10 s, rounded to 0.1; null while stale or gone. */
  readonly rate10sPerS: number | null;
  readonly applied: number;
  readonly rejected: number;
  readonly rejectedByReason: Readonly<Record<string, number>>;
  readonly retried: number;
  readonly parked: number;
  readonly duplicates: number;
  /** Length of the latency window, in seconds. */
  readonly latencyWindowS: number;
  /** End-to-end latency (created → committed) over the worker's last window. */
  readonly endToEndMs: LatencySummary;
  /** Processing latency (delivered → committed) over the worker's last window. */
  readonly processingMs: LatencySummary;
  /** Latency per hop over the worker's last window (hops it measured; none from an older worker). */
  readonly hopsMs: Readonly<Partial<Record<Hop, LatencySummary>>>;
  readonly inFlight: number;
  readonly prefetchCount: number;
  readonly blocked: boolean;
  readonly paused: boolean;
  readonly lastError: { readonly message: string; readonly atMs: number } | null;
  readonly history: readonly number[];
  /** The worker's processing stages (`worker --stage`), in walk order; empty without. */
  readonly stages: readonly StageStats[];
}

export function rowOf(entry: WorkerEntry, nowMs: number, options: StalenessOptions = DEFAULT_STALENESS): WorkerRow {
  const s = entry.snapshot;
  const live = liveRateOf(entry, nowMs, options) !== null;
  return {
    workerId: s.workerId,
    status: statusOf(entry, nowMs, options),
    host: s.host,
    pid: s.pid,
    startedAtMs: s.startedAtMs,
    lastSeenAgoMs: Math.max(0, nowMs - entry.receivedAtMs),
    ratePerS: live ? round1(s.processedPerS.last1s) : null,
    rate10sPerS: live ? round1(s.processedPerS.last10s) : null,
    applied: s.counts.applied,
    rejected: sum(Object.values(s.counts.rejected)),
    rejectedByReason: s.counts.rejected,
    retried: s.counts.retried,
    parked: s.counts.parked,
    duplicates: s.counts.duplicates,
    latencyWindowS: s.latencyMs.windowS,
    endToEndMs: s.latencyMs.endToEnd,
    processingMs: s.latencyMs.processing,
    hopsMs: s.hopsMs?.window ?? {},
    inFlight: s.inFlight,
    prefetchCount: s.prefetchCount,
    blocked: s.blocked,
    paused: s.paused,
    lastError: s.lastError,
    history: entry.history,
    stages: s.stages ?? [],
  };
}

/** What the `s` key cycles through. */
export const SORT_KEYS = ['id', 'rate', 'applied', 'rejected', 'p99', 'status'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

export function nextSortKey(key: SortKey): SortKey {
  return SORT_KEYS[(SORT_KEYS.indexOf(key) + 1) % SORT_KEYS.length]!;
}

/**
 * Sorts rows: by id ascending (natural order, so w2 < w10), every numeric key descending (the
 * busiest or slowest first), status in active → idle → stale → gone order. Ties fall back to id,
 * so the order never flickers between refreshes.
 */
export function sortRows(rows: readonly WorkerRow[], key: SortKey): WorkerRow[] {
  const byId = (a: WorkerRow, b: WorkerRow) => a.workerId.localeCompare(b.workerId, 'en', { numeric: true });
  const desc = (f: (r: WorkerRow) => number) => (a: WorkerRow, b: WorkerRow) => f(b) - f(a) || byId(a, b);
  const compare: Record<SortKey, (a: WorkerRow, b: WorkerRow) => number> = {
    id: byId,
    rate: desc((r) => r.ratePerS ?? -1),
    applied: desc((r) => r.applied),
    rejected: desc((r) => r.rejected),
    p99: desc((r) => (r.endToEndMs.count > 0 ? r.endToEndMs.p99 : -1)),
    status: (a, b) => STATUS_ORDER.indexOf(a.status) - STATUS_ORDER.indexOf(b.status) || byId(a, b),
  };
  return [...rows].sort(compare[key]);
}

/** A merged latency summary; `exact` is false when some worker sent no histogram (then p50/p99 are the worst worker's). */
export interface MergedLatency {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly exact: boolean;
}

/**
 * Percentiles of several workers together. Averaging percentiles is wrong (one slow worker hides
 * in the mean), so the workers' window histograms are decoded and added; when one is missing or
 * unreadable, the worst worker's values are the honest upper bound.
 */
export function mergeLatency(summaries: readonly LatencySummary[]): MergedLatency {
  const nonEmpty = summaries.filter((s) => s.count > 0);
  if (nonEmpty.length === 0) return { count: 0, p50: 0, p99: 0, max: 0, exact: true };
  const worst = (): MergedLatency => ({
    count: sum(nonEmpty.map((s) => s.count)),
    p50: Math.max(...nonEmpty.map((s) => s.p50)),
    p99: Math.max(...nonEmpty.map((s) => s.p99)),
    max: Math.max(...nonEmpty.map((s) => s.max)),
    exact: nonEmpty.length === 1,
  });
  if (nonEmpty.length === 1 || nonEmpty.some((s) => s.histogram === undefined)) return worst();
  try {
    const merged = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: 3 });
    for (const s of nonEmpty) merged.add(hdr.decodeFromCompressedBase64(s.histogram!));
    return {
      count: merged.totalCount,
      p50: merged.getValueAtPercentile(50),
      p99: merged.getValueAtPercentile(99),
      max: merged.getValueAtPercentile(100),
      exact: true,
    };
  } catch {
    // A histogram from an incompatible sender: fall back rather than lose the whole view.
    return worst();
  }
}

export interface Totals {
  readonly workers: number;
  readonly byStatus: Readonly<Record<WorkerStatus, number>>;
  /** Sum of the live rows' (rounded) rates, so the column adds up to exactly what is shown. */
  readonly ratePerS: number;
  readonly rate10sPerS: number;
  readonly applied: number;
  readonly rejected: number;
  readonly retried: number;
  readonly parked: number;
  readonly duplicates: number;
  readonly inFlight: number;
  /** Over live (active and idle) workers' windows. */
  readonly endToEndMs: MergedLatency;
  readonly processingMs: MergedLatency;
  /** Per hop, over live workers' windows; a hop no live worker measured is absent. */
  readonly hopsMs: Readonly<Partial<Record<Hop, MergedLatency>>>;
}

/** Each hop merged over the rows that measured it. */
export function mergeHops(rows: readonly WorkerRow[]): Partial<Record<Hop, MergedLatency>> {
  const merged: Partial<Record<Hop, MergedLatency>> = {};
  for (const hop of HOPS) {
    const summaries = rows.flatMap((r) => (r.hopsMs[hop] ? [r.hopsMs[hop]] : []));
    if (summaries.length > 0) merged[hop] = mergeLatency(summaries);
  }
  return merged;
}

/** The totals row: counts over every row shown (gone ones too: their work happened), rates over live rows. */
export function totalsOf(rows: readonly WorkerRow[]): Totals {
  const live = rows.filter((r) => r.status === 'active' || r.status === 'idle');
  const byStatus: Record<WorkerStatus, number> = { active: 0, idle: 0, stale: 0, gone: 0 };
  for (const r of rows) byStatus[r.status]++;
  return {
    workers: rows.length,
    byStatus,
    ratePerS: round1(sum(live.map((r) => r.ratePerS ?? 0))),
    rate10sPerS: round1(sum(live.map((r) => r.rate10sPerS ?? 0))),
    applied: sum(rows.map((r) => r.applied)),
    rejected: sum(rows.map((r) => r.rejected)),
    retried: sum(rows.map((r) => r.retried)),
    parked: sum(rows.map((r) => r.parked)),
    duplicates: sum(rows.map((r) => r.duplicates)),
    inFlight: sum(live.map((r) => r.inFlight)),
    endToEndMs: mergeLatency(live.map((r) => r.endToEndMs)),
    processingMs: mergeLatency(live.map((r) => r.processingMs)),
    hopsMs: mergeHops(live),
  };
}

/** Reject counts by reason over all rows, most frequent first (ties by name), at most `limit`. */
export function topRejectReasons(rows: readonly WorkerRow[], limit = 5): { reason: string; count: number }[] {
  const byReason = new Map<string, number>();
  for (const r of rows) for (const [reason, n] of Object.entries(r.rejectedByReason)) byReason.set(reason, (byReason.get(reason) ?? 0) + n);
  return [...byReason]
    .filter(([, n]) => n > 0)
    .map(([reason, count]) => ({ reason, count }))
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason))
    .slice(0, limit);
}

/**
 * The processing stages over the live workers, by name in walk order (first seen first): in-flight
 * walks and results summed; p50/p99 the slowest worker's (percentiles cannot be added, and the
 * snapshot carries no stage histograms: a stage is a simulated, configured latency, so the slowest
 * worker's is the useful figure).
 */
export function stagesOf(rows: readonly WorkerRow[]): StageStats[] {
  const byName = new Map<string, StageStats>();
  for (const r of rows) {
    if (r.status === 'gone') continue;
    for (const st of r.stages) {
      const prev = byName.get(st.name);
      byName.set(
        st.name,
        prev
          ? {
              name: st.name,
              inFlight: prev.inFlight + st.inFlight,
              passed: prev.passed + st.passed,
              declined: prev.declined + st.declined,
              failed: prev.failed + st.failed,
              p50Ms: Math.max(prev.p50Ms, st.p50Ms),
              p99Ms: Math.max(prev.p99Ms, st.p99Ms),
            }
          : st,
      );
    }
  }
  return [...byName.values()];
}

/** Everything the workers part of `watch` shows, at one instant. */
export interface StatsView {
  readonly atMs: number;
  readonly sortKey: SortKey;
  readonly rows: readonly WorkerRow[];
  readonly totals: Totals;
  readonly totalHistory: readonly number[];
  readonly rejectReasons: readonly { reason: string; count: number }[];
  /** Processing stages over the live workers (`stagesOf`); empty when no worker has any. */
  readonly stages: readonly StageStats[];
  readonly invalidCount: number;
}

export function viewOf(
  state: StatsState,
  nowMs: number,
  sortKey: SortKey = 'id',
  options: StalenessOptions = DEFAULT_STALENESS,
): StatsView {
  const rows = sortRows(
    Object.values(state.workers).map((e) => rowOf(e, nowMs, options)),
    sortKey,
  );
  return {
    atMs: nowMs,
    sortKey,
    rows,
    totals: totalsOf(rows),
    totalHistory: state.totalHistory,
    rejectReasons: topRejectReasons(rows, 5),
    stages: stagesOf(rows),
    invalidCount: state.invalidCount,
  };
}

/** A counter read at one instant, for rates. */
function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function appendBounded(history: readonly number[], sample: number): number[] {
  const next = [...history, sample];
  return next.length > HISTORY_LENGTH_MAX ? next.slice(next.length - HISTORY_LENGTH_MAX) : next;
}
