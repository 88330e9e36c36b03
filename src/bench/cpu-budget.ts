/**
 * Where the machine's CPU went during a bench, per applied transaction: pure arithmetic on what the
 * bench sampled from /proc (per process: utime + stime; the machine: /proc/stat), unit-tested.
 */

/** The machine's CPU time counters from the first line of /proc/stat, in clock ticks. */
export interface MachineTicks {
  /** Idle and waiting for I/O: time no process wanted a core. */
  readonly idle: number;
  readonly total: number;
}

/**
 * Reads `cpu  user nice system idle iowait irq softirq steal guest guest_nice` (the first line). guest
 * and guest_nice are already counted in user and nice, so they are left out of the total. Null when
 * the text has no such line (not Linux).
 */
export function parseProcStat(text: string): MachineTicks | null {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return null;
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 4 || f.some((n) => !Number.isFinite(n))) return null;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  return { idle: idle + iowait, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

/** The share (0..1, to 3 digits) of the machine's CPU time that was idle between two readings; null without both. */
export function idleShareOf(before: MachineTicks | null, after: MachineTicks | null): number | null {
  if (!before || !after) return null;
  const total = after.total - before.total;
  if (total <= 0) return null;
  return Math.round(((after.idle - before.idle) / total) * 1000) / 1000;
}

/** CPU seconds each component used over the run; null for a component not measured here (not running, or inside another's process). */
export type ComponentCpuS = Readonly<Record<string, number | null>>;

/** µs of CPU per applied transaction per component, and their total (the sum of the components shown, so it adds up exactly). */
export interface CpuPerTx {
  readonly components: Readonly<Record<string, number | null>>;
  readonly total: number | null;
}

/**
 * µs of CPU per applied transaction: CPU seconds × 10^6 ÷ applied, to 0.1 µs. The total is the sum of
 * the rounded components, so the figures a reader adds up give the total printed. Nulls (not measured)
 * are kept and count as nothing; with no applied transaction, everything is null.
 */
export function cpuPerAppliedTx(cpuS: ComponentCpuS, applied: number): CpuPerTx {
  const components: Record<string, number | null> = {};
  let total = 0;
  let any = false;
  for (const [component, seconds] of Object.entries(cpuS)) {
    if (seconds === null || applied <= 0) {
      components[component] = null;
      continue;
    }
    const us = Math.round((seconds * 1_000_000 * 10) / applied) / 10;
    components[component] = us;
    total += us;
    any = true;
  }
  return { components, total: any ? Math.round(total * 10) / 10 : null };
}
