/** Rates from sampled counters, shared by the stats publisher (per worker) and watch (across workers). */

export interface CounterSample {
  readonly atMs: number;
  readonly count: number;
}

/**
 * Events per second over roughly the last `windowMs`: from the sample taken closest to
 * `windowMs` before the newest one (timers drift, so "exactly 1 s ago" rarely exists) to the newest.
 * With less history than the window (a worker just started) it uses what there is.
 */
export function ratePerS(samples: readonly CounterSample[], windowMs: number): number {
  const newest = samples[samples.length - 1];
  if (!newest || samples.length < 2) return 0;
  const target = newest.atMs - windowMs;
  let base = samples[0]!;
  for (const s of samples.slice(0, -1)) if (Math.abs(s.atMs - target) < Math.abs(base.atMs - target)) base = s;
  const elapsedMs = newest.atMs - base.atMs;
  if (elapsedMs <= 0) return 0;
  return Math.max(0, ((newest.count - base.count) * 1000) / elapsedMs);
}

export function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
