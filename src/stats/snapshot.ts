/**
 * The stats snapshot a worker publishes once a second on the `<ns>.stats` fanout exchange, and its
 * JSON codec. The snapshot is a public contract between processes that may run different builds, so
 * it carries a schema tag and the decoder checks every field instead of trusting the sender: any
 * client can publish to the exchange, and one malformed message must not break `watch`.
 */

import { HOPS, type Hop } from './hops.js';

/** Value of the `schema` field and of the AMQP `type` property. Bump it for incompatible changes. */
export const SNAPSHOT_SCHEMA = 'txsim.stats.v1';

/** A decoded snapshot larger than this is refused: a real one is well under 4 KiB. */
export const SNAPSHOT_BYTES_MAX = 64 * 1024;

/** Latency percentiles in whole milliseconds over some window; zeros when `count` is 0. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /**
   * The window's HdrHistogram, compressed and base64-encoded, so a reader can merge several
   * workers' histograms into exact totals (percentiles cannot be averaged). Absent when empty.
   */
  readonly histogram?: string;
}

/** A rate measured over the last second and over the last ten seconds, in events per second. */
export interface RatePerS {
  readonly last1s: number;
  readonly last10s: number;
}

export interface SnapshotCounts {
  /** Transactions applied to the ledger since the worker started. */
  readonly applied: number;
  /** Business rejects by reason (`insufficient_funds`, …) since the worker started. */
  readonly rejected: Readonly<Record<string, number>>;
  /** Messages sent through a retry delay queue after a system error. */
  readonly retried: number;
  /** Messages parked in the dead queue after their last attempt. */
  readonly parked: number;
  /** Redeliveries recognised as already processed and ignored. */
  readonly duplicates: number;
  /** DB transactions committed (each applies up to `--batch-size` messages). */
  readonly batches: number;
}

/** One worker's state at one instant. */
export interface WorkerSnapshot {
  readonly schema: typeof SNAPSHOT_SCHEMA;
  readonly workerId: string;
  readonly pid: number;
  readonly host: string;
  readonly startedAtMs: number;
  /** A random id drawn once per process: tells a restart apart when pid and start time repeat (pid 1 in a container, a clock set back). Absent from older workers. */
  readonly instanceId?: string;
  /** Sender's clock: for display only. Staleness is judged by the receiver's clock (hosts drift). */
  readonly sentAtMs: number;
  /** Increments by one per snapshot: a gap tells the reader snapshots were lost (allowed: transient). */
  readonly seq: number;
  /** True on the last snapshot of a worker shutting down cleanly. */
  readonly stopping: boolean;
  readonly counts: SnapshotCounts;
  /** Final outcomes (applied + rejected) per second. */
  readonly processedPerS: RatePerS;
  readonly appliedPerS: RatePerS;
  /** Percentiles over the last `windowS` seconds: message created → committed, and delivery → committed. */
  readonly latencyMs: { readonly windowS: number; readonly endToEnd: LatencySummary; readonly processing: LatencySummary };
  /** Percentiles since the worker started (no histogram attached). */
  readonly latencyTotalMs: { readonly endToEnd: LatencySummary; readonly processing: LatencySummary };
  /** Deliveries held and not yet acked, against the prefetch bound. */
  readonly inFlight: number;
  readonly prefetchCount: number;
  /** The broker blocked the worker's connection (memory or disk alarm). */
  readonly blocked: boolean;
  /** The worker stopped consuming because the database is unreachable. */
  readonly paused: boolean;
  readonly lastError: { readonly message: string; readonly atMs: number } | null;
  /**
   * Latency per hop (stats/hops.ts), of the hops this worker measured (those with a count): over the
   * last `windowS` seconds with histograms, and since start (histograms only on the `stopping`
   * snapshot, which `bench` merges into exact totals). Absent from workers older than this field.
   */
  readonly hopsMs?: HopsMs;
  /**
   * The simulated processing stages of a worker run with `--stage`, in walk order; absent without
   * stages (and from workers older than this field).
   */
  readonly stages?: readonly StageStats[];
}

/** One processing stage of one worker: walks inside it now, results and times (whole ms) since start. */
export interface StageStats {
  readonly name: string;
  readonly inFlight: number;
  readonly passed: number;
  readonly declined: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** Most stages read from a snapshot (a worker has at most 16). */
const SNAPSHOT_STAGES_MAX = 16;

export interface HopsMs {
  readonly windowS: number;
  readonly window: Readonly<Partial<Record<Hop, LatencySummary>>>;
  /**
   * The values recorded since the previous snapshot sent (about one second; a tick skipped on a congested
   * socket carries over), with histograms, of the hops
   * that recorded any: `bench` merges them across workers into per-second hop latency. Absent from
   * workers older than this field.
   */
  readonly second?: Readonly<Partial<Record<Hop, LatencySummary>>>;
  readonly total: Readonly<Partial<Record<Hop, LatencySummary>>>;
}

export type DecodeSnapshotResult =
  { readonly ok: true; readonly snapshot: WorkerSnapshot } | { readonly ok: false; readonly error: string };

/** Serialises a snapshot for the wire (UTF-8 JSON). */
export function encodeSnapshot(snapshot: WorkerSnapshot): Buffer {
  return Buffer.from(JSON.stringify(snapshot), 'utf8');
}

/**
 * Parses and checks a snapshot from the wire. Unknown extra fields are ignored (a newer worker may
 * add some); missing or mistyped known fields make the whole snapshot invalid.
 */
export function decodeSnapshot(content: Buffer): DecodeSnapshotResult {
  if (content.length > SNAPSHOT_BYTES_MAX)
    return { ok: false, error: `snapshot is ${content.length} bytes, more than ${SNAPSHOT_BYTES_MAX}` };
  let raw: unknown;
  try {
    raw = JSON.parse(content.toString('utf8'));
  } catch (err) {
    return { ok: false, error: `not JSON (${(err as Error).message.slice(0, 80)})` };
  }
  try {
    return { ok: true, snapshot: readSnapshot(raw) };
  } catch (err) {
    if (err instanceof FieldError) return { ok: false, error: err.message };
    throw err;
  }
}

// ---- field readers: each throws a message naming the field --------------------------------------

class FieldError extends Error {}

function readSnapshot(raw: unknown): WorkerSnapshot {
  const o = obj(raw, 'snapshot');
  if (o.schema !== SNAPSHOT_SCHEMA) throw new FieldError(`schema is ${JSON.stringify(o.schema)}, expected ${SNAPSHOT_SCHEMA}`);
  const counts = obj(o.counts, 'counts');
  const rejectedRaw = obj(counts.rejected, 'counts.rejected');
  const rejected: Record<string, number> = {};
  for (const [reason, n] of Object.entries(rejectedRaw).slice(0, 50))
    rejected[str(reason, 'counts.rejected key', 64)] = count(n, `counts.rejected.${reason}`);
  const latency = obj(o.latencyMs, 'latencyMs');
  const latencyTotal = obj(o.latencyTotalMs, 'latencyTotalMs');
  const lastErrorRaw = o.lastError === null || o.lastError === undefined ? null : obj(o.lastError, 'lastError');
  return {
    schema: SNAPSHOT_SCHEMA,
    workerId: str(o.workerId, 'workerId', 200),
    pid: count(o.pid, 'pid'),
    host: str(o.host, 'host', 255),
    startedAtMs: count(o.startedAtMs, 'startedAtMs'),
    ...(o.instanceId === undefined ? {} : { instanceId: str(o.instanceId, 'instanceId', 64) }),
    sentAtMs: count(o.sentAtMs, 'sentAtMs'),
    seq: count(o.seq, 'seq'),
    stopping: bool(o.stopping, 'stopping'),
    counts: {
      applied: count(counts.applied, 'counts.applied'),
      rejected,
      retried: count(counts.retried, 'counts.retried'),
      parked: count(counts.parked, 'counts.parked'),
      duplicates: count(counts.duplicates, 'counts.duplicates'),
      batches: count(counts.batches, 'counts.batches'),
    },
    processedPerS: rate(o.processedPerS, 'processedPerS'),
    appliedPerS: rate(o.appliedPerS, 'appliedPerS'),
    latencyMs: {
      windowS: count(latency.windowS, 'latencyMs.windowS'),
      endToEnd: summary(latency.endToEnd, 'latencyMs.endToEnd'),
      processing: summary(latency.processing, 'latencyMs.processing'),
    },
    latencyTotalMs: {
      endToEnd: summary(latencyTotal.endToEnd, 'latencyTotalMs.endToEnd'),
      processing: summary(latencyTotal.processing, 'latencyTotalMs.processing'),
    },
    inFlight: count(o.inFlight, 'inFlight'),
    prefetchCount: count(o.prefetchCount, 'prefetchCount'),
    blocked: bool(o.blocked, 'blocked'),
    paused: bool(o.paused, 'paused'),
    lastError:
      lastErrorRaw === null
        ? null
        : { message: str(lastErrorRaw.message, 'lastError.message', 500), atMs: count(lastErrorRaw.atMs, 'lastError.atMs') },
    ...(o.hopsMs === undefined ? {} : { hopsMs: hops(o.hopsMs, 'hopsMs') }),
    ...(o.stages === undefined ? {} : { stages: stages(o.stages, 'stages') }),
  };
}

function stages(value: unknown, field: string): StageStats[] {
  if (!Array.isArray(value)) throw new FieldError(`${field} must be an array`);
  return value.slice(0, SNAPSHOT_STAGES_MAX).map((raw, i) => {
    const o = obj(raw, `${field}[${i}]`);
    return {
      name: str(o.name, `${field}[${i}].name`, 20),
      inFlight: count(o.inFlight, `${field}[${i}].inFlight`),
      passed: count(o.passed, `${field}[${i}].passed`),
      declined: count(o.declined, `${field}[${i}].declined`),
      failed: count(o.failed, `${field}[${i}].failed`),
      p50Ms: count(o.p50Ms, `${field}[${i}].p50Ms`),
      p99Ms: count(o.p99Ms, `${field}[${i}].p99Ms`),
    };
  });
}

function hops(value: unknown, field: string): HopsMs {
  const o = obj(value, field);
  const byHop = (raw: unknown, name: string): Partial<Record<Hop, LatencySummary>> => {
    const h = obj(raw, name);
    const out: Partial<Record<Hop, LatencySummary>> = {};
    // Hops this build does not know (a newer worker's) are ignored.
    for (const hop of HOPS) if (h[hop] !== undefined) out[hop] = summary(h[hop], `${name}.${hop}`);
    return out;
  };
  return {
    windowS: count(o.windowS, `${field}.windowS`),
    window: byHop(o.window, `${field}.window`),
    ...(o.second === undefined ? {} : { second: byHop(o.second, `${field}.second`) }),
    total: byHop(o.total, `${field}.total`),
  };
}

function obj(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FieldError(`${field} must be an object`);
  return value as Record<string, unknown>;
}

function str(value: unknown, field: string, lengthMax: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > lengthMax)
    throw new FieldError(`${field} must be a string of 1..${lengthMax} characters`);
  return value;
}

function bool(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new FieldError(`${field} must be a boolean`);
  return value;
}

/** A non-negative finite number (counts, timestamps, milliseconds). */
function count(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new FieldError(`${field} must be a number ≥ 0`);
  return value;
}

function rate(value: unknown, field: string): RatePerS {
  const o = obj(value, field);
  return { last1s: count(o.last1s, `${field}.last1s`), last10s: count(o.last10s, `${field}.last10s`) };
}

function summary(value: unknown, field: string): LatencySummary {
  const o = obj(value, field);
  const base = {
    count: count(o.count, `${field}.count`),
    p50: count(o.p50, `${field}.p50`),
    p90: count(o.p90, `${field}.p90`),
    p99: count(o.p99, `${field}.p99`),
    max: count(o.max, `${field}.max`),
  };
  if (o.histogram === undefined) return base;
  return { ...base, histogram: str(o.histogram, `${field}.histogram`, 32 * 1024) };
}
