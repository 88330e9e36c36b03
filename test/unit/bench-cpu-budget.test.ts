import { describe, expect, it } from 'vitest';
import { efficiencyOf } from '../../src/bench/ceiling.js';
import { cpuPerAppliedTx, idleShareOf, parseProcStat } from '../../src/bench/cpu-budget.js';

describe('bench CPU budget', () => {
  it('reads the machine line of /proc/stat: idle + iowait of user … steal (guest is already in user)', () => {
    const text = 'cpu  100 5 50 800 40 2 3 0 7 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1 2 3\n';
    expect(parseProcStat(text)).toEqual({ idle: 840, total: 1000 });
    expect(parseProcStat('intr 1 2\n')).toBeNull();
  });

  it('idle share between two readings, null without both or without time passing', () => {
    expect(idleShareOf({ idle: 840, total: 1000 }, { idle: 1010, total: 2000 })).toBe(0.17);
    expect(idleShareOf(null, { idle: 1, total: 2 })).toBeNull();
    expect(idleShareOf({ idle: 1, total: 2 }, { idle: 1, total: 2 })).toBeNull();
  });

  it('µs of CPU per applied transaction per component; the total is the sum of the components shown', () => {
    // 6,207 tx/s for 10 s at workers 51 %, broker 49 %, database 43 %, gen 23 % of a core (issue #17's run).
    const applied = 62_070;
    const r = cpuPerAppliedTx({ workers: 5.1, broker: 4.9, database: 4.3, gen: 2.3, relay: null }, applied);
    expect(r.components).toEqual({ workers: 82.2, broker: 78.9, database: 69.3, gen: 37.1, relay: null });
    expect(r.total).toBe(267.5);
    const sum = Object.values(r.components).reduce<number>((a, us) => a + (us ?? 0), 0);
    expect(Math.round(sum * 10) / 10).toBe(r.total);
    expect(cpuPerAppliedTx({ workers: 1 }, 0)).toEqual({ components: { workers: null }, total: null });
  });

  it('efficiency is end to end ÷ ceiling, null without a ceiling', () => {
    expect(efficiencyOf(6_207, 7_300)).toBe(0.85);
    expect(efficiencyOf(6_207, null)).toBeNull();
    expect(efficiencyOf(6_207, 0)).toBeNull();
  });
});
