import { readFile, stat } from 'node:fs/promises';
import type { Channel } from 'amqplib';
import { LiveEvents } from '../amqp/live-events.js';
import { encodeStageEvent, stageRoutingKey, type StageEvent, type StagePhase, type StageResult } from '../domain/stage-event.js';
import {
  declineReasonOf,
  drawStage,
  formatStageSpec,
  parseStageSpecs,
  STAGE_FAILED_CODE,
  stageLinesOf,
  type StageDeclineReason,
  type StageSpec,
} from '../domain/stage-spec.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { StageMetrics } from '../stats/stage-metrics.js';
import type { Incoming } from './apply-batch.js';

/** The worker's simulated processing stages (`--stage`, `--stage-seed`, `--emit-stage-events`). */
export interface StagesOptions {
  /** In walk order; empty = no stages (the worker applies at once, as before). */
  readonly specs: readonly StageSpec[];
  /** Seed of the draws: the same seed walks each attempt of each transaction the same way. */
  readonly seed: string;
  /** Publish each stage's start and end to the feed exchange (transient). */
  readonly emitEvents: boolean;
}

/** What a message's walk through its stages decided, before it is applied. */
export type StageVerdict =
  | { readonly kind: 'passed' }
  /** A business reject: recorded and sent to the errors queue like any other (reason `declined_by_<stage>`). */
  | { readonly kind: 'declined'; readonly stage: string; readonly reason: StageDeclineReason; readonly detail: string }
  /** A system error: retried through the delay queues, parked after the last attempt. */
  | { readonly kind: 'failed'; readonly stage: string; readonly code: string; readonly message: string }
  /** Cut short by shutdown: neither applied nor moved; left unacked, so RabbitMQ redelivers it. */
  | { readonly kind: 'abandoned' };

export interface StageRunnerDeps {
  /** The open channel to publish stage events on, or null while there is none. */
  readonly channel: () => Channel | null;
  /** Waits `ms` (a test may pass a fake clock). */
  readonly sleep?: (ms: number) => Promise<void>;
}

const PASSED: StageVerdict = { kind: 'passed' };
const ABANDONED: StageVerdict = { kind: 'abandoned' };

/**
 * Walks messages through the configured stages. Each message walks its stages one after the other
 * (a stage's time, then its decision); the messages of a batch walk at the same time (`walkAll`), so
 * a 20 ms stage costs a batch about 20 ms, not 20 ms per message — as calls to a real downstream
 * made concurrently would. Every time and decision is drawn from (seed, stage, id, attempt), so a
 * redelivered attempt walks as it did the first time (see drawStage).
 */
export class StageRunner {
  private readonly events: LiveEvents;
  /** Stage waits in progress, so shutdown can cut them short. */
  private readonly waits = new Set<() => void>();
  private stopped = false;

  constructor(
    private readonly options: StagesOptions & { readonly workerId: string; readonly feedExchange: string },
    private readonly deps: StageRunnerDeps,
    private readonly metrics: StageMetrics,
    private readonly log: Logger,
  ) {
    this.events = new LiveEvents(deps.channel, options.feedExchange, log, 'stage event');
  }

  /** Events not published (no channel, congested, or the publish threw). */
  get eventsSkipped(): number {
    return this.events.skipped;
  }

  /** The verdicts of a batch's messages, in order; the walks run concurrently. */
  walkAll(items: readonly Incoming[]): Promise<StageVerdict[]> {
    return Promise.all(items.map((item) => this.walk(item)));
  }

  /** One message's walk. A message that could not be read has no stages: it is rejected as invalid anyway. */
  async walk(item: Incoming): Promise<StageVerdict> {
    if (!item.decoded.ok) return PASSED;
    const m = item.decoded.message;
    const sleep = (ms: number) => this.wait(ms);
    this.metrics.walkStarted();
    try {
      for (const [stageIndex, spec] of this.options.specs.entries()) {
        const draw = drawStage(this.options.seed, spec, m.id, item.attempt);
        const base = { transactionId: m.id, stage: spec.name, stageIndex, attempt: item.attempt, accountId: m.accountId, type: m.type };
        this.metrics.stageStarted(spec.name);
        const startedAtMs = Date.now();
        this.emit(base, 'start', null, null, startedAtMs);
        await sleep(draw.durationMs);
        // Shutdown cut the stage short: the message did not spend its time, so it must not be applied now.
        if (this.stopped) {
          this.metrics.stageAbandoned(spec.name);
          return ABANDONED;
        }
        const endedAtMs = Date.now();
        // The time actually spent (a busy event loop stretches the timer): what the histograms show.
        const tookMs = endedAtMs - startedAtMs;
        this.metrics.stageEnded(spec.name, draw.result, tookMs);
        this.emit(base, 'end', draw.result, tookMs, endedAtMs);
        if (draw.result === 'declined')
          return {
            kind: 'declined',
            stage: spec.name,
            reason: declineReasonOf(spec.name),
            detail: `declined by stage ${spec.name} (simulated, attempt ${item.attempt})`,
          };
        if (draw.result === 'failed')
          return {
            kind: 'failed',
            stage: spec.name,
            code: STAGE_FAILED_CODE,
            message: `stage ${spec.name} failed (simulated, attempt ${item.attempt})`,
          };
      }
      return PASSED;
    } finally {
      this.metrics.walkEnded();
    }
  }

  /**
   * Ends every stage wait now, and every later one at once: called at shutdown once the deadline for
   * in-flight messages has passed and the channel is closing — their deliveries can no longer be
   * acked (RabbitMQ redelivers them), and a 60 s stage must not keep the process alive that long.
   */
  stop(): void {
    this.stopped = true;
    for (const end of this.waits) end();
    this.waits.clear();
  }

  private wait(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.deps.sleep) return this.deps.sleep(ms);
    return new Promise<void>((resolve) => {
      // A timer can fire a little early by the clock (Node counts it from the event loop's cached time,
      // which may be stale): the stage waits out the rest, so it spends at least `ms`.
      const dueAt = performance.now() + ms;
      const end = () => {
        clearTimeout(timer);
        this.waits.delete(end);
        resolve();
      };
      const check = () => {
        const leftMs = dueAt - performance.now();
        if (leftMs > 0) timer = setTimeout(check, leftMs);
        else end();
      };
      let timer = setTimeout(check, ms);
      this.waits.add(end);
    });
  }

  private emit(
    base: Pick<StageEvent, 'transactionId' | 'stage' | 'stageIndex' | 'attempt' | 'accountId' | 'type'>,
    phase: StagePhase,
    result: StageResult | null,
    durationMs: number | null,
    atMs: number,
  ): void {
    if (!this.options.emitEvents || !this.events.ready()) return;
    const event: StageEvent = {
      kind: 'stage',
      ...base,
      phase,
      result,
      durationMs,
      workerId: this.options.workerId,
      at: new Date(atMs).toISOString(),
    };
    this.events.publish(stageRoutingKey(event), encodeStageEvent(event));
  }
}

/**
 * The runner of a worker with stages, or null without: registers the stage metrics on the worker's
 * metrics (the stats snapshot and Prometheus read them there).
 */
export function stageRunnerFor(
  options: { readonly stages?: StagesOptions | undefined; readonly workerId: string; readonly feedExchange: string },
  channel: () => Channel | null,
  metrics: { stages: StageMetrics | null },
  log: Logger,
): StageRunner | null {
  const stages = options.stages;
  if (!stages || stages.specs.length === 0) return null;
  const stageMetrics = new StageMetrics(stages.specs.map((s) => s.name));
  metrics.stages = stageMetrics;
  log.info({ stages: stages.specs.map(formatStageSpec), seed: stages.seed, emitEvents: stages.emitEvents }, 'processing stages');
  return new StageRunner({ ...stages, workerId: options.workerId, feedExchange: options.feedExchange }, { channel }, stageMetrics, log);
}

/** Longest stages file read: a few specs, not a data file. */
const STAGES_FILE_BYTES_MAX = 64 * 1024;
/** Longest `--stage-seed`, like gen's `--seed`. */
const STAGE_SEED_CHARS_MAX = 64;

/**
 * The stages options of `txsim worker`: `--stage` values (repeatable, in walk order) or the lines of
 * `--stages-file` (one spec a line, `#` comments) — not both, so the order is never in doubt.
 */
export async function stagesOptionsFrom(flags: {
  readonly stage?: readonly string[] | undefined;
  readonly stagesFile?: string | undefined;
  readonly stageSeed?: string | undefined;
  readonly emitStageEvents?: boolean | undefined;
}): Promise<StagesOptions> {
  const values = flags.stage ?? [];
  if (values.length > 0 && flags.stagesFile !== undefined)
    throw new UsageError('--stage and --stages-file: give one or the other, not both');
  let specs: StageSpec[];
  if (flags.stagesFile !== undefined) {
    let text: string;
    try {
      const info = await stat(flags.stagesFile);
      if (info.size > STAGES_FILE_BYTES_MAX)
        throw new UsageError(`--stages-file: ${flags.stagesFile} is ${info.size} bytes, more than ${STAGES_FILE_BYTES_MAX}`);
      text = await readFile(flags.stagesFile, 'utf8');
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw new UsageError(`--stages-file: cannot read ${flags.stagesFile}: ${(err as Error).message}`);
    }
    specs = parseStageSpecs(stageLinesOf(text), `--stages-file ${flags.stagesFile}`);
    if (specs.length === 0) throw new UsageError(`--stages-file: ${flags.stagesFile} names no stage`);
  } else specs = parseStageSpecs(values);
  const seed = flags.stageSeed ?? DEFAULT_STAGE_SEED;
  if (seed.length === 0 || seed.length > STAGE_SEED_CHARS_MAX)
    throw new UsageError(`--stage-seed: must be 1 to ${STAGE_SEED_CHARS_MAX} characters`);
  if (flags.emitStageEvents && specs.length === 0) throw new UsageError('--emit-stage-events needs at least one --stage');
  return { specs, seed, emitEvents: flags.emitStageEvents === true };
}

/** Seed of the stage draws when none is given: fixed, so a restarted worker walks each attempt as before. */
export const DEFAULT_STAGE_SEED = 'txsim';
