// hdr-histogram-js is CommonJS: its default import is the whole module.exports.
import hdr from 'hdr-histogram-js';

/** Latency histogram in whole milliseconds, 1 ms .. 1 h, 3 significant digits (HdrHistogram). */
export function createLatencyHistogram() {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: 3 });
}
export type LatencyHistogram = ReturnType<typeof createLatencyHistogram>;

export interface Percentiles {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export function percentilesOf(h: LatencyHistogram): Percentiles {
  return {
    count: h.totalCount,
    p50: h.getValueAtPercentile(50),
    p90: h.getValueAtPercentile(90),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    // The 100th percentile, not maxValue: percentiles are reported as the highest value equivalent
    // to their bucket, which can lie just above the exact maximum (p99.9 3461 > max 3460).
    max: h.getValueAtPercentile(100),
  };
}

/** Records a value clamped into the histogram's range (a clock skew must not throw). */
export function recordMs(h: LatencyHistogram, valueMs: number): void {
  h.recordValue(Math.min(3_600_000, Math.max(1, Math.round(valueMs))));
}
