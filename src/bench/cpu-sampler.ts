import { readdirSync, readFileSync } from 'node:fs';
import { parseProcStat, type MachineTicks } from './cpu-budget.js';

/** Sampling CPU and memory from /proc: of processes (by pid or name) and of the whole machine. */

/** Pids of local processes with one of these names (the broker's and the database's, when they run here). */
export function pidsNamed(names: readonly string[]): number[] {
  const pids: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (names.includes(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) pids.push(Number(entry));
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // no /proc (not Linux): nothing to sample
  }
  return pids;
}

/** The machine's CPU counters now, or null without /proc/stat. */
export function readMachineTicks(): MachineTicks | null {
  try {
    return parseProcStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return null;
  }
}

/** What one process's /proc/<pid>/stat says of its CPU use. */
export interface ProcessTicks {
  /** utime + stime, in clock ticks (100/s on Linux). */
  readonly ticks: number;
  /** When it started (ticks since boot): with the pid, which process this is — a pid can be re-used once its process exited. */
  readonly startTime: number;
}

/** Where a CpuSampler reads a process's counters: /proc by default, a fake in unit tests. */
export interface ProcReader {
  /** The process's CPU ticks and start time, or null when there is no such process (it exited, or this is not Linux). */
  ticksOf(pid: number): ProcessTicks | null;
  /** Its resident memory in kB; 0 when it is gone. */
  rssKbOf(pid: number): number;
}

/** The real /proc. */
export const PROC_FS: ProcReader = {
  ticksOf(pid) {
    try {
      return parseProcPidStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return null;
    }
  },
  rssKbOf(pid) {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return Number(match?.[1] ?? 0);
    } catch {
      return 0;
    }
  },
};

/**
 * utime + stime (fields 14 and 15) and starttime (field 22) of a /proc/<pid>/stat line; null when the
 * text is not one. The command name (field 2) is in parentheses and may hold spaces or parentheses
 * itself, so the fields are counted from the last `) `.
 */
export function parseProcPidStat(text: string): ProcessTicks | null {
  const at = text.lastIndexOf(') ');
  if (at < 0) return null;
  // fields[0] is field 3 (state).
  const fields = text.slice(at + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const startTime = Number(fields[19]);
  return Number.isFinite(ticks) && Number.isFinite(startTime) ? { ticks, startTime } : null;
}

/**
 * CPU % (of one core) summed over some processes, and their total RSS, from /proc.
 *
 * A process that exits keeps the CPU it used: its last reading is remembered and counted from then on,
 * so the totals never go down (an exited pid read as 0 once made a bench's workers read −119 %). A pid
 * whose start time changed is a new process that re-used it, and is not counted.
 */
export class CpuSampler {
  /** The last reading of each pid still running; an exited pid's is frozen in `exitedTicks`. */
  private readonly lastOf = new Map<number, ProcessTicks>();
  private exitedTicks = 0;
  private readonly exitedPids = new Set<number>();
  private lastTicks = 0;
  private lastAt: number;
  private readonly startTicks: number;

  constructor(
    private readonly pids: readonly number[],
    private readonly proc: ProcReader = PROC_FS,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.lastAt = nowMs();
    this.lastTicks = this.ticks();
    this.startTicks = this.lastTicks;
  }

  /** It has processes to measure (the broker or the database may run on another machine). */
  get measures(): boolean {
    return this.pids.length > 0;
  }

  /** Pids found gone (or re-used by another process) since this sampler was made, as of the last reading. */
  get exited(): readonly number[] {
    return [...this.exitedPids];
  }

  /** CPU seconds the processes used since this sampler was made (as of the last `sample()`); never decreases. */
  cpuSecondsSinceStart(): number {
    return (this.lastTicks - this.startTicks) / 100;
  }

  /** CPU % since the last sample (never below 0); RSS of all the processes together and of the largest one. */
  sample(): { cpuPct: number; rssMb: number; rssMbLargest: number } {
    const now = this.nowMs();
    const ticks = this.ticks();
    const cpuPct = now > this.lastAt ? Math.round(((ticks - this.lastTicks) / 100 / ((now - this.lastAt) / 1000)) * 100) : 0;
    this.lastTicks = ticks;
    this.lastAt = now;
    const rssKb = this.pids.map((pid) => (this.exitedPids.has(pid) ? 0 : this.proc.rssKbOf(pid)));
    return { cpuPct, rssMb: Math.round(rssKb.reduce((a, b) => a + b, 0) / 1024), rssMbLargest: Math.round(Math.max(0, ...rssKb) / 1024) };
  }

  /** Ticks of every process so far: the running ones' now, plus what the exited ones had used when last seen. */
  private ticks(): number {
    let total = this.exitedTicks;
    for (const pid of this.pids) {
      if (this.exitedPids.has(pid)) continue;
      const now = this.proc.ticksOf(pid);
      const last = this.lastOf.get(pid);
      if (now === null || (last !== undefined && now.startTime !== last.startTime)) {
        // Gone (or another process under its pid): what it used up to its last reading stays counted.
        this.exitedPids.add(pid);
        this.lastOf.delete(pid);
        this.exitedTicks += last?.ticks ?? 0;
        total += last?.ticks ?? 0;
        continue;
      }
      // A process's own counters only grow; the max guards the sum against a misread.
      const ticks = Math.max(now.ticks, last?.ticks ?? 0);
      this.lastOf.set(pid, { ticks, startTime: now.startTime });
      total += ticks;
    }
    return total;
  }
}
