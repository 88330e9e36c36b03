import { describe, expect, it } from 'vitest';
import { CpuSampler, parseProcPidStat, type ProcReader, type ProcessTicks } from '../../src/bench/cpu-sampler.js';

/** A /proc whose processes a test starts, advances and ends, with a clock the test moves. */
class FakeProc implements ProcReader {
  readonly processes = new Map<number, ProcessTicks & { rssKb: number }>();
  nowMs = 1_000_000;

  start(pid: number, startTime = 1): void {
    this.processes.set(pid, { ticks: 0, startTime, rssKb: 100 * 1024 });
  }
  /** The process used `ticks` more clock ticks (100 a second of CPU). */
  use(pid: number, ticks: number): void {
    const p = this.processes.get(pid)!;
    this.processes.set(pid, { ...p, ticks: p.ticks + ticks });
  }
  exit(pid: number): void {
    this.processes.delete(pid);
  }
  ticksOf(pid: number): ProcessTicks | null {
    const p = this.processes.get(pid);
    return p ? { ticks: p.ticks, startTime: p.startTime } : null;
  }
  rssKbOf(pid: number): number {
    return this.processes.get(pid)?.rssKb ?? 0;
  }
}

describe('CpuSampler', () => {
  it('sums CPU % over the processes, per second of the interval measured', () => {
    const proc = new FakeProc();
    proc.start(11);
    proc.start(12);
    const sampler = new CpuSampler([11, 12], proc, () => proc.nowMs);
    proc.use(11, 50);
    proc.use(12, 30);
    proc.nowMs += 1_000;
    expect(sampler.sample()).toEqual({ cpuPct: 80, rssMb: 200, rssMbLargest: 100 });
    proc.use(11, 100);
    proc.nowMs += 2_000;
    expect(sampler.sample().cpuPct).toBe(50);
    expect(sampler.cpuSecondsSinceStart()).toBe(1.8);
  });

  it('a process that exits keeps the CPU it used: the % never goes below 0, the seconds never go down', () => {
    const proc = new FakeProc();
    proc.start(21);
    proc.start(22);
    const sampler = new CpuSampler([21, 22], proc, () => proc.nowMs);
    const seconds: number[] = [];
    const step = (ticks21: number, ticks22: number) => {
      if (proc.processes.has(21)) proc.use(21, ticks21);
      if (proc.processes.has(22)) proc.use(22, ticks22);
      proc.nowMs += 1_000;
      const s = sampler.sample();
      seconds.push(sampler.cpuSecondsSinceStart());
      return s;
    };
    step(60, 60);
    step(60, 60);
    // kill -9 of one worker: its pid disappears from /proc.
    proc.exit(22);
    const after = step(60, 0);
    expect(after.cpuPct).toBe(60); // the one left, not 60 − 120 (the 120 ticks 22 had used)
    expect(after.rssMb).toBe(100);
    expect(sampler.exited).toEqual([22]);
    step(40, 0);
    for (let i = 1; i < seconds.length; i++) expect(seconds[i]!).toBeGreaterThanOrEqual(seconds[i - 1]!);
    // 22's 1.2 s stay counted beside 21's 2.2 s.
    expect(sampler.cpuSecondsSinceStart()).toBe(3.4);
  });

  it('every process gone: 0 %, and the total stays where it was', () => {
    const proc = new FakeProc();
    proc.start(31);
    const sampler = new CpuSampler([31], proc, () => proc.nowMs);
    proc.use(31, 250);
    proc.nowMs += 1_000;
    sampler.sample();
    proc.exit(31);
    proc.nowMs += 1_000;
    expect(sampler.sample()).toEqual({ cpuPct: 0, rssMb: 0, rssMbLargest: 0 });
    expect(sampler.cpuSecondsSinceStart()).toBe(2.5);
  });

  it('a pid re-used by another process (another start time) is not counted as the one that exited', () => {
    const proc = new FakeProc();
    proc.start(41, 1_000);
    const sampler = new CpuSampler([41], proc, () => proc.nowMs);
    proc.use(41, 100);
    proc.nowMs += 1_000;
    sampler.sample();
    proc.exit(41);
    proc.start(41, 5_000); // a stranger under the same pid, already busy
    proc.use(41, 900);
    proc.nowMs += 1_000;
    expect(sampler.sample().cpuPct).toBe(0);
    expect(sampler.cpuSecondsSinceStart()).toBe(1);
  });

  it('a process already gone when the sampler is made counts as nothing', () => {
    const proc = new FakeProc();
    const sampler = new CpuSampler([51], proc, () => proc.nowMs);
    proc.nowMs += 1_000;
    expect(sampler.sample().cpuPct).toBe(0);
    expect(sampler.measures).toBe(true);
    expect(sampler.cpuSecondsSinceStart()).toBe(0);
  });
});

describe('parseProcPidStat', () => {
  it('reads utime + stime and starttime, counting fields from the last ") " (a command name may hold both)', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime …
    const line = '4242 (node) weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 11 0 987654 123456789 2000 …\n';
    expect(parseProcPidStat(line)).toEqual({ ticks: 1801, startTime: 987654 });
    expect(parseProcPidStat('not a stat line')).toBeNull();
  });
});
