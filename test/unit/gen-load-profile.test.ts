import { describe, expect, it } from 'vitest';
import { constantProfile, LoadProfile, parseDurationMs, parseProfile } from '../../src/gen/load-profile.js';
import { UsageError } from '../../src/errors.js';
import { SendSchedule } from '../../src/gen/send-schedule.js';

describe('load profile: k6 stages', () => {
  // Ramp 0 → 500 in 10 s, 500 → 2000 in 30 s, hold 2000 for 60 s, 2000 → 0 in 10 s.
  const p = parseProfile('500@10s,2000@30s,2000@60s,0@10s');

  it('ramps linearly from the previous stage rate', () => {
    expect(p.stages).toEqual([
      { fromPerS: 0, toPerS: 500, durationMs: 10_000 },
      { fromPerS: 500, toPerS: 2000, durationMs: 30_000 },
      { fromPerS: 2000, toPerS: 2000, durationMs: 60_000 },
      { fromPerS: 2000, toPerS: 0, durationMs: 10_000 },
    ]);
    expect(p.rateAtMs(0)).toBe(0);
    expect(p.rateAtMs(5_000)).toBe(250);
    expect(p.rateAtMs(10_000)).toBe(500);
    expect(p.rateAtMs(25_000)).toBe(1250);
    expect(p.rateAtMs(70_000)).toBe(2000);
    expect(p.rateAtMs(105_000)).toBe(1000);
    expect(p.rateAtMs(110_000)).toBe(0);
    expect(p.rateAtMs(-1)).toBe(0);
    expect(p.durationMs).toBe(110_000);
  });

  it('integrates: the count is the area under the rate', () => {
    // 0.5·500·10 + (500+2000)/2·30 + 2000·60 + 0.5·2000·10 = 2,500 + 37,500 + 120,000 + 10,000
    expect(p.integral).toBeCloseTo(170_000, 6);
    expect(p.totalCount).toBe(170_000);
    expect(p.countUntilMs(10_000)).toBeCloseTo(2_500, 9);
    expect(p.countUntilMs(5_000)).toBeCloseTo(625, 9); // 0.5·250·5
    expect(p.countUntilMs(40_000)).toBeCloseTo(40_000, 9);
    expect(p.countUntilMs(105_000)).toBeCloseTo(160_000 + 7_500, 9); // half the ramp down: (2000+1000)/2·5
    expect(p.countUntilMs(1e9)).toBeCloseTo(170_000, 6);
  });

  it('message i is due when N(t) reaches i, and the due times invert the integral', () => {
    expect(p.dueMs(0)).toBe(0);
    expect(p.dueMs(625)).toBeCloseTo(5_000, 6);
    expect(p.dueMs(2_500)).toBeCloseTo(10_000, 6);
    expect(p.dueMs(40_000)).toBeCloseTo(40_000, 6);
    expect(p.dueMs(167_500)).toBeCloseTo(105_000, 6);
    for (const i of [1, 17, 999, 2_501, 50_123, 160_001, 169_999]) expect(p.countUntilMs(p.dueMs(i))).toBeCloseTo(i, 6);
    // Non-decreasing, and inside the profile.
    let last = -1;
    for (let i = 0; i < 170_000; i += 97) {
      const t = p.dueMs(i);
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
    expect(p.dueMs(169_999)).toBeLessThan(110_000);
  });

  it('per-second expectations add up to the whole', () => {
    const small = parseProfile('200@2s,400@2s');
    expect(small.expectedPerSecond().map((n) => Math.round(n * 1e6) / 1e6)).toEqual([50, 150, 250, 350]);
    expect(small.totalCount).toBe(800);
  });
});

describe('load profile: shortcuts', () => {
  it('constant:R@D and --rate are one flat stage', () => {
    const c = parseProfile('constant:500@60s');
    expect(c.stages).toEqual([{ fromPerS: 500, toPerS: 500, durationMs: 60_000 }]);
    expect(c.totalCount).toBe(30_000);
    expect(c.dueMs(500)).toBeCloseTo(1000, 9);
    const r = constantProfile(400, 1000);
    expect(r.durationMs).toBe(2_500);
    expect(r.dueMs(1)).toBeCloseTo(2.5, 9);
    expect(r.totalCount).toBe(1000);
  });

  it('steps jump from one held rate to the next', () => {
    const s = parseProfile('steps:500,1000,2000@30s');
    expect(s.stages.map((x) => [x.fromPerS, x.toPerS, x.durationMs])).toEqual([
      [500, 500, 30_000],
      [1000, 1000, 30_000],
      [2000, 2000, 30_000],
    ]);
    expect(s.rateAtMs(29_999)).toBe(500);
    expect(s.rateAtMs(30_000)).toBe(1000);
    expect(s.totalCount).toBe(105_000);
    expect(s.dueMs(15_000)).toBeCloseTo(30_000, 6);
    expect(s.dueMs(15_001)).toBeCloseTo(30_001, 6);
  });

  it('a spike: base, peak, base; the spike length defaults to the base duration', () => {
    const s = parseProfile('spike:500,5000@10s');
    expect(s.stages.map((x) => [x.toPerS, x.durationMs])).toEqual([
      [500, 10_000],
      [5000, 10_000],
      [500, 10_000],
    ]);
    const short = parseProfile('spike:500,5000@10s/2s');
    expect(short.durationMs).toBe(22_000);
    expect(short.rateAtMs(11_000)).toBe(5000);
    expect(short.rateAtMs(12_000)).toBe(500);
    expect(short.totalCount).toBe(5_000 + 10_000 + 5_000);
  });

  it('a quiet first stage delays message 0; quiet stages in between are skipped, their boundary message waits for the next stage', () => {
    const q = new LoadProfile([
      { fromPerS: 0, toPerS: 0, durationMs: 1000 },
      { fromPerS: 100, toPerS: 100, durationMs: 1000 },
      { fromPerS: 0, toPerS: 0, durationMs: 5000 },
      { fromPerS: 100, toPerS: 100, durationMs: 1000 },
    ]);
    expect(q.dueMs(0)).toBe(1000);
    expect(q.dueMs(50)).toBeCloseTo(1500, 9);
    expect(q.dueMs(99)).toBeCloseTo(1990, 9);
    // N reaches 100 at 2 s, where the quiet stage begins: message 100 goes when the rate rises again.
    expect(q.dueMs(100)).toBe(7000);
    expect(q.dueMs(101)).toBeCloseTo(7010, 9);
    expect(q.totalCount).toBe(200);
  });

  it('durations take ms, s, m and h', () => {
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('1.5m')).toBe(90_000);
    expect(parseDurationMs('1h')).toBe(3_600_000);
  });
});

/** The stage `ms` falls in ([start, end)), or -1 past the end. */
function stageAt(p: LoadProfile, ms: number): number {
  let start = 0;
  for (const [k, stage] of p.stages.entries()) {
    if (ms >= start && ms < start + stage.durationMs) return k;
    start += stage.durationMs;
  }
  return -1;
}

describe('load profile: due times, seconds and stages agree', () => {
  const profiles: [string, LoadProfile][] = [
    ['steps:500,0,500@10s', parseProfile('steps:500,0,500@10s')],
    ['steps:0,300,0,0,700,0@2s', parseProfile('steps:0,300,0,0,700,0@2s')],
    ['steps:0.3,0,7.7@10s', parseProfile('steps:0.3,0,7.7@10s')],
    ['500@10s,0@10s,0@5s,500@10s', parseProfile('500@10s,0@10s,0@5s,500@10s')],
    ['200@2s,400@2s,0@3s', parseProfile('200@2s,400@2s,0@3s')],
    ['spike:500,5000@10s/2s', parseProfile('spike:500,5000@10s/2s')],
    ['constant:333@7s', parseProfile('constant:333@7s')],
    ['--rate 400, 1000 messages', constantProfile(400, 1000)],
    [
      'fractional stage counts around quiet stages',
      new LoadProfile([
        { fromPerS: 0.5, toPerS: 0.5, durationMs: 3000 },
        { fromPerS: 0, toPerS: 0, durationMs: 1500 },
        { fromPerS: 2.5, toPerS: 0, durationMs: 2000 },
        { fromPerS: 0, toPerS: 0, durationMs: 700 },
        { fromPerS: 0, toPerS: 9, durationMs: 1300 },
      ]),
    ],
  ];

  it.each(profiles)('%s: each message falls in the second the per-second due counts it in, never in a 0-rate stage', (_, p) => {
    const seconds = Math.ceil(p.durationMs / 1000);
    const schedule = new SendSchedule(p, p.totalCount);
    const byDueMs = new Array<number>(seconds).fill(0);
    const perStage = new Array<number>(p.stages.length).fill(0);
    let last = -Infinity;
    for (let i = 0; i < p.totalCount; i++) {
      const t = p.dueMs(i);
      expect(t, `message ${i}`).toBeGreaterThanOrEqual(last);
      last = t;
      const k = stageAt(p, t);
      expect(k, `message ${i} at ${t} ms is inside the profile`).toBeGreaterThanOrEqual(0);
      const stage = p.stages[k]!;
      expect(stage.fromPerS > 0 || stage.toPerS > 0, `message ${i} at ${t} ms is in stage ${k}, whose rate is 0`).toBe(true);
      perStage[k]!++;
      byDueMs[Math.floor(t / 1000)]!++;
    }
    const bySecond = Array.from({ length: seconds }, (_, s) => schedule.dueInSecond(s));
    expect(bySecond).toEqual(byDueMs);
    expect(bySecond.reduce((a, b) => a + b, 0)).toBe(p.totalCount);
    // Every stage holds ⌈N(end)⌉ − ⌈N(start)⌉ messages: its integral when that is whole.
    let startMs = 0;
    const whole = (n: number) => Math.ceil(n - 1e-9);
    for (const [k, stage] of p.stages.entries()) {
      expect(perStage[k], `stage ${k}`).toBe(whole(p.countUntilMs(startMs + stage.durationMs)) - whole(p.countUntilMs(startMs)));
      startMs += stage.durationMs;
    }
  });

  it('steps:500,0,500@10s: 5,000 messages in each busy stage, none in the quiet one; message 5000 at 20 s', () => {
    const p = parseProfile('steps:500,0,500@10s');
    expect(p.totalCount).toBe(10_000);
    expect(p.dueMs(4_999)).toBeCloseTo(9_998, 9);
    expect(p.dueMs(5_000)).toBe(20_000);
    expect(p.dueMs(5_001)).toBeCloseTo(20_002, 9);
    const schedule = new SendSchedule(p, p.totalCount);
    expect(Array.from({ length: 30 }, (_, s) => schedule.dueInSecond(s))).toEqual([
      ...new Array<number>(10).fill(500),
      ...new Array<number>(10).fill(0),
      ...new Array<number>(10).fill(500),
    ]);
    expect(p.firstIndexDueFrom(10_000)).toBe(5_000);
    expect(p.firstIndexDueFrom(20_000)).toBe(5_000);
    expect(p.firstIndexDueFrom(20_001)).toBe(5_001);
    expect(p.firstIndexDueFrom(1e9)).toBe(10_000);
  });
});

describe('load profile: bad syntax is a usage error naming the bad part', () => {
  it.each([
    ['', /empty/],
    ['500', /stage "500" must look like <rate>@<duration>/],
    ['500@10s,abc@5s', /rate "abc"/],
    ['500@10', /duration "10"/],
    ['500@0s', /duration "0s"/],
    ['-5@10s', /rate "-5"/],
    ['0@10s', /sends no messages/],
    ['steps:@10s', /steps:<rate>/],
    ['steps:100,x@10s', /rate "x"/],
    ['spike:500@10s', /two rates/],
    ['spike:500,5000@10s/zz', /duration "zz"/],
    ['ramp:5@1s', /"ramp:" is not a profile kind/],
    ['constant:1,2@1s', /one rate/],
    ['constant:100@25h', /longer than 24 h/],
  ])('%j', (spec, message) => {
    expect(() => parseProfile(spec)).toThrow(UsageError);
    expect(() => parseProfile(spec)).toThrow(message);
  });
});
