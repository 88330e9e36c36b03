import { describe, expect, it } from 'vitest';
import {
  DEFAULT_STALENESS,
  emptyStats,
  receiveSnapshot,
  resumeHearing,
  rowOf,
  stopHearing,
  tick,
  viewOf,
  type StatsState,
} from '../../src/watch/stats-aggregator.js';
import type { WorkerSnapshot } from '../../src/stats/snapshot.js';
import { latency, snapshot } from './stats-fixtures.js';

/**
 * A snapshot carrying a per-process instance id (a random id drawn at start). Added with
 * Object.assign: `WorkerSnapshot` only gains the optional field once the publisher sends it, and the
 * aggregator already tells processes apart by it when it is there.
 */
function withInstance(s: WorkerSnapshot, instanceId: string): WorkerSnapshot {
  return Object.assign({}, s, { instanceId });
}

/**
 * The aggregator's rules that every view shares: a worker restarted under the same id keeps its
 * earlier work in the totals; a gone worker has no live in-flight count or latency; and while the
 * reader cannot hear (its own broker connection is down) nobody ages.
 */

describe('a worker restarted under the same id', () => {
  it('keeps the old process’s final counts and reject reasons in its row and the totals', () => {
    let state = receiveSnapshot(
      emptyStats(),
      snapshot('w1', { pid: 100, startedAtMs: 1_000, seq: 40, counts: { applied: 100, rejected: { insufficient_funds: 7 }, retried: 3 } }),
      10_000,
    );
    state = receiveSnapshot(
      state,
      snapshot('w1', {
        pid: 200,
        startedAtMs: 20_000,
        seq: 1,
        counts: { applied: 5, rejected: { insufficient_funds: 1, unknown_account: 2 }, retried: 0 },
      }),
      21_000,
    );
    const view = viewOf(state, 21_500);
    expect(view.totals.applied).toBe(105);
    expect(view.totals.rejected).toBe(10);
    expect(view.totals.retried).toBe(3);
    expect(view.rejectReasons).toEqual([
      { reason: 'insufficient_funds', count: 8 },
      { reason: 'unknown_account', count: 2 },
    ]);
    // One row for the id: the new process (its pid, its rate), with the earlier work counted in.
    expect(view.rows).toHaveLength(1);
    expect(view.rows[0]).toMatchObject({ workerId: 'w1', pid: 200, applied: 105, restarts: 1 });
  });

  it('adds up over several restarts, and the current process’s counts keep growing on top', () => {
    let state: StatsState = emptyStats();
    for (const [pid, applied] of [
      [1, 10],
      [2, 20],
      [3, 30],
    ] as const)
      state = receiveSnapshot(state, snapshot('w1', { pid, startedAtMs: pid * 1_000, seq: 1, counts: { applied } }), pid * 1_000);
    state = receiveSnapshot(state, snapshot('w1', { pid: 3, startedAtMs: 3_000, seq: 2, counts: { applied: 35 } }), 3_500);
    expect(viewOf(state, 3_600).totals.applied).toBe(10 + 20 + 35);
    expect(viewOf(state, 3_600).rows[0]!.restarts).toBe(2);
  });

  it('takes a late snapshot from the earlier process as that process’s newer counts, never counting it twice', () => {
    let state = receiveSnapshot(emptyStats(), snapshot('w1', { pid: 100, startedAtMs: 1_000, seq: 40, counts: { applied: 100 } }), 10_000);
    state = receiveSnapshot(state, snapshot('w1', { pid: 200, startedAtMs: 20_000, seq: 1, counts: { applied: 5 } }), 21_000);
    state = receiveSnapshot(state, snapshot('w1', { pid: 100, startedAtMs: 1_000, seq: 41, counts: { applied: 101 } }), 21_100);
    state = receiveSnapshot(state, snapshot('w1', { pid: 200, startedAtMs: 20_000, seq: 2, counts: { applied: 6 } }), 22_000);
    const view = viewOf(state, 22_100);
    // 101 of the old process (its newest snapshot, not 100 + 101) and 6 of the new one.
    expect(view.totals.applied).toBe(107);
    expect(view.rows[0]).toMatchObject({ pid: 200, restarts: 1 });
  });
});

describe('a restart told apart without comparing clocks', () => {
  it('takes the row over when its start time is lower than its predecessor’s (its host’s clock behind), and its counts count', () => {
    let state = receiveSnapshot(emptyStats(), snapshot('w1', { pid: 100, startedAtMs: 50_000, seq: 40, counts: { applied: 100 } }), 10_000);
    // Restarted on a host whose clock is 40 s behind: a start time lower than the predecessor's.
    state = receiveSnapshot(state, snapshot('w1', { pid: 200, startedAtMs: 10_000, seq: 1, counts: { applied: 5 } }), 21_000);
    state = receiveSnapshot(state, snapshot('w1', { pid: 200, startedAtMs: 10_000, seq: 2, counts: { applied: 9 } }), 22_000);
    const view = viewOf(state, 22_100);
    expect(view.rows[0]).toMatchObject({ workerId: 'w1', pid: 200, startedAtMs: 10_000, applied: 109, restarts: 1, status: 'active' });
    expect(view.totals.applied).toBe(109);
  });

  it('tells a restart by its instance id when the pid and start time repeat (pid 1 in a container, a clock reset at boot)', () => {
    const same = { pid: 1, startedAtMs: 1_000 };
    let state = receiveSnapshot(
      emptyStats(),
      withInstance(snapshot('w1', { ...same, seq: 40, counts: { applied: 100 } }), 'boot-a'),
      10_000,
    );
    state = receiveSnapshot(state, withInstance(snapshot('w1', { ...same, seq: 1, counts: { applied: 5 } }), 'boot-b'), 21_000);
    expect(viewOf(state, 21_100).rows[0]).toMatchObject({ applied: 105, restarts: 1 });
  });

  it('keeps the predecessor’s goodbye counts when that snapshot arrives after its successor’s first, and the row stays with the successor', () => {
    let state = receiveSnapshot(emptyStats(), snapshot('w1', { pid: 100, startedAtMs: 50_000, seq: 40, counts: { applied: 100 } }), 10_000);
    state = receiveSnapshot(state, snapshot('w1', { pid: 200, startedAtMs: 10_000, seq: 1, counts: { applied: 5 } }), 10_500);
    // The old process finished its in-flight deliveries meanwhile: its goodbye says 103.
    state = receiveSnapshot(
      state,
      snapshot('w1', { pid: 100, startedAtMs: 50_000, seq: 41, stopping: true, counts: { applied: 103 } }),
      10_600,
    );
    // A copy of a snapshot already counted changes nothing.
    state = receiveSnapshot(state, snapshot('w1', { pid: 100, startedAtMs: 50_000, seq: 41, counts: { applied: 103 } }), 10_700);
    const view = viewOf(state, 10_800);
    expect(view.rows[0]).toMatchObject({ pid: 200, status: 'active', applied: 108, restarts: 1 });
  });

  it('does not hand the row to a predecessor first heard after its successor (watch started during the overlap)', () => {
    let state = receiveSnapshot(emptyStats(), snapshot('w1', { pid: 200, startedAtMs: 10_000, seq: 3, counts: { applied: 5 } }), 10_000);
    state = receiveSnapshot(
      state,
      snapshot('w1', { pid: 100, startedAtMs: 50_000, seq: 41, stopping: true, counts: { applied: 103 } }),
      10_100,
    );
    state = receiveSnapshot(state, snapshot('w1', { pid: 200, startedAtMs: 10_000, seq: 4, counts: { applied: 7 } }), 11_000);
    expect(viewOf(state, 11_100).rows[0]).toMatchObject({ pid: 200, status: 'active', applied: 110, restarts: 1 });
  });

  it('two processes under one id: the row does not flip between them, and both processes’ counts add up', () => {
    let state = receiveSnapshot(emptyStats(), snapshot('w1', { pid: 100, startedAtMs: 9_000, seq: 1, counts: { applied: 10 } }), 10_000);
    state = receiveSnapshot(state, snapshot('w1', { pid: 200, startedAtMs: 1_000, seq: 1, counts: { applied: 20 } }), 10_100);
    for (let i = 2; i <= 4; i++) {
      state = receiveSnapshot(
        state,
        snapshot('w1', { pid: 100, startedAtMs: 9_000, seq: i, counts: { applied: 10 * i } }),
        10_000 + i * 1_000,
      );
      state = receiveSnapshot(
        state,
        snapshot('w1', { pid: 200, startedAtMs: 1_000, seq: i, counts: { applied: 20 * i } }),
        10_100 + i * 1_000,
      );
      expect(viewOf(state, 10_200 + i * 1_000).rows[0]).toMatchObject({ pid: 200, applied: 30 * i, restarts: 1 });
    }
  });

  it('gives the row back to the earlier process once the row’s process said goodbye or went quiet', () => {
    const a = (seq: number, applied: number, receivedAtMs: number, stopping = false) =>
      [snapshot('w1', { pid: 100, startedAtMs: 9_000, seq, stopping, counts: { applied } }), receivedAtMs] as const;
    const b = (seq: number, applied: number, receivedAtMs: number, stopping = false) =>
      [snapshot('w1', { pid: 200, startedAtMs: 1_000, seq, stopping, counts: { applied } }), receivedAtMs] as const;
    let state = emptyStats();
    for (const [s, at] of [a(1, 10, 10_000), b(1, 20, 10_100), b(2, 25, 11_100, true), a(2, 12, 11_200)])
      state = receiveSnapshot(state, s, at);
    expect(viewOf(state, 11_300).rows[0]).toMatchObject({ pid: 100, status: 'active', applied: 37, restarts: 1 });
    // B comes back as a third process (a restart): it takes the row; then it goes quiet, and A takes the row back.
    state = receiveSnapshot(state, snapshot('w1', { pid: 300, startedAtMs: 500, seq: 1, counts: { applied: 1 } }), 12_000);
    expect(viewOf(state, 12_100).rows[0]).toMatchObject({ pid: 300, applied: 38, restarts: 2 });
    state = receiveSnapshot(state, ...a(3, 14, 13_000));
    expect(viewOf(state, 13_100).rows[0]!.pid).toBe(300);
    state = receiveSnapshot(state, ...a(4, 16, 12_000 + DEFAULT_STALENESS.staleAfterMs + 1));
    expect(viewOf(state, 15_100).rows[0]).toMatchObject({ pid: 100, applied: 42, restarts: 2 });
  });

  it('keeps every process’s counts in a long crash loop, beyond the processes it remembers one by one', () => {
    let state: StatsState = emptyStats();
    for (let pid = 1; pid <= 40; pid++)
      state = receiveSnapshot(state, snapshot('w1', { pid, startedAtMs: 100_000 - pid, seq: 1, counts: { applied: 1 } }), pid * 1_000);
    expect(viewOf(state, 40_100).rows[0]).toMatchObject({ pid: 40, applied: 40, restarts: 39 });
    expect(state.workers.w1!.earlier!.processes.length).toBeLessThanOrEqual(16);
  });
});

describe('a gone worker’s row', () => {
  it('carries no in-flight count or latency (every view shows -), but keeps its counts', () => {
    const entry = {
      snapshot: snapshot('w1', { inFlight: 7, prefetchCount: 50, stopping: true, counts: { applied: 42 } }),
      receivedAtMs: 1_000,
      history: [],
    };
    const row = rowOf(entry, 1_100);
    expect(row.status).toBe('gone');
    expect(row.inFlight).toBeNull();
    expect(row.endToEndMs.count).toBe(0);
    expect(row.processingMs.count).toBe(0);
    expect(row.hopsMs).toEqual({});
    expect(row.applied).toBe(42);
    // A stale worker may still be busy: its last in-flight count and latency stay.
    const stale = rowOf({ ...entry, snapshot: { ...entry.snapshot, stopping: false } }, 1_000 + DEFAULT_STALENESS.staleAfterMs + 1);
    expect(stale.status).toBe('stale');
    expect(stale.inFlight).toBe(7);
    expect(stale.endToEndMs).toEqual(latency(12, 40));
  });
});

describe('while the reader cannot hear the workers', () => {
  const options = DEFAULT_STALENESS;
  const heard = () => receiveSnapshot(emptyStats(), snapshot('w1', { rate: 10, counts: { applied: 100 } }), 10_000);

  it('does not age them: an outage longer than gone-after leaves them as they were, marked unheard', () => {
    let state = stopHearing(heard(), 10_500);
    state = tick(state, 40_000, options);
    const view = viewOf(state, 40_000, 'id', options);
    expect(view.rows[0]).toMatchObject({ workerId: 'w1', status: 'active', unheard: true, ratePerS: null, inFlight: null, applied: 100 });
    expect(view.rows[0]!.endToEndMs.count).toBe(0);
    expect(view.totals.unheard).toBe(true);
    // The sparkline gets 0 (no rate known), as for a stale worker.
    expect(state.workers.w1!.history).toEqual([0]);
    // `seen` stays honest: the last snapshot is 30 s old.
    expect(view.rows[0]!.lastSeenAgoMs).toBe(30_000);
  });

  it('credits the outage when hearing resumes: ageing goes on from where it stopped', () => {
    let state = stopHearing(heard(), 10_500);
    state = resumeHearing(state, 40_500);
    // 0.5 s heard before the outage, 2 s after: 2.5 s, not yet stale.
    expect(viewOf(state, 42_500, 'id', options).rows[0]).toMatchObject({ status: 'active', unheard: false, ratePerS: 10 });
    expect(viewOf(state, 43_600, 'id', options).rows[0]!.status).toBe('stale');
    expect(viewOf(state, 55_600, 'id', options).rows[0]!.status).toBe('gone');
    // A new snapshot clears the credit.
    state = receiveSnapshot(state, snapshot('w1', { rate: 10, seq: 2 }), 44_000);
    expect(viewOf(state, 47_100, 'id', options).rows[0]!.status).toBe('stale');
  });

  it('is idempotent both ways, and a worker already gone stays gone', () => {
    let state = receiveSnapshot(heard(), snapshot('w2', { stopping: true }), 10_000);
    state = stopHearing(stopHearing(state, 11_000), 12_000);
    expect(state.deafSinceMs).toBe(11_000);
    state = resumeHearing(resumeHearing(state, 20_000), 30_000);
    expect(state.deafSinceMs).toBeNull();
    expect(state.workers.w1!.deafMs).toBe(9_000);
    expect(viewOf(state, 30_000, 'id', options).rows.find((r) => r.workerId === 'w2')!.status).toBe('gone');
  });

  it('does not forget a worker for time it could not hear it', () => {
    const state = tick(stopHearing(heard(), 10_500), 10_000 + options.forgetAfterMs + 60_000, options);
    expect(Object.keys(state.workers)).toEqual(['w1']);
  });
});
