import { describe, expect, it } from 'vitest';
import { mergeHopTotals, mergeSecondHops } from '../../src/bench/hop-latency.js';
import { SnapshotBuilder } from '../../src/stats/stats-publisher.js';
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_BYTES_MAX } from '../../src/stats/snapshot.js';
import { WorkerMetrics } from '../../src/stats/worker-metrics.js';
import { hopLatencyText } from '../../src/ui/text.js';
import { rowOf, totalsOf } from '../../src/watch/stats-aggregator.js';

const identity = { workerId: 'w1', pid: 1, host: 'h', prefetchCount: 10 };

/** A worker that measured every worker hop: 20 messages in one batch of 20. */
function busyWorker(queueWaitMs: number): WorkerMetrics {
  const m = new WorkerMetrics();
  for (let i = 0; i < 20; i++) {
    m.hops.record('queue_wait', queueWaitMs);
    m.recordCommitted(1_000, 1_010, 1_015, 1_030);
    m.hops.record('ack', 2);
  }
  m.recordBatch(20, 1_015, 1_030);
  return m;
}

describe('per-hop latency in snapshots, watch and bench', () => {
  it('a snapshot carries the hops measured (window with histograms; totals with histograms only when stopping), and decodes', () => {
    const builder = new SnapshotBuilder(busyWorker(7), identity);
    const live = builder.build(2_000);
    expect(Object.keys(live.hopsMs!.window).sort()).toEqual(['ack', 'commit', 'end_to_end', 'processing', 'queue_wait']);
    expect(live.hopsMs!.window.queue_wait).toMatchObject({ count: 20, p50: 7, p99: 7 });
    expect(live.hopsMs!.window.processing).toMatchObject({ count: 20, p50: 5 });
    expect(live.hopsMs!.window.commit).toMatchObject({ count: 20, p50: 15 });
    expect(live.hopsMs!.window.end_to_end).toMatchObject({ count: 20, p50: 30 });
    expect(live.hopsMs!.window.queue_wait!.histogram).toEqual(expect.any(String));
    expect(live.hopsMs!.total.queue_wait!.histogram).toBeUndefined();
    // Hops nobody measured here are left out (the relay runs elsewhere, statements are accounting's).
    expect(live.hopsMs!.window.statement).toBeUndefined();
    const last = builder.build(3_000, true);
    expect(last.hopsMs!.total.queue_wait!.histogram).toEqual(expect.any(String));

    const decoded = decodeSnapshot(encodeSnapshot(last));
    expect(decoded.ok && decoded.snapshot.hopsMs).toEqual(last.hopsMs);
    // Older workers send no hops: still a valid snapshot.
    const { hopsMs: _hops, ...old } = last;
    const oldDecoded = decodeSnapshot(encodeSnapshot(old));
    expect(oldDecoded.ok && oldDecoded.snapshot.hopsMs).toBeUndefined();
    // A mistyped hop is refused, naming the field.
    const bad = { ...last, hopsMs: { ...last.hopsMs, window: { queue_wait: { count: -1 } } } };
    expect(decodeSnapshot(Buffer.from(JSON.stringify(bad)))).toMatchObject({
      ok: false,
      error: expect.stringContaining('hopsMs.window.queue_wait'),
    });
  });

  it('watch merges each hop over the live workers exactly, and prints them in flow order', () => {
    const a = new SnapshotBuilder(busyWorker(4), identity).build(2_000);
    const b = new SnapshotBuilder(busyWorker(400), { ...identity, workerId: 'w2' }).build(2_000);
    const rows = [a, b].map((snapshot) =>
      rowOf({ snapshot: { ...snapshot, processedPerS: { last1s: 1, last10s: 1 } }, receivedAtMs: 2_000, history: [] }, 2_000),
    );
    const totals = totalsOf(rows);
    expect(totals.hopsMs.queue_wait).toMatchObject({ count: 40, p50: 4, p99: 400, exact: true });
    expect(totals.hopsMs.commit).toMatchObject({ count: 40, p50: 15, exact: true });
    expect(hopLatencyText(totals.hopsMs)).toBe('queue 4/400 · processing 5/5 · commit 15/15 · ack 2/2 · e2e 30/30');
    expect(hopLatencyText({})).toBe('');
  });

  it('bench adds the final totals exactly, or says when it could not', () => {
    const a = new SnapshotBuilder(busyWorker(4), identity).build(2_000, true);
    const b = new SnapshotBuilder(busyWorker(400), { ...identity, workerId: 'w2' }).build(2_000, true);
    const exact = mergeHopTotals([a, b]);
    expect(exact.exact).toBe(true);
    expect(exact.hops.queue_wait).toMatchObject({ count: 40, p50: 4, p99: 400, max: 400 });
    // One worker's goodbye snapshot was lost: its running totals have no histogram.
    const c = new SnapshotBuilder(busyWorker(400), { ...identity, workerId: 'w2' }).build(2_000, false);
    const bound = mergeHopTotals([a, c]);
    expect(bound.exact).toBe(false);
    expect(bound.hops.queue_wait).toMatchObject({ count: 40, p50: 400, p99: 400 });
  });

  it('a snapshot carries the last second alone per hop: only what was recorded since the previous snapshot', () => {
    const metrics = busyWorker(7);
    const builder = new SnapshotBuilder(metrics, identity);
    const first = builder.build(1_000);
    expect(first.hopsMs!.second!.queue_wait).toMatchObject({ count: 20, p50: 7 });
    builder.markSent();
    // The next second: 5 slower messages through the queue, nothing else.
    for (let i = 0; i < 5; i++) metrics.hops.record('queue_wait', 90);
    const next = builder.build(2_000);
    builder.markSent();
    expect(next.hopsMs!.second!.queue_wait).toMatchObject({ count: 5, p50: 90, p99: 90 });
    // The 10 s window still has both seconds; hops idle this second are not in `second`.
    expect(next.hopsMs!.window.queue_wait).toMatchObject({ count: 25 });
    expect(next.hopsMs!.second!.commit).toBeUndefined();
    expect(builder.build(3_000).hopsMs!.second).toEqual({});
    builder.markSent();
    // A snapshot that could not be sent (congested socket): its values go out with the next one.
    metrics.hops.record('commit', 40);
    expect(builder.build(4_000).hopsMs!.second!.commit).toMatchObject({ count: 1 });
    metrics.hops.record('commit', 40);
    expect(builder.build(5_000).hopsMs!.second!.commit).toMatchObject({ count: 2, p50: 40 });
    const decoded = decodeSnapshot(encodeSnapshot(next));
    expect(decoded.ok && decoded.snapshot.hopsMs?.second).toEqual(next.hopsMs!.second);
  });

  it('the goodbye snapshot stays under the size limit on a wide spread: its 10 s window keeps percentiles, not histograms', () => {
    const metrics = new WorkerMetrics();
    const builder = new SnapshotBuilder(metrics, identity);
    const hops = ['queue_wait', 'processing', 'commit', 'ack', 'relay', 'end_to_end'] as const;
    // Values spread over 1..20,000 ms, so every histogram has thousands of distinct buckets.
    let x = 1;
    const spread = () => {
      for (let i = 0; i < 5_000; i++) for (const hop of hops) metrics.hops.record(hop, (x = (x * 7_919 + 13) % 20_000) + 1);
    };
    for (let t = 1; t <= 11; t++) {
      spread();
      builder.build(t * 1_000);
    }
    spread();
    const last = builder.build(12_000, true);
    expect(last.hopsMs!.window.relay!.histogram).toBeUndefined();
    expect(last.hopsMs!.window.relay!.count).toBeGreaterThan(0);
    expect(last.hopsMs!.second!.relay!.histogram).toEqual(expect.any(String));
    expect(last.hopsMs!.total.relay!.histogram).toEqual(expect.any(String));
    expect(encodeSnapshot(last).length).toBeLessThan(SNAPSHOT_BYTES_MAX);
    expect(decodeSnapshot(encodeSnapshot(last)).ok).toBe(true);
  });

  it('bench merges the one-second windows of several workers exactly into per-second p50/p99', () => {
    const a = new SnapshotBuilder(busyWorker(4), identity).build(1_000).hopsMs!.second!;
    const b = new SnapshotBuilder(busyWorker(400), { ...identity, workerId: 'w2' }).build(1_000).hopsMs!.second!;
    const merged = mergeSecondHops([a, b]);
    expect(merged.queue_wait).toEqual({ count: 40, p50: 4, p99: 400 });
    expect(merged.commit).toEqual({ count: 40, p50: 15, p99: 15 });
    expect(merged.relay).toBeUndefined();
    expect(mergeSecondHops([])).toEqual({});
  });
});
