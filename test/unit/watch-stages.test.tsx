import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeSnapshot, encodeSnapshot, type StageStats } from '../../src/stats/snapshot.js';
import { SnapshotBuilder } from '../../src/stats/stats-publisher.js';
import { StageMetrics } from '../../src/stats/stage-metrics.js';
import { WorkerMetrics } from '../../src/stats/worker-metrics.js';
import { WatchApp } from '../../src/ui/WatchApp.js';
import { stagesText } from '../../src/ui/text.js';
import { planLayout } from '../../src/ui/watch-state.js';
import { WatchFeedStore } from '../../src/watch/watch.js';
import { snapshot } from './stats-fixtures.js';

/** The processing stages (`worker --stage`) in the stats snapshot, the aggregation and the `watch` screen. */

const fraud = (o: Partial<StageStats> = {}): StageStats => ({
  name: 'fraud',
  inFlight: 3,
  passed: 90,
  declined: 2,
  failed: 1,
  p50Ms: 12,
  p99Ms: 45,
  ...o,
});
const issuer = (o: Partial<StageStats> = {}): StageStats => ({
  name: 'issuer',
  inFlight: 7,
  passed: 88,
  declined: 0,
  failed: 0,
  p50Ms: 60,
  p99Ms: 190,
  ...o,
});

let unmount: (() => void) | null = null;
afterEach(() => {
  unmount?.();
  unmount = null;
});

describe('stages in the stats snapshot', () => {
  it('a worker with stages sends them (walk order, counts, percentiles); one without sends none', () => {
    const metrics = new WorkerMetrics();
    metrics.stages = new StageMetrics(['fraud', 'issuer']);
    metrics.stages.stageStarted('fraud');
    metrics.stages.stageEnded('fraud', 'declined', 20);
    metrics.stages.stageStarted('issuer');
    const identity = { workerId: 'w1', pid: 1, host: 'h', prefetchCount: 10 };
    const built = new SnapshotBuilder(metrics, identity).build(Date.now());
    expect(built.stages).toEqual([
      { name: 'fraud', inFlight: 0, passed: 0, declined: 1, failed: 0, p50Ms: 20, p99Ms: 20 },
      { name: 'issuer', inFlight: 1, passed: 0, declined: 0, failed: 0, p50Ms: 0, p99Ms: 0 },
    ]);
    const decoded = decodeSnapshot(encodeSnapshot(built));
    expect(decoded.ok && decoded.snapshot.stages).toEqual(built.stages);
    expect(new SnapshotBuilder(new WorkerMetrics(), identity).build(Date.now()).stages).toBeUndefined();
  });

  it('a malformed stages field makes the snapshot invalid', () => {
    const bad = { ...snapshot('w1'), stages: [{ name: 'fraud', inFlight: -1 }] };
    expect(decodeSnapshot(Buffer.from(JSON.stringify(bad)))).toMatchObject({ ok: false, error: 'stages[0].inFlight must be a number ≥ 0' });
  });
});

describe('stages in watch', () => {
  function store(stagesByWorker: Record<string, StageStats[] | undefined>) {
    const nowMs = 100_000;
    const s = new WatchFeedStore({ staleAfterMs: 3_000, goneAfterMs: 15_000, forgetAfterMs: 300_000 }, () => nowMs);
    for (const [id, stages] of Object.entries(stagesByWorker)) s.onSnapshot(snapshot(id, stages ? { stages } : {}), nowMs);
    s.setBroker('connected');
    s.refresh();
    return s;
  }

  it('sums in-flight and results over workers, keeps the slowest percentiles, in walk order', () => {
    const s = store({ w1: [fraud(), issuer()], w2: [fraud({ inFlight: 1, declined: 5, p99Ms: 80 })], w3: undefined });
    expect(s.getData().stats.stages).toEqual([
      { name: 'fraud', inFlight: 4, passed: 180, declined: 7, failed: 2, p50Ms: 12, p99Ms: 80 },
      issuer(),
    ]);
  });

  it('one line per screen: stage, in flight, p50/p99, declines and fails', () => {
    expect(stagesText([fraud(), issuer()])).toBe('fraud 3 in 12/45 ms ✗2 !1 · issuer 7 in 60/190 ms');
    const r = render(
      <WatchApp
        feed={store({ w1: [fraud(), issuer()] })}
        namespace="txsim"
        endpoints={{ amqp: 'amqp://x', database: 'mysql://y' }}
        startedAtMs={90_000}
        size={{ columns: 120, rows: 40 }}
      />,
    );
    unmount = r.unmount;
    expect(r.lastFrame()).toMatch(/stages in · p50\/p99 · ✗declined !failed {2}fraud 3 in 12\/45 ms ✗2 !1 · issuer 7 in 60\/190 ms/);
    const without = render(
      <WatchApp
        feed={store({ w1: undefined })}
        namespace="txsim"
        endpoints={{ amqp: 'amqp://x', database: 'mysql://y' }}
        startedAtMs={90_000}
        size={{ columns: 120, rows: 40 }}
      />,
    );
    expect(without.lastFrame()).not.toContain('stages in');
    without.unmount();
  });

  it('the stages line is placed only when there is a spare line', () => {
    expect(planLayout({ columns: 80, rows: 40 }, { workers: 2, retryQueues: 2, stages: 2 }, false).stages).toBe(true);
    expect(planLayout({ columns: 80, rows: 40 }, { workers: 2, retryQueues: 2 }, false).stages).toBeUndefined();
    expect(planLayout({ columns: 80, rows: 9 }, { workers: 2, retryQueues: 2, stages: 2 }, false).stages).toBeUndefined();
  });
});
