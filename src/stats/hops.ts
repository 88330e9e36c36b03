import { createLatencyHistogram, recordMs, type LatencyHistogram } from './histogram.js';

/**
 * The hops a transaction passes through, in the order it passes them. Each is measured by the
 * process that sees its end, from a time the message carries or the process noted itself:
 *
 * | hop          | from → to                                   | measured by | from where                                  |
 * |--------------|---------------------------------------------|-------------|---------------------------------------------|
 * | `queue_wait` | gen published → worker got the delivery     | worker      | header `x-txsim-published-at` (ms), 1st attempt only |
 * | `processing` | delivery → its batch's DB transaction began | worker      | the worker's own clock (batching wait included) |
 * | `commit`     | DB transaction began → committed            | worker      | the worker's own clock, once per batch × its size |
 * | `ack`        | committed → acked (rejects: after the errors-queue confirm) | worker | the worker's own clock          |
 * | `relay`      | outcome recorded → accounting event confirmed by the broker | relay (in the worker) | outbox row's `created_at` |
 * | `statement`  | relayed → statement line committed          | accounting  | header `x-txsim-relayed-at` (ms)             |
 * | `end_to_end` | message created → committed                 | worker      | the body's `createdAt`                       |
 *
 * Hops measured across processes (`queue_wait`, `relay`, `statement`, `end_to_end`) compare two
 * hosts' clocks: on several machines they are as good as the clocks' sync.
 */
export const HOPS = ['queue_wait', 'processing', 'commit', 'ack', 'relay', 'statement', 'end_to_end'] as const;
export type Hop = (typeof HOPS)[number];

/** Called for every recorded value (the Prometheus exporter subscribes here); `count` values of `ms` each. */
export type HopListener = (hop: Hop, ms: number, count: number) => void;

/**
 * One HdrHistogram per hop, in whole milliseconds, since the process started. Recording is a bounds
 * check and an array increment: cheap enough for every message of a worker doing thousands a second.
 * Histograms of hops a process never sees simply stay empty.
 */
export class HopTimings {
  readonly histograms: Readonly<Record<Hop, LatencyHistogram>>;
  /** At most one listener: the exporter of this process (none unless `--metrics-port`). */
  listener: HopListener | null = null;

  /** `shared` lets an existing histogram (a worker's end-to-end one) serve as a hop's. */
  constructor(shared: Partial<Record<Hop, LatencyHistogram>> = {}) {
    const histograms = {} as Record<Hop, LatencyHistogram>;
    for (const hop of HOPS) histograms[hop] = shared[hop] ?? createLatencyHistogram();
    this.histograms = histograms;
  }

  /** Records `count` values of `ms` (a batch's commit is one time for all its messages). */
  record(hop: Hop, ms: number, count = 1): void {
    const h = this.histograms[hop];
    if (count === 1) recordMs(h, ms);
    else h.recordValueWithCount(Math.min(3_600_000, Math.max(1, Math.round(ms))), count);
    this.listener?.(hop, ms, count);
  }
}
