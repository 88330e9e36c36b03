// hdr-histogram-js is CommonJS: its default import is the whole module.exports.
import hdr from 'hdr-histogram-js';
import { HOPS, type Hop } from '../stats/hops.js';
import type { LatencySummary, SnapshotCounts, StageStats, WorkerSnapshot } from '../stats/snapshot.js';
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
  /** Processed tx/s sampled once per tick, oldest first; 0 while stale, gone or unheard. */
  readonly history: readonly number[];
  /**
   * Time since `receivedAtMs` during which the reader could not hear anyone (its own broker
   * connection was down): it does not count towards stale or gone. Reset by the next snapshot.
   */
  readonly deafMs?: number;
  /** The processes that ran under this id besides the one in the row (restarts): their work happened. */
  readonly earlier?: EarlierProcesses;
}

/** One earlier process of a worker id, as its newest snapshot left it. */
export interface EarlierProcess {
  /** `processKeyOf` its snapshots. */
  readonly key: string;
  readonly seq: number;
  readonly counts: SnapshotCounts;
}

/** The other processes seen under a worker id, so the row and the totals keep the work they did. */
export interface EarlierProcesses {
  /**
   * The most recent ones, oldest first (at most EARLIER_PROCESSES_MAX): a late snapshot of one of them
   * (its goodbye, say) updates its counts instead of adding them a second time.
   */
  readonly processes: readonly EarlierProcess[];
  /** The counts of the older ones that no longer fit in `processes`, added up; null when none. */
  readonly retiredCounts: SnapshotCounts | null;
  /** How many processes ran under this id besides the one in the row. */
  readonly restarts: number;
}

/** Earlier processes remembered one by one per worker id (a crash loop must not grow it; older ones are only summed). */
const EARLIER_PROCESSES_MAX = 16;

export interface StatsState {
  readonly workers: Readonly<Record<string, WorkerEntry>>;
  /** Sum of the workers' histories, sampled on the same ticks. */
  readonly totalHistory: readonly number[];
  /** Messages on the stats exchange that were not valid snapshots. */
  readonly invalidCount: number;
  /**
   * Since when the reader hears no snapshots (its stats subscription is down), on its own clock;
   * null while it listens. Workers do not age meanwhile: silence says nothing about them then.
   */
  readonly deafSinceMs?: number | null;
}

export function emptyStats(): StatsState {
  return { workers: {}, totalHistory: [], invalidCount: 0, deafSinceMs: null };
}

/**
 * Which process sent a snapshot: its `instanceId` (a random id drawn at start) when the worker sends
 * one, else `pid/startedAtMs`. Only equality matters — never order: a restarted worker's start time
 * can be lower than its predecessor's (another host's clock, or a clock set back).
 */
export function processKeyOf(s: WorkerSnapshot & { readonly instanceId?: string }): string {
  return s.instanceId ?? `${s.pid}/${s.startedAtMs}`;
}

function addCounts(a: SnapshotCounts, b: SnapshotCounts): SnapshotCounts {
  const rejected: Record<string, number> = { ...a.rejected };
  for (const [reason, n] of Object.entries(b.rejected)) rejected[reason] = (rejected[reason] ?? 0) + n;
  return {
    applied: a.applied + b.applied,
    rejected,
    retried: a.retried + b.retried,
    parked: a.parked + b.parked,
    duplicates: a.duplicates + b.duplicates,
    batches: a.batches + b.batches,
  };
}

/** The earlier processes' counts, added up. */
function earlierCountsOf(earlier: EarlierProcesses): SnapshotCounts | null {
  let total = earlier.retiredCounts;
  for (const p of earlier.processes) total = total ? addCounts(total, p.counts) : p.counts;
  return total;
}

/**
 * Records one snapshot. Each process under a worker id is told apart by `processKeyOf`, and its
 * snapshots by `seq`: one older than the newest held from the same process is ignored (fanout
 * delivery is ordered per publisher, but a restarted watch can see leftovers).
 *
 * A worker restarted under the same id is a process not seen before: it takes the row over, and the
 * process it replaces becomes an earlier one whose counts stay in the row and the totals. Whether a
 * process is newer is never judged by `startedAtMs` (see `processKeyOf`). The counts of every
 * process are kept apart, each at its newest snapshot, so a late snapshot of an earlier process (its
 * goodbye arriving after its successor's first snapshot) updates that process's counts and is never
 * counted twice. See `takesRow` for which process the row shows.
 */
export function receiveSnapshot(
  state: StatsState,
  snapshot: WorkerSnapshot,
  receivedAtMs: number,
  options: StalenessOptions = DEFAULT_STALENESS,
): StatsState {
  const previous = state.workers[snapshot.workerId];
  const key = processKeyOf(snapshot);
  let entry: WorkerEntry;
  if (previous === undefined) {
    entry = { snapshot, receivedAtMs, history: [] };
  } else if (processKeyOf(previous.snapshot) === key) {
    if (snapshot.seq < previous.snapshot.seq) return state;
    entry = { snapshot, receivedAtMs, history: previous.history, ...(previous.earlier ? { earlier: previous.earlier } : {}) };
  } else {
    const known = previous.earlier?.processes.find((p) => p.key === key);
    if (known && snapshot.seq <= known.seq) return state;
    const seen = { key, seq: snapshot.seq, counts: snapshot.counts };
    if (!takesRow(previous, snapshot, known !== undefined, receivedAtMs, state.deafSinceMs ?? null, options)) {
      // Its counts are kept (they happened), the row stays with the process that runs now.
      entry = { ...previous, earlier: rememberEarlier(previous.earlier, seen) };
    } else {
      // The row's process becomes an earlier one; this one leaves the earlier list if it was on it.
      const current = previous.snapshot;
      const earlier = rememberEarlier(withoutProcess(previous.earlier, key), {
        key: processKeyOf(current),
        seq: current.seq,
        counts: current.counts,
      });
      entry = { snapshot, receivedAtMs, history: previous.history, earlier };
    }
  }
  return { ...state, workers: { ...state.workers, [snapshot.workerId]: entry } };
}

/**
 * Whether a snapshot from another process than the row's takes the row. The row follows the process
 * that runs now, decided without comparing clocks:
 * - a process not seen before is a restart and takes the row, unless its snapshot is a goodbye while
 *   the row's process still runs (a predecessor's last snapshot, first heard after its successor's);
 * - an earlier process takes the row back only when the row's process has left (said goodbye, or
 *   has not been heard for `staleAfterMs` on the reader's clock) and it has not: two processes
 *   running under one id (a mistake, or an overlap during a rolling restart) must not make the row
 *   flip every second. Their counts add up either way.
 */
function takesRow(
  previous: WorkerEntry,
  snapshot: WorkerSnapshot,
  known: boolean,
  receivedAtMs: number,
  deafSinceMs: number | null,
  options: StalenessOptions,
): boolean {
  const rowProcessLeft = previous.snapshot.stopping || heardAgeMs(previous, receivedAtMs, deafSinceMs) > options.staleAfterMs;
  return known ? !snapshot.stopping && rowProcessLeft : !snapshot.stopping || rowProcessLeft;
}

/**
 * Records an earlier process at its newest snapshot: replaces its entry when it is listed, else adds
 * it as one more process that ran under the id. Beyond EARLIER_PROCESSES_MAX the oldest are summed
 * into `retiredCounts` (a late snapshot of one of those is out of the question: it is many restarts old).
 */
function rememberEarlier(earlier: EarlierProcesses | undefined, process: EarlierProcess): EarlierProcesses {
  const processes = earlier?.processes ?? [];
  const listed = processes.some((p) => p.key === process.key);
  const next = listed ? processes.map((p) => (p.key === process.key ? process : p)) : [...processes, process];
  let retiredCounts = earlier?.retiredCounts ?? null;
  while (next.length > EARLIER_PROCESSES_MAX) {
    const retired = next.shift()!;
    retiredCounts = retiredCounts ? addCounts(retiredCounts, retired.counts) : retired.counts;
  }
  return { processes: next, retiredCounts, restarts: (earlier?.restarts ?? 0) + (listed ? 0 : 1) };
}

/** The earlier processes without one (it takes the row back: it is the current one again). */
function withoutProcess(earlier: EarlierProcesses | undefined, key: string): EarlierProcesses | undefined {
  if (!earlier?.processes.some((p) => p.key === key)) return earlier;
  return { ...earlier, processes: earlier.processes.filter((p) => p.key !== key), restarts: earlier.restarts - 1 };
}

/**
 * The reader stopped hearing snapshots at `atMs` (its broker connection or stats channel went):
 * from now on no worker ages, and rows are marked `unheard`. Idempotent.
 */
export function stopHearing(state: StatsState, atMs: number): StatsState {
  return state.deafSinceMs != null ? state : { ...state, deafSinceMs: atMs };
}

/**
 * The reader hears again (subscribed anew) at `atMs`: the time it was deaf is credited to every
 * worker, so a worker that kept working is not stale or gone just because nobody could listen.
 */
export function resumeHearing(state: StatsState, atMs: number): StatsState {
  const since = state.deafSinceMs;
  if (since == null) return state;
  const workers: Record<string, WorkerEntry> = {};
  for (const [id, e] of Object.entries(state.workers))
    workers[id] = { ...e, deafMs: (e.deafMs ?? 0) + Math.max(0, atMs - Math.max(since, e.receivedAtMs)) };
  return { ...state, workers, deafSinceMs: null };
}

/** Counts a message that failed to decode (shown in the UI, so a broken publisher is visible). */
export function receiveInvalid(state: StatsState): StatsState {
  return { ...state, invalidCount: state.invalidCount + 1 };
}

/** Once per refresh: appends a throughput sample per worker and in total; forgets long-gone workers. */
export function tick(state: StatsState, nowMs: number, options: StalenessOptions = DEFAULT_STALENESS): StatsState {
  const workers: Record<string, WorkerEntry> = {};
  const deafSinceMs = state.deafSinceMs ?? null;
  let total = 0;
  for (const [id, entry] of Object.entries(state.workers)) {
    if (heardAgeMs(entry, nowMs, deafSinceMs) > options.forgetAfterMs) continue;
    const sample = deafSinceMs === null ? (liveRateOf(entry, nowMs, options) ?? 0) : 0;
    total += sample;
    workers[id] = { ...entry, history: appendBounded(entry.history, sample) };
  }
  return { ...state, workers, totalHistory: appendBounded(state.totalHistory, round1(total)) };
}

/**
 * How long the reader has listened in vain for this worker: the time since its last snapshot,
 * minus any time the reader could not hear (then, or now since `deafSinceMs`).
 */
export function heardAgeMs(entry: WorkerEntry, nowMs: number, deafSinceMs: number | null = null): number {
  const until = deafSinceMs === null ? nowMs : Math.min(nowMs, deafSinceMs);
  return Math.max(0, until - entry.receivedAtMs - (entry.deafMs ?? 0));
}

/**
 * The worker's status at `nowMs`. While the reader is deaf (`deafSinceMs`), the status is the one
 * it had when the reader stopped hearing: it cannot age on a silence that says nothing about it.
 */
export function statusOf(
  entry: WorkerEntry,
  nowMs: number,
  options: StalenessOptions = DEFAULT_STALENESS,
  deafSinceMs: number | null = null,
): WorkerStatus {
  const ageMs = heardAgeMs(entry, nowMs, deafSinceMs);
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
  /** While `unheard`, the status the worker had when the reader stopped hearing. */
  readonly status: WorkerStatus;
  /**
   * The reader's own stats subscription is down: nothing current is known of this worker (shown as
   * `?`); its rates, in-flight count and latency are null / empty like a gone worker's.
   */
  readonly unheard: boolean;
  /** Processes that ran under this id besides the current one; their counts are included below. */
  readonly restarts: number;
  readonly host: string;
  readonly pid: number;
  readonly startedAtMs: number;
  readonly lastSeenAgoMs: number;
  /** Processed tx/s over the last second, rounded to 0.1; null while stale or gone. */
  readonly ratePerS: number | null;
  /** Processed tx/s over the last 10 s, rounded to 0.1; null while stale or gone. */
  readonly rate10sPerS: number | null;
  /** Counts since start, of this process and of the earlier ones under this id (their work happened). */
  readonly applied: number;
  readonly rejected: number;
  readonly rejectedByReason: Readonly<Record<string, number>>;
  readonly retried: number;
  readonly parked: number;
  readonly duplicates: number;
  /** Length of the latency window, in seconds. */
  readonly latencyWindowS: number;
  /** End-to-end latency (created → committed) over the worker's last window; empty when gone or unheard. */
  readonly endToEndMs: LatencySummary;
  /** Processing latency (delivered → committed) over the worker's last window; empty when gone or unheard. */
  readonly processingMs: LatencySummary;
  /** Latency per hop over the worker's last window (hops it measured; none from an older worker, none when gone). */
  readonly hopsMs: Readonly<Partial<Record<Hop, LatencySummary>>>;
  /** Deliveries held now; null when gone or unheard (a number from a process that no longer runs would read as current). */
  readonly inFlight: number | null;
  readonly prefetchCount: number;
  readonly blocked: boolean;
  readonly paused: boolean;
  readonly lastError: { readonly message: string; readonly atMs: number } | null;
  readonly history: readonly number[];
  /** The worker's processing stages (`worker --stage`), in walk order; empty without. */
  readonly stages: readonly StageStats[];
}

/** An empty latency window: what a row shows for a worker whose last window no longer describes now. */
const NO_LATENCY: LatencySummary = { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };

/**
 * One row. The rule for live readings is applied here, once, for every view (TUI, --once, --json,
 * plain lines, the dashboard): rates only for active and idle workers; in-flight and latency not for
 * a gone worker, and nothing current while the reader cannot hear (`deafSinceMs`).
 */
export function rowOf(
  entry: WorkerEntry,
  nowMs: number,
  options: StalenessOptions = DEFAULT_STALENESS,
  deafSinceMs: number | null = null,
): WorkerRow {
  const s = entry.snapshot;
  const status = statusOf(entry, nowMs, options, deafSinceMs);
  const unheard = deafSinceMs !== null;
  const live = !unheard && (status === 'active' || status === 'idle');
  const current = !unheard && status !== 'gone';
  const earlierCounts = entry.earlier ? earlierCountsOf(entry.earlier) : null;
  const counts = earlierCounts ? addCounts(earlierCounts, s.counts) : s.counts;
  return {
    workerId: s.workerId,
    status,
    unheard,
    restarts: entry.earlier?.restarts ?? 0,
    host: s.host,
    pid: s.pid,
    startedAtMs: s.startedAtMs,
    lastSeenAgoMs: Math.max(0, nowMs - entry.receivedAtMs),
    ratePerS: live ? round1(s.processedPerS.last1s) : null,
    rate10sPerS: live ? round1(s.processedPerS.last10s) : null,
    applied: counts.applied,
    rejected: sum(Object.values(counts.rejected)),
    rejectedByReason: counts.rejected,
    retried: counts.retried,
    parked: counts.parked,
    duplicates: counts.duplicates,
    latencyWindowS: s.latencyMs.windowS,
    endToEndMs: current ? s.latencyMs.endToEnd : NO_LATENCY,
    processingMs: current ? s.latencyMs.processing : NO_LATENCY,
    hopsMs: current ? (s.hopsMs?.window ?? {}) : {},
    inFlight: current ? s.inFlight : null,
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
  /** The reader cannot hear the workers now (see `WorkerRow.unheard`): the rates say nothing current. */
  readonly unheard: boolean;
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
    unheard: rows.some((r) => r.unheard),
    byStatus,
    ratePerS: round1(sum(live.map((r) => r.ratePerS ?? 0))),
    rate10sPerS: round1(sum(live.map((r) => r.rate10sPerS ?? 0))),
    applied: sum(rows.map((r) => r.applied)),
    rejected: sum(rows.map((r) => r.rejected)),
    retried: sum(rows.map((r) => r.retried)),
    parked: sum(rows.map((r) => r.parked)),
    duplicates: sum(rows.map((r) => r.duplicates)),
    inFlight: sum(live.map((r) => r.inFlight ?? 0)),
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
  /** Since when the reader hears no snapshots (its subscription is down); null while it listens. */
  readonly deafSinceMs: number | null;
}

export function viewOf(
  state: StatsState,
  nowMs: number,
  sortKey: SortKey = 'id',
  options: StalenessOptions = DEFAULT_STALENESS,
): StatsView {
  const deafSinceMs = state.deafSinceMs ?? null;
  const rows = sortRows(
    Object.values(state.workers).map((e) => rowOf(e, nowMs, options, deafSinceMs)),
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
    deafSinceMs,
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
