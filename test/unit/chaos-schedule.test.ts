import { describe, expect, it } from 'vitest';
import { drawSchedule, FAULT_KINDS, timeline } from '../chaos/schedule.js';

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
});
