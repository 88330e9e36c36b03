import type { StageResult } from '../domain/stage-event.js';
import { createLatencyHistogram, percentilesOf, recordMs, type LatencyHistogram } from './histogram.js';
import type { StageStats } from './snapshot.js';

/** One stage's counters in a worker. */
export interface StageCounters {
  /** Walks inside this stage right now. */
  inFlight: number;
  passed: number;
  declined: number;
  failed: number;
  /** Time spent in the stage, whole ms (1 ms .. 1 h), since the worker started. */
  readonly durationMs: LatencyHistogram;
}

/** Called at the end of each stage of each walk (the Prometheus exporter subscribes here). */
export type StageListener = (stage: string, result: StageResult, durationMs: number) => void;

/**
 * What the simulated processing stages of one worker did: per stage, in-flight walks, results and a
 * duration histogram; and how many messages walk their stages at once (the proof that stage
 * latency does not serialize the worker: with a batch of N it reaches N, not 1).
 */
export class StageMetrics {
  readonly byStage: ReadonlyMap<string, StageCounters>;
  /** Messages walking their stages now, and the most at once since start. */
  walksInFlight = 0;
  walksInFlightMax = 0;
  listener: StageListener | null = null;

  constructor(readonly names: readonly string[]) {
    this.byStage = new Map(names.map((n) => [n, { inFlight: 0, passed: 0, declined: 0, failed: 0, durationMs: createLatencyHistogram() }]));
  }

  walkStarted(): void {
    this.walksInFlight++;
    this.walksInFlightMax = Math.max(this.walksInFlightMax, this.walksInFlight);
  }

  walkEnded(): void {
    this.walksInFlight--;
  }

  stageStarted(stage: string): void {
    this.byStage.get(stage)!.inFlight++;
  }

  stageEnded(stage: string, result: StageResult, durationMs: number): void {
    const c = this.byStage.get(stage)!;
    c.inFlight--;
    c[result]++;
    recordMs(c.durationMs, durationMs);
    this.listener?.(stage, result, durationMs);
  }

  /** A walk cut short inside the stage by shutdown: no result. */
  stageAbandoned(stage: string): void {
    this.byStage.get(stage)!.inFlight--;
  }

  /** The per-stage rows of the stats snapshot, in walk order. */
  summary(): StageStats[] {
    return this.names.map((name) => {
      const c = this.byStage.get(name)!;
      const p = percentilesOf(c.durationMs);
      return { name, inFlight: c.inFlight, passed: c.passed, declined: c.declined, failed: c.failed, p50Ms: p.p50, p99Ms: p.p99 };
    });
  }
}
