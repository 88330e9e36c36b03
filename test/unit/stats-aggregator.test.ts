import hdr from 'hdr-histogram-js';
import { describe, expect, it } from 'vitest';
import { ratePerS } from '../../src/stats/rates.js';
import {
  DEFAULT_STALENESS,
  emptyStats,
  HISTORY_LENGTH_MAX,
  mergeLatency,
  nextSortKey,
  receiveInvalid,
  receiveSnapshot,
  rowOf,
  sortRows,
  SORT_KEYS,
  statusOf,
  tick,
  topRejectReasons,
  totalsOf,
  viewOf,
  type SortKey,
  type StatsState,
} from '../../src/watch/stats-aggregator.js';
import type { LatencySummary } from '../../src/stats/snapshot.js';
import { latency, NO_LATENCY, snapshot } from './stats-fixtures.js';

function withWorkers(...entries: [ReturnType<typeof snapshot>, number][]): StatsState {
  return entries.reduce((state, [s, at]) => receiveSnapshot(state, s, at), emptyStats());
}

describe('ratePerS', () => {
  it('is the counter delta over the sample closest to the window, per second', () => {
    const samples = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => ({ atMs: i * 1000, count: i * i * 10 }));
    // Last second: (1000 − 810) / 1 s. Last ten: the sample closest to t − 10 s is t = 0, so 1000 / 10 s.
    expect(ratePerS(samples, 1_000)).toBe(190);
    expect(ratePerS(samples, 10_000)).toBe(100);
  });

  it('tolerates timer drift: the sample 997 ms back counts as "one second ago"', () => {
    const samples = [
      { atMs: 0, count: 0 },
      { atMs: 1_003, count: 50 },
      { atMs: 2_000, count: 100 },
    ];
    expect(ratePerS(samples, 1_000)).toBeCloseTo(50 / 0.997, 5);
  });

  it('uses what history there is when shorter than the window, and is 0 without two samples', () => {
    expect(
      ratePerS(
        [
          { atMs: 0, count: 0 },
          { atMs: 2_000, count: 40 },
        ],
        10_000,
      ),
    ).toBe(20);
    expect(ratePerS([{ atMs: 0, count: 5 }], 1_000)).toBe(0);
    expect(ratePerS([], 1_000)).toBe(0);
  });

  it('never goes negative (a restarted counter)', () => {
    expect(
      ratePerS(
        [
          { atMs: 0, count: 100 },
          { atMs: 1_000, count: 3 },
        ],
        1_000,
      ),
    ).toBe(0);
  });
});

describe('staleness', () => {
  const entry = (o: Parameters<typeof snapshot>[1], receivedAtMs: number) => ({ snapshot: snapshot('w1', o), receivedAtMs, history: [] });

  it('active while reporting with traffic, idle without, stale after 3 s, gone after 15 s', () => {
    expect(statusOf(entry({ rate: 5 }, 10_000), 10_500)).toBe('active');
    expect(statusOf(entry({ rate: 0, inFlight: 0 }, 10_000), 10_500)).toBe('idle');
    expect(statusOf(entry({ rate: 0, inFlight: 3 }, 10_000), 10_500)).toBe('active');
    expect(statusOf(entry({ rate: 5 }, 10_000), 10_000 + DEFAULT_STALENESS.staleAfterMs)).toBe('active');
    expect(statusOf(entry({ rate: 5 }, 10_000), 10_001 + DEFAULT_STALENESS.staleAfterMs)).toBe('stale');
    expect(statusOf(entry({ rate: 5 }, 10_000), 10_001 + DEFAULT_STALENESS.goneAfterMs)).toBe('gone');
  });

  it('a worker that said goodbye is gone at once', () => {
    expect(statusOf(entry({ stopping: true }, 10_000), 10_000)).toBe('gone');
  });

  it('judges age by the receiver clock, whatever the sender clock says', () => {
    expect(statusOf(entry({ sentAtMs: 1 }, 10_000), 10_500)).toBe('active');
  });

  it('honours custom thresholds', () => {
    const options = { staleAfterMs: 100, goneAfterMs: 200, forgetAfterMs: 1_000 };
    expect(statusOf(entry({}, 0), 150, options)).toBe('stale');
    expect(statusOf(entry({}, 0), 250, options)).toBe('gone');
  });

  it('stale and gone rows show no rate, and the totals leave them out', () => {
    const state = withWorkers(
      [snapshot('w1', { rate: 10 }), 10_000],
      [snapshot('w2', { rate: 7 }), 5_000],
      [snapshot('w3', { rate: 3 }), 1_000],
    );
    const view = viewOf(state, 10_100);
    expect(view.rows.map((r) => [r.workerId, r.status, r.ratePerS])).toEqual([
      ['w1', 'active', 10],
      ['w2', 'stale', null],
      ['w3', 'stale', null],
    ]);
    expect(viewOf(state, 20_100).rows.map((r) => r.status)).toEqual(['stale', 'gone', 'gone']);
    expect(view.totals.ratePerS).toBe(10);
    expect(view.totals.byStatus).toEqual({ active: 1, idle: 0, stale: 2, gone: 0 });
  });
});

describe('receiveSnapshot', () => {
  it('keeps the newest snapshot per worker and ignores an older one from the same process', () => {
    let state = receiveSnapshot(emptyStats(), snapshot('w1', { seq: 5, counts: { applied: 50 } }), 1_000);
    state = receiveSnapshot(state, snapshot('w1', { seq: 4, counts: { applied: 40 } }), 1_100);
    expect(state.workers.w1?.snapshot.counts.applied).toBe(50);
    expect(state.workers.w1?.receivedAtMs).toBe(1_000);
  });

  it('a restarted worker (new pid) replaces the old row even with a lower seq, keeping the history', () => {
    let state = receiveSnapshot(emptyStats(), snapshot('w1', { seq: 500, pid: 1 }), 1_000);
    state = tick(state, 1_000);
    state = receiveSnapshot(state, snapshot('w1', { seq: 1, pid: 2, counts: { applied: 0 } }), 2_000);
    expect(state.workers.w1?.snapshot.pid).toBe(2);
    expect(state.workers.w1?.history).toHaveLength(1);
  });

  it('counts invalid messages', () => {
    expect(receiveInvalid(receiveInvalid(emptyStats())).invalidCount).toBe(2);
  });
});

describe('tick', () => {
  it('appends one sample per worker and the total, 0 for stale workers', () => {
    let state = withWorkers([snapshot('w1', { rate: 4 }), 1_000], [snapshot('w2', { rate: 6 }), 1_000]);
    state = tick(state, 1_500);
    state = receiveSnapshot(state, snapshot('w1', { rate: 5, seq: 2 }), 5_000);
    state = tick(state, 5_200); // w2 last reported 4.2 s ago: stale
    expect(state.workers.w1?.history).toEqual([4, 5]);
    expect(state.workers.w2?.history).toEqual([6, 0]);
    expect(state.totalHistory).toEqual([10, 5]);
  });

  it('keeps at most HISTORY_LENGTH_MAX samples', () => {
    let state = withWorkers([snapshot('w1'), 0]);
    for (let i = 0; i < HISTORY_LENGTH_MAX + 30; i++) state = tick(state, 100);
    expect(state.workers.w1?.history).toHaveLength(HISTORY_LENGTH_MAX);
    expect(state.totalHistory).toHaveLength(HISTORY_LENGTH_MAX);
  });

  it('forgets a worker long gone', () => {
    const state = tick(withWorkers([snapshot('w1'), 0], [snapshot('w2'), 250_000]), 301_000);
    expect(Object.keys(state.workers)).toEqual(['w2']);
  });
});

describe('totals', () => {
  it('rates add up to exactly the total shown; counts include stale and gone workers', () => {
    const state = withWorkers(
      [snapshot('w1', { rate: 33.33, counts: { applied: 10 } }), 10_000],
      [snapshot('w2', { rate: 33.33, counts: { applied: 20 } }), 10_000],
      [snapshot('w3', { rate: 33.36, counts: { applied: 30 } }), 10_000],
      [snapshot('w4', { rate: 99, counts: { applied: 40, rejected: { insufficient_funds: 5 } } }), 1_000],
    );
    const { rows, totals } = viewOf(state, 10_200);
    const shownRates = rows.map((r) => r.ratePerS ?? 0);
    expect(shownRates).toEqual([33.3, 33.3, 33.4, 0]);
    expect(totals.ratePerS).toBe(100);
    expect(totals.applied).toBe(100);
    expect(totals.rejected).toBe(4 + 4 + 4 + 5);
    expect(totals.retried).toBe(8);
    expect(totals.workers).toBe(4);
  });

  it('top reject reasons sum over workers, most frequent first', () => {
    const state = withWorkers(
      [snapshot('w1', { counts: { rejected: { insufficient_funds: 2, unknown_account: 5, invalid_message: 0 } } }), 0],
      [snapshot('w2', { counts: { rejected: { insufficient_funds: 4, currency_mismatch: 1 } } }), 0],
    );
    const rows = Object.values(state.workers).map((e) => rowOf(e, 0));
    expect(topRejectReasons(rows)).toEqual([
      { reason: 'insufficient_funds', count: 6 },
      { reason: 'unknown_account', count: 5 },
      { reason: 'currency_mismatch', count: 1 },
    ]);
    expect(topRejectReasons(rows, 1)).toHaveLength(1);
  });
});

describe('sorting', () => {
  const state = withWorkers(
    [
      snapshot('w10', { rate: 5, counts: { applied: 300 }, latencyMs: { windowS: 10, endToEnd: latency(5, 90), processing: NO_LATENCY } }),
      10_000,
    ],
    [snapshot('w2', { rate: 20, counts: { applied: 100, rejected: { insufficient_funds: 9 } } }), 10_000],
    [snapshot('w1', { rate: 0, inFlight: 0, counts: { applied: 200 } }), 10_000],
    [snapshot('w3', { rate: 50 }), 1_000],
  );
  const rows = Object.values(state.workers).map((e) => rowOf(e, 10_100));
  const ids = (key: Parameters<typeof sortRows>[1]) => sortRows(rows, key).map((r) => r.workerId);

  it('by id in natural order (w2 before w10)', () => expect(ids('id')).toEqual(['w1', 'w2', 'w3', 'w10']));
  it('by rate, stale rows (no rate) last', () => expect(ids('rate')).toEqual(['w2', 'w10', 'w1', 'w3']));
  it('by applied', () => expect(ids('applied')).toEqual(['w10', 'w1', 'w2', 'w3']));
  it('by rejected, ties by id', () => expect(ids('rejected')).toEqual(['w2', 'w1', 'w3', 'w10']));
  it('by p99, slowest first', () => expect(ids('p99')).toEqual(['w10', 'w1', 'w2', 'w3']));
  it('by status: active, idle, stale, gone', () => expect(ids('status')).toEqual(['w2', 'w10', 'w1', 'w3']));
  it('s cycles through every key and back', () => {
    let key: SortKey = SORT_KEYS[0];
    const seen: SortKey[] = [key];
    for (let i = 1; i < SORT_KEYS.length; i++) seen.push((key = nextSortKey(key)));
    expect(seen).toEqual([...SORT_KEYS]);
    expect(nextSortKey(key)).toBe(SORT_KEYS[0]);
  });
});

describe('mergeLatency', () => {
  function summaryOf(values: number[]): LatencySummary {
    const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: 3 });
    for (const v of values) h.recordValue(v);
    return {
      count: h.totalCount,
      p50: h.getValueAtPercentile(50),
      p90: h.getValueAtPercentile(90),
      p99: h.getValueAtPercentile(99),
      max: h.maxValue,
      histogram: hdr.encodeIntoCompressedBase64(h),
    };
  }

  it('merges histograms exactly: the percentiles of all values together, not an average', () => {
    const fast = summaryOf(Array.from({ length: 900 }, () => 10));
    const slow = summaryOf(Array.from({ length: 100 }, () => 1_000));
    const merged = mergeLatency([fast, slow]);
    expect(merged).toMatchObject({ count: 1_000, p50: 10, exact: true });
    // 10 % of all values are slow: the merged p99 is slow although one worker's p99 is 10.
    expect(merged.p99).toBe(1_000);
    expect(merged.max).toBe(1_000);
  });

  it('falls back to the worst worker when a histogram is missing, and says so', () => {
    const merged = mergeLatency([latency(10, 40), { ...latency(20, 30), histogram: undefined }]);
    expect(merged).toEqual({ count: 200, p50: 20, p99: 40, max: 80, exact: false });
  });

  it('skips empty windows and survives an unreadable histogram', () => {
    expect(mergeLatency([NO_LATENCY, NO_LATENCY])).toEqual({ count: 0, p50: 0, p99: 0, max: 0, exact: true });
    const one = summaryOf([5, 5, 7]);
    expect(mergeLatency([one, NO_LATENCY])).toMatchObject({ count: 3, exact: true });
    expect(mergeLatency([one, { ...one, histogram: 'garbage' }])).toMatchObject({ exact: false, p99: one.p99 });
  });

  it('totals use the live workers only', () => {
    const state = withWorkers(
      [snapshot('w1', { latencyMs: { windowS: 10, endToEnd: summaryOf([10, 20]), processing: NO_LATENCY } }), 10_000],
      [snapshot('w2', { latencyMs: { windowS: 10, endToEnd: summaryOf([5_000]), processing: NO_LATENCY } }), 1_000],
    );
    const totals = totalsOf(viewOf(state, 10_100).rows);
    expect(totals.endToEndMs).toMatchObject({ count: 2, max: 20 });
  });
});
