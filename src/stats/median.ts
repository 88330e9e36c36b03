/**
 * The middle of some figures — the lower of the two middle ones for an even count, so it is always one
 * of the figures measured, never an average of two — or 0 when there are none. The reports' "median of
 * N runs" (scripts/bench-report.mjs, scripts/ledger-shape-cost.mjs, scripts/broker-cost.mjs) and
 * `bench compare`'s median second.
 */
export function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)]! : 0;
}
