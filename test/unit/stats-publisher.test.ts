import { describe, expect, it } from 'vitest';
import { decodeSnapshot, encodeSnapshot } from '../../src/stats/snapshot.js';
import { LATENCY_WINDOW_TICKS, SnapshotBuilder } from '../../src/stats/stats-publisher.js';
import { WorkerMetrics } from '../../src/stats/worker-metrics.js';

const identity = { workerId: 'w1', pid: 4242, host: 'box', prefetchCount: 50 };

/** Drives a builder with a fake clock: one build per simulated second. */
function setup() {
  const metrics = new WorkerMetrics();
  const builder = new SnapshotBuilder(metrics, identity);
  let nowMs = 1_000_000;
  const step = (ms = 1_000) => builder.build((nowMs += ms));
  return { metrics, builder, step };
}

describe('SnapshotBuilder', () => {
  it('reports identity, counts, flags and the last error, and numbers snapshots', () => {
    const { metrics, step } = setup();
    metrics.applied = 7;
    metrics.rejected.insufficient_funds = 2;
    metrics.retried = 3;
    metrics.parked = 1;
    metrics.duplicates = 4;
    metrics.inFlight = 9;
    metrics.blocked = true;
    metrics.recordError(new Error('ER_LOCK_DEADLOCK: Deadlock found'));
    const first = step();
    const second = step();
    expect(first).toMatchObject({
      workerId: 'w1',
      pid: 4242,
      host: 'box',
      prefetchCount: 50,
      inFlight: 9,
      blocked: true,
      paused: false,
      stopping: false,
      seq: 1,
    });
    expect(first.counts).toMatchObject({ applied: 7, retried: 3, parked: 1, duplicates: 4 });
    expect(first.counts.rejected.insufficient_funds).toBe(2);
    expect(first.lastError?.message).toContain('ER_LOCK_DEADLOCK');
    expect(first.startedAtMs).toBe(metrics.startedAt);
    expect(second.seq).toBe(2);
    // What it builds is what the codec accepts.
    expect(decodeSnapshot(encodeSnapshot(second))).toEqual({ ok: true, snapshot: second });
  });

  it('rates over 1 s and 10 s follow the processed counter', () => {
    const { metrics, step } = setup();
    step();
    let last = step();
    for (let i = 0; i < 10; i++) {
      metrics.applied += 20; // 20 tx/s applied
      metrics.rejected.unknown_account += 5; // plus 5 tx/s rejected
      last = step();
    }
    expect(last.processedPerS).toEqual({ last1s: 25, last10s: 25 });
    expect(last.appliedPerS).toEqual({ last1s: 20, last10s: 20 });
    // Traffic stops: the 1 s rate drops at once, the 10 s rate decays.
    last = step();
    expect(last.processedPerS.last1s).toBe(0);
    expect(last.processedPerS.last10s).toBe(22.5);
  });

  it('latency percentiles cover the last window only; totals cover everything', () => {
    const { metrics, step } = setup();
    step();
    for (let i = 0; i < 100; i++) metrics.recordCommitted(0, 0, 0, 2_000); // slow: 2 s end-to-end and processing
    const slow = step();
    expect(slow.latencyMs.endToEnd).toMatchObject({ count: 100, p50: 2_000, p99: 2_000 });
    expect(slow.latencyMs.endToEnd.histogram).toEqual(expect.any(String));
    for (let i = 0; i < LATENCY_WINDOW_TICKS; i++) {
      for (let j = 0; j < 10; j++) metrics.recordCommitted(990, 995, 995, 1_000); // fast: 10 ms end-to-end, 5 ms processing
      step();
    }
    const later = step();
    // The window is the last 10 intervals: 9 with fast messages and the empty last one. The slow
    // batch is older than that.
    expect(later.latencyMs.endToEnd).toMatchObject({ count: 90, p50: 10, p99: 10, max: 10 });
    expect(later.latencyMs.processing).toMatchObject({ p50: 5, p99: 5 });
    expect(later.latencyTotalMs.endToEnd).toMatchObject({ count: 200, max: 2_000 });
    expect(later.latencyTotalMs.endToEnd.histogram).toBeUndefined();
  });

  it('an empty window has zero percentiles and no histogram', () => {
    const { step } = setup();
    const s = step();
    expect(s.latencyMs.endToEnd).toEqual({ count: 0, p50: 0, p90: 0, p99: 0, max: 0 });
  });

  it('marks the goodbye snapshot', () => {
    const { builder } = setup();
    expect(builder.build(1, true).stopping).toBe(true);
  });
});
