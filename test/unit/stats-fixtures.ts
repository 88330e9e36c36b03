import { SNAPSHOT_SCHEMA, type LatencySummary, type WorkerSnapshot } from '../../src/stats/snapshot.js';

/** Test data shared by the stats and UI unit tests: a valid snapshot with overridable fields. */

export const NO_LATENCY: LatencySummary = { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };

export function latency(p50: number, p99: number, count = 100): LatencySummary {
  return { count, p50, p90: Math.round((p50 + p99) / 2), p99, max: p99 * 2 };
}

export type SnapshotOverrides = Partial<Omit<WorkerSnapshot, 'counts'>> & { counts?: Partial<WorkerSnapshot['counts']>; rate?: number };

/** A snapshot of an active worker; `rate` sets both processed rates. */
export function snapshot(workerId: string, o: SnapshotOverrides = {}): WorkerSnapshot {
  const rate = o.rate ?? 10;
  const { counts, rate: _rate, ...rest } = o;
  return {
    schema: SNAPSHOT_SCHEMA,
    workerId,
    pid: 1000 + workerId.length,
    host: 'host-a',
    startedAtMs: 1_000,
    sentAtMs: 100_000,
    seq: 1,
    stopping: false,
    counts: {
      applied: 100,
      rejected: { insufficient_funds: 3, unknown_account: 1 },
      retried: 2,
      parked: 0,
      duplicates: 1,
      batches: 10,
      ...counts,
    },
    processedPerS: { last1s: rate, last10s: rate },
    appliedPerS: { last1s: rate, last10s: rate },
    latencyMs: { windowS: 10, endToEnd: latency(12, 40), processing: latency(3, 9) },
    latencyTotalMs: { endToEnd: latency(12, 40), processing: latency(3, 9) },
    inFlight: 5,
    prefetchCount: 200,
    blocked: false,
    paused: false,
    lastError: null,
    ...rest,
  };
}
