import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Channel } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { decodeStageEvent, encodeStageEvent, type StageEvent } from '../../src/domain/stage-event.js';
import { decodeTransaction } from '../../src/domain/message-schema.js';
import { parseStageSpecs } from '../../src/domain/stage-spec.js';
import { createLogger } from '../../src/log.js';
import { FeedHub, feedEventOfStage, type FeedClient } from '../../src/serve/feed-hub.js';
import { createMetricsRegistry, exportWorkerMetrics } from '../../src/stats/prometheus.js';
import { StageMetrics } from '../../src/stats/stage-metrics.js';
import { WorkerMetrics } from '../../src/stats/worker-metrics.js';
import type { Incoming } from '../../src/worker/apply-batch.js';
import { StageRunner, stagesOptionsFrom } from '../../src/worker/stages.js';
import { parsePrometheusText, sumOf } from '../helpers/prometheus-text.js';

const log = createLogger('silent');

function incoming(attempt = 1, id = randomUUID()): Incoming {
  const body = Buffer.from(
    JSON.stringify({ id, type: 'deposit', accountId: 7, amountMinor: 100, currency: 'EUR', createdAt: new Date().toISOString() }),
  );
  return { decoded: decodeTransaction(body, { contentType: 'application/json' }), attempt, runId: null };
}

/** Just enough of an amqplib channel: records publishes, reports a full buffer when told to. */
function recordingChannel(full = false) {
  const published: { exchange: string; routingKey: string; event: StageEvent; persistent: unknown }[] = [];
  const channel = {
    publish(exchange: string, routingKey: string, content: Buffer, options: { persistent?: boolean }) {
      const decoded = decodeStageEvent(content);
      if (!decoded.ok) throw new Error(decoded.detail);
      published.push({ exchange, routingKey, event: decoded.event, persistent: options.persistent });
      return !full;
    },
    once() {},
  };
  return { channel: channel as unknown as Channel, published };
}

/** A sleep that resolves on the next turn but records what it was asked for, and how many sleep at once. */
function countingSleep() {
  const asked: number[] = [];
  let sleeping = 0;
  let sleepingMax = 0;
  const sleep = async (ms: number) => {
    asked.push(ms);
    sleepingMax = Math.max(sleepingMax, ++sleeping);
    await new Promise((r) => setTimeout(r, 1));
    sleeping--;
  };
  return { sleep, asked, max: () => sleepingMax };
}

function runner(specs: string[], options: { emitEvents?: boolean; full?: boolean } = {}) {
  const parsed = parseStageSpecs(specs);
  const metrics = new StageMetrics(parsed.map((s) => s.name));
  const { channel, published } = recordingChannel(options.full);
  const clock = countingSleep();
  const r = new StageRunner(
    { specs: parsed, seed: 's', emitEvents: options.emitEvents ?? true, workerId: 'w1', feedExchange: 'ns.feed' },
    { channel: () => channel, sleep: clock.sleep },
    metrics,
    log,
  );
  return { runner: r, metrics, published, clock };
}

describe('StageRunner', () => {
  it('walks every stage in order, emitting start and end of each, and passes', async () => {
    const { runner: r, published, metrics, clock } = runner(['fraud:5..50ms', 'issuer:20..200ms']);
    const item = incoming();
    expect(await r.walk(item)).toEqual({ kind: 'passed' });
    expect(published.map((p) => `${p.routingKey} ${p.event.stage}:${p.event.phase}:${p.event.result}`)).toEqual([
      'stage.start.7 fraud:start:null',
      'stage.end.7 fraud:end:passed',
      'stage.start.7 issuer:start:null',
      'stage.end.7 issuer:end:passed',
    ]);
    expect(published.every((p) => p.exchange === 'ns.feed' && p.persistent === false && p.event.workerId === 'w1')).toBe(true);
    expect(clock.asked[0]).toBeGreaterThanOrEqual(5);
    expect(clock.asked[0]).toBeLessThanOrEqual(50);
    expect(clock.asked[1]).toBeGreaterThanOrEqual(20);
    expect(metrics.summary().map((s) => [s.name, s.passed, s.inFlight])).toEqual([
      ['fraud', 1, 0],
      ['issuer', 1, 0],
    ]);
  });

  it('stops at a decline (business reject with the stage reason) and at a failure (system error)', async () => {
    const declining = runner(['fraud:1ms:decline=1', 'issuer:1ms']);
    const d = await declining.runner.walk(incoming());
    expect(d).toMatchObject({ kind: 'declined', stage: 'fraud', reason: 'declined_by_fraud' });
    expect(declining.published.map((p) => p.event.stage)).toEqual(['fraud', 'fraud']);
    expect(declining.metrics.summary()[0]).toMatchObject({ declined: 1, passed: 0 });

    const failing = runner(['fraud:1ms', 'issuer:1ms:fail=1:decline=1']);
    const f = await failing.runner.walk(incoming(2));
    expect(f).toMatchObject({
      kind: 'failed',
      stage: 'issuer',
      code: 'stage_failed',
      message: 'stage issuer failed (simulated, attempt 2)',
    });
    expect(failing.metrics.summary().map((s) => [s.passed, s.failed, s.declined])).toEqual([
      [1, 0, 0],
      [0, 1, 0],
    ]);
  });

  it('walks a batch concurrently, and the same attempt of the same id walks the same way twice', async () => {
    const { runner: r, metrics, clock } = runner(['fraud:5..500ms:decline=0.3:fail=0.2']);
    const items = Array.from({ length: 40 }, () => incoming());
    const first = await r.walkAll(items);
    const firstTimes = [...clock.asked];
    const again = await r.walkAll(items);
    expect(again).toEqual(first);
    expect(clock.asked.slice(40)).toEqual(firstTimes);
    expect(clock.max()).toBe(40);
    expect(metrics.walksInFlightMax).toBe(40);
    expect(metrics.walksInFlight).toBe(0);
    expect(new Set(first.map((v) => v.kind)).size).toBe(3);
  });

  it('an unreadable message has no stages; without --emit-stage-events nothing is published; a full channel skips events', async () => {
    const quiet = runner(['fraud:1ms'], { emitEvents: false });
    const bad: Incoming = { decoded: decodeTransaction(Buffer.from('{"oops'), {}), attempt: 1, runId: null };
    expect(await quiet.runner.walk(bad)).toEqual({ kind: 'passed' });
    expect(quiet.clock.asked).toEqual([]);
    await quiet.runner.walk(incoming());
    expect(quiet.published).toEqual([]);

    const congested = runner(['fraud:1ms'], { full: true });
    await congested.runner.walk(incoming());
    expect(congested.published).toHaveLength(1);
    expect(congested.runner.eventsSkipped).toBe(1);
  });
});

describe('stage event codec', () => {
  const event: StageEvent = {
    kind: 'stage',
    transactionId: randomUUID(),
    stage: 'fraud',
    stageIndex: 0,
    phase: 'end',
    result: 'declined',
    durationMs: 12,
    attempt: 1,
    accountId: 3,
    type: 'deposit',
    workerId: 'w1',
    at: new Date().toISOString(),
  };

  it('round-trips and refuses what a stage event cannot be', () => {
    expect(decodeStageEvent(encodeStageEvent(event))).toEqual({ ok: true, event });
    const bad = (over: Record<string, unknown>) => decodeStageEvent(Buffer.from(JSON.stringify({ version: 1, ...event, ...over })));
    expect(bad({ phase: 'middle' })).toMatchObject({ ok: false, detail: 'phase must be start or end' });
    expect(bad({ phase: 'start' })).toMatchObject({ ok: false });
    expect(bad({ result: 'maybe' })).toMatchObject({ ok: false });
    expect(bad({ stage: 'Fraud!' })).toMatchObject({ ok: false, detail: 'stage must be a stage name' });
    expect(bad({ version: 2 })).toMatchObject({ ok: false });
    expect(bad({ transactionId: 'x' })).toMatchObject({ ok: false });
    expect(decodeStageEvent(Buffer.from('nope'))).toMatchObject({ ok: false, detail: 'body is not valid JSON' });
  });
});

describe('stages options and Prometheus', () => {
  it('refuses --stage with --stages-file, and --emit-stage-events without stages', async () => {
    await expect(stagesOptionsFrom({ stage: ['a:1ms'], stagesFile: '/nonexistent' })).rejects.toThrow('not both');
    await expect(stagesOptionsFrom({ emitStageEvents: true })).rejects.toThrow('needs at least one --stage');
    await expect(stagesOptionsFrom({ stagesFile: '/nonexistent/stages.txt' })).rejects.toThrow('--stages-file: cannot read');
    expect(await stagesOptionsFrom({ stage: ['a:1ms', 'b:2..3ms'] })).toMatchObject({ seed: 'txsim', emitEvents: false });
    const dir = await mkdtemp(join(tmpdir(), 'stages-'));
    const file = join(dir, 'stages.txt');
    await writeFile(file, '# the pipeline\nfraud:5..50ms:decline=0.01\n\nissuer:20..200ms\n');
    const fromFile = await stagesOptionsFrom({ stagesFile: file, stageSeed: 'x', emitStageEvents: true });
    expect(fromFile.specs.map((s) => s.name)).toEqual(['fraud', 'issuer']);
    expect(fromFile).toMatchObject({ seed: 'x', emitEvents: true });
    await writeFile(file, 'fraud:5..50ms:deny=1\n');
    await expect(stagesOptionsFrom({ stagesFile: file })).rejects.toThrow(
      `--stages-file ${file}: "fraud:5..50ms:deny=1": unknown key "deny"`,
    );
    await writeFile(file, '# nothing\n');
    await expect(stagesOptionsFrom({ stagesFile: file })).rejects.toThrow('names no stage');
    await rm(dir, { recursive: true });
  });

  it('exports stage durations, results by stage and declines as transaction outcomes', async () => {
    const metrics = new WorkerMetrics();
    metrics.stages = new StageMetrics(['fraud', 'issuer']);
    const registry = createMetricsRegistry('worker', { worker_id: 'w1' });
    exportWorkerMetrics(registry, { metrics, connected: () => true });
    metrics.stages.stageStarted('fraud');
    metrics.stages.stageEnded('fraud', 'declined', 30);
    metrics.stages.stageStarted('fraud');
    metrics.stages.stageEnded('fraud', 'passed', 10);
    metrics.stages.stageStarted('issuer');
    metrics.stages.stageEnded('issuer', 'failed', 200);
    metrics.stages.stageStarted('issuer');
    metrics.recordOutcome('declined_by_fraud', 'deposit');
    const samples = parsePrometheusText(await registry.metrics());
    expect(sumOf(samples, 'txsim_stage_results_total', { stage: 'fraud', result: 'declined' })).toBe(1);
    expect(sumOf(samples, 'txsim_stage_results_total', { stage: 'issuer', result: 'failed' })).toBe(1);
    expect(sumOf(samples, 'txsim_stage_duration_seconds_count', { stage: 'fraud' })).toBe(2);
    expect(sumOf(samples, 'txsim_stage_duration_seconds_sum', { stage: 'issuer', result: 'failed' })).toBeCloseTo(0.2);
    expect(sumOf(samples, 'txsim_stage_in_flight', { stage: 'issuer' })).toBe(1);
    expect(sumOf(samples, 'txsim_transactions_total', { outcome: 'rejected', reason: 'declined_by_fraud', type: 'deposit' })).toBe(1);
    expect(metrics.rejected.declined_by_fraud).toBe(1);
    expect(metrics.processed).toBe(1);
  });
});

describe('stage events on the live feed', () => {
  it('a transaction subscriber sees its stages as `stage` events, and the subscription stays open until the outcome', () => {
    const h = new FeedHub({ sendBufferBytesMax: 10_000, subscriptionsMax: 3 });
    const sent: Record<string, unknown>[] = [];
    let closed = false;
    const client: FeedClient = {
      bufferedBytes: 0,
      send: (text) => sent.push(JSON.parse(text) as Record<string, unknown>),
      close: () => (closed = true),
    };
    h.add(client, { kind: 'account', tokenId: 't', accountId: 7 });
    const id = randomUUID();
    h.subscribe(client, { kind: 'transaction', id });
    const base = {
      kind: 'stage',
      transactionId: id,
      stage: 'fraud',
      stageIndex: 0,
      attempt: 1,
      accountId: 7,
      type: 'deposit',
      workerId: 'w1',
    } as const;
    h.publish(feedEventOfStage({ ...base, phase: 'start', result: null, durationMs: null, at: new Date().toISOString() }));
    h.publish(feedEventOfStage({ ...base, phase: 'end', result: 'passed', durationMs: 12, at: new Date().toISOString() }));
    expect(closed).toBe(false);
    expect(sent.map((e) => [e.event, (e.stage as { phase: string }).phase])).toEqual([
      ['stage', 'start'],
      ['stage', 'end'],
    ]);
    expect(sent[1]).toMatchObject({ transactionId: id, attempt: 1, stage: { name: 'fraud', index: 0, result: 'passed', durationMs: 12 } });
    // Another account's stage events are not this client's business.
    h.publish(feedEventOfStage({ ...base, accountId: 8, phase: 'start', result: null, durationMs: null, at: new Date().toISOString() }));
    expect(sent).toHaveLength(2);
  });
});

describe('StageRunner at shutdown', () => {
  it('stop() ends the walks waiting in a stage at once, unapplied (abandoned), and later walks do not wait', async () => {
    const parsed = parseStageSpecs(['slow:60s', 'slower:60s']);
    const metrics = new StageMetrics(parsed.map((s) => s.name));
    const r = new StageRunner(
      { specs: parsed, seed: 's', emitEvents: false, workerId: 'w1', feedExchange: 'ns.feed' },
      { channel: () => null },
      metrics,
      log,
    );
    const walks = r.walkAll([incoming(), incoming()]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(metrics.walksInFlight).toBe(2);
    const stoppedAtMs = Date.now();
    r.stop();
    expect(await walks).toEqual([{ kind: 'abandoned' }, { kind: 'abandoned' }]);
    expect(metrics.summary().map((st) => st.inFlight)).toEqual([0, 0]);
    // A walk that starts after stop() does not wait either, and is not applied.
    expect(await r.walk(incoming())).toEqual({ kind: 'abandoned' });
    expect(Date.now() - stoppedAtMs).toBeLessThan(5_000);
    expect(metrics.walksInFlight).toBe(0);
  });
});
