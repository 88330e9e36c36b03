import { describe, expect, it } from 'vitest';
import { loadShapeOf } from '../../src/gen/load-flags.js';
import { parseProfile } from '../../src/gen/load-profile.js';
import { latenessText, secondText } from '../../src/gen/load-text.js';
import { instanceShare, LatenessTracker, parseInstance, SendSchedule } from '../../src/gen/send-schedule.js';
import { UsageError } from '../../src/errors.js';
import { idScopeOf } from '../../src/verify/run-account.js';
import { streamOptionsOf, type PublishRunOptions } from '../../src/gen/publish-run.js';

describe('instances: disjoint shares whose union is the run', () => {
  it.each([
    [10, 1],
    [10, 2],
    [10, 3],
    [7, 4],
    [3, 5],
  ])('count %i over %i instances', (count, n) => {
    const seen: number[] = [];
    for (let k = 1; k <= n; k++) {
      const schedule = new SendSchedule(null, count, { no: k, count: n });
      const mine = [...schedule.indices()];
      expect(mine.length).toBe(instanceShare(count, { no: k, count: n }));
      expect(mine.length).toBe(schedule.shareCount);
      seen.push(...mine);
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i));
  });

  it('--instance k/n syntax', () => {
    expect(parseInstance('2/4')).toEqual({ no: 2, count: 4 });
    for (const bad of ['0/2', '3/2', '1', 'a/b', '1/1001']) expect(parseInstance(bad)).toBeNull();
  });

  it('every instance keeps the run-wide due times, so together they follow the profile', () => {
    const profile = parseProfile('200@2s,400@2s');
    const halves = [1, 2].map((k) => new SendSchedule(profile, profile.totalCount, { no: k, count: 2 }));
    const whole = new SendSchedule(profile, profile.totalCount);
    for (let s = 0; s < 4; s++) {
      expect(whole.dueInSecond(s)).toBe(Math.round(profile.expectedPerSecond()[s]!));
      expect(halves[0]!.dueInSecond(s) + halves[1]!.dueInSecond(s)).toBe(whole.dueInSecond(s));
    }
    expect(halves[1]!.dueMs(401)).toBe(profile.dueMs(401));
  });

  it("each instance's per-second due counts its own messages in the second their due time falls in, none in a quiet step", () => {
    const profile = parseProfile('steps:7,0,0,5.5,0@1s');
    const count = profile.totalCount;
    expect(count).toBe(13);
    for (const n of [1, 2, 3]) {
      for (let k = 1; k <= n; k++) {
        const schedule = new SendSchedule(profile, count, { no: k, count: n });
        const expected = new Array<number>(5).fill(0);
        for (const i of schedule.indices()) expected[Math.floor(schedule.dueMs(i)! / 1000)]!++;
        expect(
          Array.from({ length: 5 }, (_, s) => schedule.dueInSecond(s)),
          `instance ${k}/${n}`,
        ).toEqual(expected);
        expect(expected[1]! + expected[2]! + expected[4]!).toBe(0);
      }
    }
    // Message 7 is due where the 5.5/s step begins (3 s), not at 1 s where the quiet steps begin.
    expect(profile.dueMs(7)).toBe(3000);
    // A shortened run (<count> below the profile's) counts only the messages it sends.
    expect(new SendSchedule(profile, 9).dueInSecond(3)).toBe(2);
  });
});

describe('lateness: counted, measured, dropped, per second', () => {
  const schedule = new SendSchedule(parseProfile('constant:100@3s'), 300);

  it('counts only messages later than the threshold, and how late they were', () => {
    const t = new LatenessTracker(schedule, 10, null);
    t.sent(0, 100);
    t.sent(10, 200); // exactly at the threshold: on time
    t.sent(11, 1_100);
    t.sent(500, 1_900);
    t.sent(2_000, 2_500);
    expect(t.late).toBe(3);
    const s = t.summary(3_000);
    expect(s.latenessMs.count).toBe(3);
    expect(s.latenessMs.max).toBeGreaterThanOrEqual(2_000);
    expect(s.latenessMs.p50).toBeGreaterThanOrEqual(499);
    expect(s.latenessMs.p50).toBeLessThanOrEqual(501);
    expect(s.seconds).toEqual([
      { second: 0, due: 100, published: 2, late: 0, dropped: 0, latenessMaxMs: 0 },
      { second: 1, due: 100, published: 2, late: 2, dropped: 0, latenessMaxMs: 500 },
      { second: 2, due: 100, published: 1, late: 1, dropped: 0, latenessMaxMs: 2_000 },
    ]);
    expect(s.dropped).toBe(0);
    expect(s.dropLateMs).toBeNull();
  });

  it('with --drop-late, only messages beyond it are dropped', () => {
    const t = new LatenessTracker(schedule, 10, 200);
    expect(t.shouldDrop(200)).toBe(false);
    expect(t.shouldDrop(201)).toBe(true);
    expect(new LatenessTracker(schedule, 10, null).shouldDrop(1e9)).toBe(false);
    t.droppedAt(1_500);
    expect(t.summary(2_000).seconds[1]).toMatchObject({ dropped: 1 });
  });

  it('hands out each second once, after it has passed', () => {
    const t = new LatenessTracker(schedule, 10, null);
    t.sent(0, 10);
    expect(t.takeCompleted(999)).toEqual([]);
    expect(t.takeCompleted(2_100).map((l) => [l.second, l.published])).toEqual([
      [0, 1],
      [1, 0],
    ]);
    expect(t.takeCompleted(2_900)).toEqual([]);
  });

  it('says it in words', () => {
    const t = new LatenessTracker(schedule, 10, 500);
    t.sent(100, 10);
    t.droppedAt(20);
    expect(latenessText({ ...t.summary(1000), published: 1 })).toBe(
      'late: 1 of 1 sent more than 10 ms after they were due (p50 100 ms, p99 100 ms, max 100 ms); 1 dropped (more than --drop-late 500 ms late)',
    );
    expect(latenessText({ ...new LatenessTracker(schedule, 10, null).summary(0), published: 5 })).toBe(
      'late: none of 5 sent more than 10 ms after it was due',
    );
    expect(latenessText({ ...new LatenessTracker(schedule, 10, null, 20).summary(0), published: 5 })).toBe(
      'late: none of 5 sent more than 10 ms after it was due (or their --linger 20 ms group was)',
    );
    expect(secondText({ second: 12, due: 2000, published: 1850, late: 420, dropped: 0, latenessMaxMs: 850 })).toBe(
      'gen   12 s  due 2000  sent 1850  late 420 (max 850 ms)  dropped 0',
    );
  });
});

describe('gen flags: count, pace and account choice', () => {
  it('with --profile the count is the integral unless given, and may only shorten the run', () => {
    expect(loadShapeOf({ profile: '200@2s,400@2s' }).count).toBe(800);
    expect(loadShapeOf({ profile: '200@2s,400@2s', count: '500' }).count).toBe(500);
    expect(() => loadShapeOf({ profile: '200@2s,400@2s', count: '801' })).toThrow(
      /801 is more than the profile sends \(800 messages in 4 s\)/,
    );
    expect(() => loadShapeOf({})).toThrow(/<count> is required unless --profile/);
    expect(() => loadShapeOf({ profile: '1@1s', rate: '5' })).toThrow(/--rate and --profile exclude each other/);
  });

  it('--hot-accounts is hot:<share>/<hot-set>; without it the choice is uniform; mixing both spellings is refused', () => {
    expect(loadShapeOf({ count: '1' }).accountsDist).toEqual({ kind: 'uniform' });
    expect(loadShapeOf({ count: '1', hotAccounts: '0.5' }).accountsDist).toEqual({ kind: 'hot', share: 0.5, setSize: 3 });
    expect(loadShapeOf({ count: '1', accountsDist: 'zipf:1.2' }).accountsDist).toEqual({ kind: 'zipf', exponent: 1.2 });
    expect(() => loadShapeOf({ count: '1', accountsDist: 'uniform', hotAccounts: '0.5' })).toThrow(UsageError);
  });

  it('--drop-late needs a pace; --instance is k/n', () => {
    expect(() => loadShapeOf({ count: '10', dropLate: '100' })).toThrow(/--drop-late needs a paced run/);
    expect(loadShapeOf({ count: '10', rate: '5', dropLate: '100' }).dropLateMs).toBe(100);
    expect(() => loadShapeOf({ count: '10', instance: '3/2' })).toThrow(/--instance: "3\/2" must look like k\/n/);
  });

  it('--linger is 0 unless given, needs a pace and is at most a second', () => {
    expect(loadShapeOf({ count: '10' }).lingerMs).toBe(0);
    expect(loadShapeOf({ count: '10', rate: '5', linger: '20' }).lingerMs).toBe(20);
    expect(loadShapeOf({ profile: '200@2s', linger: '20' }).lingerMs).toBe(20);
    expect(() => loadShapeOf({ count: '10', linger: '20' })).toThrow(/--linger needs a paced run/);
    expect(() => loadShapeOf({ count: '10', rate: '5', linger: '1001' })).toThrow(/--linger: 1001 must be between 0 and 1000/);
    expect(() => loadShapeOf({ count: '10', rate: '5', linger: '-1' })).toThrow(UsageError);
  });
});

describe('verify: which ids of a run are to be accounted for', () => {
  it('a single run: published + dropped ids are a prefix; the rest is unsent (finished) or maybe sent (running)', () => {
    const finished = idScopeOf({ status: 'completed', published: 8 }, [], 2);
    expect([9, 10].map(finished)).toEqual(['sent', 'unsent']);
    const running = idScopeOf({ status: 'running', published: 8 }, [], 0);
    expect([7, 8].map(running)).toEqual(['sent', 'maybe']);
  });

  it('a split run: each instance by its own prefix; an instance that has not reported is left out', () => {
    const scope = idScopeOf(
      { status: 'running', published: 0 },
      [{ instanceNo: 1, instanceCount: 2, status: 'completed', published: 3, dropped: 0 }],
      0,
    );
    // Instance 1 holds the even indices; it finished after 3 of them (0, 2, 4).
    expect([0, 2, 4, 6].map(scope)).toEqual(['sent', 'sent', 'sent', 'unsent']);
    expect([1, 3].map(scope)).toEqual(['unreported', 'unreported']);
  });
});

describe('stream options of a run (compared when a seed is re-used)', () => {
  const base: PublishRunOptions = {
    count: 100,
    seed: 's',
    ratePerS: 0,
    mix: { deposit: 1, withdrawal: 1, card_payment: 1, transfer: 0, card_authorization: 0 },
    accountIds: null,
    amountMinMinor: 100,
    amountMaxMinor: 50_000,
    accountsDist: { kind: 'uniform' },
    invalidShare: 0,
    windowMax: 1000,
    confirmTimeoutMs: 30_000,
    reconnectTimeoutMs: 60_000,
  };

  it('a uniform run compares equal to one recorded before --accounts-dist (hot share 0, hot set 3)', () => {
    expect(streamOptionsOf(base)).toMatchObject({ hotShare: 0, hotSetSize: 3, accountsDist: 'uniform', instances: 1 });
    expect(streamOptionsOf({ ...base, accountsDist: { kind: 'hot', share: 0.5, setSize: 2 } })).toMatchObject({
      hotShare: 0.5,
      hotSetSize: 2,
    });
  });

  it('the instance count is part of the stream (it decides who sends which id); the instance number and the profile are not', () => {
    const half = streamOptionsOf({ ...base, instance: { no: 1, count: 2 } });
    expect(streamOptionsOf({ ...base, instance: { no: 2, count: 2 }, profile: parseProfile('5@1s') })).toEqual(half);
    expect(streamOptionsOf({ ...base, instance: { no: 1, count: 3 } })).not.toEqual(half);
  });
});
