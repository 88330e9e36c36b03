import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  chaosBudget,
  chaosSettings,
  drawSchedule,
  FAULT_KINDS,
  GEN_REFUSING_LIMIT_MS,
  genExitAction,
  MAX_DURATION_S,
  MIN_DURATION_S,
  prerequisiteProblem,
  timeline,
  workerId,
} from '../chaos/schedule.js';

describe('chaos schedule', () => {
  it('the same seed draws the same schedule; another seed another one', () => {
    expect(drawSchedule(7, 120)).toEqual(drawSchedule(7, 120));
    expect(timeline(drawSchedule(7, 120))).not.toEqual(timeline(drawSchedule(8, 120)));
  });

  it('keeps faults inside the run, never overlaps two faults of one service, and sorts by start', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const schedule = drawSchedule(seed, 120);
      expect(schedule.length).toBeGreaterThan(0);
      const busyUntil = new Map<string, number>();
      let previousAtS = 0;
      for (const fault of schedule) {
        expect(fault.atS).toBeGreaterThanOrEqual(previousAtS);
        previousAtS = fault.atS;
        expect(fault.atS).toBeGreaterThanOrEqual(3);
        expect(fault.atS + fault.forS).toBeLessThanOrEqual(115);
        const target = FAULT_KINDS[fault.kind];
        // Tenths of a second: allow for float noise in the sums.
        expect(fault.atS).toBeGreaterThanOrEqual((busyUntil.get(target) ?? -Infinity) + 1 - 1e-9);
        busyUntil.set(target, fault.atS + fault.forS);
      }
    }
  });

  it('draws every kind of fault over enough seeds, and overlaps faults of different services', () => {
    const kinds = new Set<string>();
    let overlapping = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const schedule = drawSchedule(seed, 120);
      for (const f of schedule) kinds.add(f.kind);
      for (let i = 1; i < schedule.length; i++) if (schedule[i]!.atS < schedule[i - 1]!.atS + schedule[i - 1]!.forS) overlapping++;
    }
    expect([...kinds].sort()).toEqual(Object.keys(FAULT_KINDS).sort());
    expect(overlapping).toBeGreaterThan(0);
  });

  it('names a killed worker by the id it is looked up by (w1..w3), in the timeline too', () => {
    const kills = Array.from({ length: 50 }, (_, i) => drawSchedule(i + 1, 120))
      .flat()
      .filter((f) => f.kind === 'worker-kill');
    expect(new Set(kills.map(workerId))).toEqual(new Set(['w1', 'w2', 'w3']));
    const kill = kills.find((f) => f.worker === 1)!;
    expect(timeline([kill])).toMatch(/worker-kill +for \d+\.\ds \(worker w2\)$/);
  });
});

describe('chaos run settings and prerequisites', () => {
  it('is asked for exactly when CHAOS_SEED is set, and takes whole seeds and durations within the cap', () => {
    expect(chaosSettings({})).toEqual({ asked: false, seed: 1, durationS: 120, problem: null });
    expect(chaosSettings({ CHAOS_SEED: '7', CHAOS_DURATION_S: '45' })).toEqual({ asked: true, seed: 7, durationS: 45, problem: null });
    expect(chaosSettings({ CHAOS_SEED: '7', CHAOS_DURATION_S: String(MAX_DURATION_S) }).problem).toBeNull();
    expect(chaosSettings({ CHAOS_SEED: '7', CHAOS_DURATION_S: String(MAX_DURATION_S + 1) }).problem).toBe(
      `CHAOS_DURATION_S must be ${MIN_DURATION_S}..${MAX_DURATION_S} seconds, not "${MAX_DURATION_S + 1}"`,
    );
    expect(chaosSettings({ CHAOS_SEED: '7', CHAOS_DURATION_S: '19' }).problem).toMatch(/^CHAOS_DURATION_S must be/);
    expect(chaosSettings({ CHAOS_SEED: 'x' })).toMatchObject({ asked: true, problem: 'CHAOS_SEED must be a whole number, not "x"' });
    expect(chaosSettings({ CHAOS_SEED: '' }).problem).toMatch(/^CHAOS_SEED/);
  });

  it('says in one line what is missing: root, tools, or both', () => {
    expect(prerequisiteProblem(0, [])).toBeNull();
    const notRoot = prerequisiteProblem(1000, []);
    expect(notRoot).toMatch(/needs root \(running as uid 1000\): cannot run it here$/);
    expect(prerequisiteProblem(0, ['rabbitmqctl', 'mariadb-admin'])).toMatch(/needs rabbitmqctl, mariadb-admin on PATH:/);
    const both = prerequisiteProblem(undefined, ['pidof'])!;
    expect(both).toMatch(/needs root \(running as uid unknown\) and pidof on PATH:/);
    expect(both).not.toContain('\n');
  });

  it('scripts/chaos.sh refuses the same durations as the test', () => {
    const script = readFileSync(new URL('../../scripts/chaos.sh', import.meta.url), 'utf8');
    expect(script).toContain(`duration >= ${MIN_DURATION_S} && duration <= ${MAX_DURATION_S}`);
  });
});

describe('chaos run time budget', () => {
  it('gives every allowed duration room for a gen restarted at the end, and keeps the longest run under 45 minutes', () => {
    for (const durationS of [MIN_DURATION_S, 45, 120, 300, MAX_DURATION_S]) {
      const b = chaosBudget(durationS);
      // One gen attempt: paced over the whole run, and stalled while the broker or database is down.
      expect(b.genAttemptMs).toBeGreaterThanOrEqual(2 * durationS * 1000);
      // After the schedule: gen killed at the last moment publishes everything again.
      expect(b.genDrainMs).toBeGreaterThan(durationS * 1000);
      // The test holds the schedule, that drain, and verify's 180 s.
      expect(b.testMs).toBeGreaterThan(durationS * 1000 + b.genDrainMs + 180_000);
    }
    expect(chaosBudget(MAX_DURATION_S).testMs).toBeLessThanOrEqual(45 * 60_000);
  });
});

describe('when the chaos run starts gen again', () => {
  const exit = { code: null, signal: null, killedBySchedule: false, refusingForMs: 0 };

  it('after its own kill -9, and after exit 3 (a service unreachable) while an outage may last', () => {
    expect(genExitAction({ ...exit, code: 0 })).toBe('finished');
    expect(genExitAction({ ...exit, signal: 'SIGKILL', killedBySchedule: true })).toBe('restart');
    expect(genExitAction({ ...exit, code: 3 })).toBe('restart');
    expect(genExitAction({ ...exit, code: 3, refusingForMs: GEN_REFUSING_LIMIT_MS })).toBe('restart');
  });

  it('never after a real failure: usage, publish incomplete, a crash, a kill it did not do, refusing too long', () => {
    for (const code of [1, 2, 4, 6, 130]) expect(genExitAction({ ...exit, code })).toBe('fail');
    expect(genExitAction({ ...exit, signal: 'SIGKILL' })).toBe('fail');
    expect(genExitAction({ ...exit, signal: 'SIGTERM', killedBySchedule: true })).toBe('fail');
    expect(genExitAction({ ...exit, code: 3, refusingForMs: GEN_REFUSING_LIMIT_MS + 1 })).toBe('fail');
    // Finished just as the schedule's kill came: finished.
    expect(genExitAction({ ...exit, code: 0, killedBySchedule: true })).toBe('finished');
  });
});
