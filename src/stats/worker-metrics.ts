import type { StageDeclineReason } from '../domain/stage-spec.js';
import { REJECT_REASONS, TRANSACTION_TYPES, type RejectReason, type TransactionType } from '../domain/transaction.js';
import { createLatencyHistogram, recordMs } from './histogram.js';
import { HopTimings } from './hops.js';
import type { StageMetrics } from './stage-metrics.js';

/**
 * What one worker has done since it started. The worker updates it; the stats publisher reads it
 * once a second. Plain counters and two histograms: cheap enough to touch on every message.
 */
export class WorkerMetrics {
  readonly startedAt = Date.now();
  applied = 0;
  /**
   * Every reason starts at 0, so a snapshot lists each one the contract knows; a stage's
   * `declined_by_<stage>` joins at its first decline (the stages are configuration, not contract).
   */
  readonly rejected = Object.fromEntries(REJECT_REASONS.map((reason) => [reason, 0])) as Record<RejectReason, number> &
    Record<StageDeclineReason, number>;
  /** The same outcomes by transaction type (`unknown`: a message too broken to have one), for Prometheus. */
  readonly outcomesByType: Record<'applied' | RejectReason, Record<TransactionType | 'unknown', number>> &
    Record<StageDeclineReason, Record<TransactionType | 'unknown', number>> = outcomeMatrix();
  /** The simulated processing stages (`--stage`); null when the worker has none. */
  stages: StageMetrics | null = null;
  retried = 0;
  parked = 0;
  duplicates = 0;
  batches = 0;
  inFlight = 0;
  blocked = false;
  paused = false;
  lastError: { message: string; at: number } | null = null;
  /** Message created → committed. */
  readonly endToEndMs = createLatencyHistogram();
  /** Delivery received → committed (queueing inside the worker included). */
  readonly processingMs = createLatencyHistogram();
  /** Latency per hop (see hops.ts); its `end_to_end` is `endToEndMs` itself. */
  readonly hops = new HopTimings({ end_to_end: this.endToEndMs });
  /** Called once per committed batch with its size (the Prometheus exporter's batch-size histogram). */
  batchListener: ((size: number) => void) | null = null;

  /** Messages that reached a final outcome (applied or rejected; duplicates excluded). */
  get processed(): number {
    return this.applied + Object.values(this.rejected).reduce((a, b) => a + b, 0);
  }

  /** Counts one final outcome: `applied`, or the reject reason. */
  recordOutcome(outcome: 'applied' | RejectReason | StageDeclineReason, type: TransactionType | undefined): void {
    if (outcome === 'applied') this.applied++;
    else this.rejected[outcome] = (this.rejected[outcome] ?? 0) + 1;
    (this.outcomesByType[outcome] ??= typeRow())[type ?? 'unknown']++;
  }

  /** A message with an outcome: `startedAtMs` is when its batch's DB transaction began. */
  recordCommitted(createdAtMs: number | null, receivedAtMs: number, startedAtMs: number, committedAtMs: number): void {
    if (createdAtMs !== null) this.hops.record('end_to_end', committedAtMs - createdAtMs);
    recordMs(this.processingMs, committedAtMs - receivedAtMs);
    this.hops.record('processing', startedAtMs - receivedAtMs);
  }

  /** A committed batch: one commit time for each of its `size` messages. */
  recordBatch(size: number, startedAtMs: number, committedAtMs: number): void {
    this.batches++;
    this.hops.record('commit', committedAtMs - startedAtMs, size);
    this.batchListener?.(size);
  }

  recordError(err: unknown): void {
    this.lastError = { message: err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200), at: Date.now() };
  }
}

function typeRow(): Record<TransactionType | 'unknown', number> {
  return Object.fromEntries([...TRANSACTION_TYPES, 'unknown'].map((t) => [t, 0])) as Record<TransactionType | 'unknown', number>;
}

function outcomeMatrix(): Record<'applied' | RejectReason, Record<TransactionType | 'unknown', number>> {
  return Object.fromEntries((['applied', ...REJECT_REASONS] as const).map((k) => [k, typeRow()])) as Record<
    'applied' | RejectReason,
    Record<TransactionType | 'unknown', number>
  >;
}
