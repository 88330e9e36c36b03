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

/** CPU % (of one core) summed over some processes, and their total RSS, from /proc. */
export class CpuSampler {
  private lastTicks = 0;
  private lastAt = Date.now();
  private readonly startTicks: number;
  constructor(private readonly pids: readonly number[]) {
    this.lastTicks = this.ticks();
    this.startTicks = this.lastTicks;
  }

  /** It has processes to measure (the broker or the database may run on another machine). */
  get measures(): boolean {
    return this.pids.length > 0;
  }

  /** CPU seconds the processes used since this sampler was made (as of the last `sample()`). */
  cpuSecondsSinceStart(): number {
    return (this.lastTicks - this.startTicks) / 100;
  }

  /** CPU % since the last sample; RSS of all the processes together and of the largest one. */
  sample(): { cpuPct: number; rssMb: number; rssMbLargest: number } {
    const now = Date.now();
    const ticks = this.ticks();
    const cpuPct = now > this.lastAt ? Math.round(((ticks - this.lastTicks) / 100 / ((now - this.lastAt) / 1000)) * 100) : 0;
    this.lastTicks = ticks;
    this.lastAt = now;
    const rssKb = this.pids.map(rssKbOf);
    return { cpuPct, rssMb: Math.round(rssKb.reduce((a, b) => a + b, 0) / 1024), rssMbLargest: Math.round(Math.max(0, ...rssKb) / 1024) };
  }

  private ticks(): number {
    let total = 0;
    for (const pid of this.pids) {
      try {
        // Fields 14 and 15 of /proc/<pid>/stat: user and system time in clock ticks (100/s on Linux).
        const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        total += Number(fields[11]) + Number(fields[12]);
      } catch {
        // process gone or not Linux: counted as zero
      }
    }
    return total;
  }
}

/** Resident memory of one process in kB, from /proc (0 when it is gone or this is not Linux). */
function rssKbOf(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(match?.[1] ?? 0);
  } catch {
    return 0;
  }
}
