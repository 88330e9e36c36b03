import { REJECT_REASONS, type RejectReason } from '../domain/transaction.js';
import { createLatencyHistogram, recordMs } from './histogram.js';

/**
 * What one worker has done since it started. The worker updates it; the stats publisher reads it
 * once a second. Plain counters and two histograms: cheap enough to touch on every message.
 */
export class WorkerMetrics {
  readonly startedAt = Date.now();
  applied = 0;
  /** Every reason starts at 0, so a snapshot lists each one the contract knows. */
  readonly rejected = Object.fromEntries(REJECT_REASONS.map((reason) => [reason, 0])) as Record<RejectReason, number>;
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

  /** Messages that reached a final outcome (applied or rejected; duplicates excluded). */
  get processed(): number {
    return this.applied + Object.values(this.rejected).reduce((a, b) => a + b, 0);
  }

  recordCommitted(createdAtMs: number | null, receivedAtMs: number, committedAtMs: number): void {
    if (createdAtMs !== null) recordMs(this.endToEndMs, committedAtMs - createdAtMs);
    recordMs(this.processingMs, committedAtMs - receivedAtMs);
  }

  recordError(err: unknown): void {
    this.lastError = { message: err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200), at: Date.now() };
  }
}
