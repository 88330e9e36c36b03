import { createHash } from 'node:crypto';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { ConfirmPublisher } from '../amqp/publisher.js';
import { assertTopology, HEADERS, type Topology } from '../amqp/topology.js';
import { customerTargets } from '../db/accounts.js';
import type { Knex } from '../db/knex.js';
import { runExists, runStart, saveRunFlowsPlanned, startRun, startRunInstance } from '../db/runs.js';
import { describeAccountsDist, type AccountsDist } from './account-choice.js';
import { createGenerator, type GeneratedMessage } from './generator.js';
import { countPlan, emptyPlannedFlows, followUpBody, FollowUpQueue, type FlowOptions, type FollowUp, type PlannedFlows } from './flows.js';
import { constantProfile, type LoadProfile, type Stage } from './load-profile.js';
import { LatenessTracker, SendSchedule, WHOLE_RUN, type Instance, type LatenessSummary, type SecondLine } from './send-schedule.js';
import { runIdForSeed, transactionIdFor } from '../domain/ids.js';
import { validateTransaction } from '../domain/message-schema.js';
import { V1_TRANSACTION_TYPES, type GeneratedType, type TransactionType } from '../domain/transaction.js';
import { UsageError } from '../errors.js';
import { createLatencyHistogram, percentilesOf, recordMs, type Percentiles } from '../stats/histogram.js';
import { RunRecord } from './run-record.js';

export interface PublishRunOptions {
  readonly count: number;
  readonly seed: string;
  /** Target rate in messages per second; 0 = as fast as the broker confirms. */
  readonly ratePerS: number;
  readonly mix: Record<GeneratedType, number>;
  /** Explicit account ids, or null for every customer account. */
  readonly accountIds: number[] | null;
  readonly amountMinMinor: number;
  readonly amountMaxMinor: number;
  /** How each message's account is chosen (`--accounts-dist`; `--hot-accounts` is `hot:`). */
  readonly accountsDist: AccountsDist;
  readonly invalidShare: number;
  /** When each message is due (`--profile`); without it `ratePerS` paces the run (0: unpaced). */
  readonly profile?: LoadProfile;
  /** The share of the run this process publishes (`--instance k/n`); the whole run by default. */
  readonly instance?: Instance;
  /** A message sent more than this after it was due counts as late (default 10 ms). */
  readonly lateThresholdMs?: number;
  /** Drop, rather than send, a message already more than this late (`--drop-late`); null/absent: send it late. */
  readonly dropLateMs?: number | null;
  /**
   * Paced: a message not yet due is waited for until its due time plus this, and every message due by
   * then goes out at once (`--linger`, as a producer's linger.ms): fewer, larger writes for the broker
   * and the workers. Latency still counts from each message's due time; lateness from when its group goes out.
   */
  readonly lingerMs?: number;
  /** Most unconfirmed messages at once. */
  readonly windowMax: number;
  readonly confirmTimeoutMs: number;
  /** After losing the broker, how long to keep trying to reconnect and re-send before giving up. */
  readonly reconnectTimeoutMs: number;
  /**
   * Start a new run (a new run id, so new transaction ids) from a seed an earlier run already used,
   * instead of resuming that run. Without it, a seed whose run had other stream options is refused.
   */
  readonly newRun?: boolean;
  /** Card flows (`--capture-share`, …): follow-ups after each authorization; null/absent = none. */
  readonly flows?: FlowOptions | null;
}

/** Re-send rounds before gen gives up on messages the broker keeps refusing. */
const RECOVERY_ROUNDS_MAX = 20;

interface Session {
  readonly connection: ChannelModel;
  readonly channel: ConfirmChannel;
  readonly publisher: ConfirmPublisher;
  closed: boolean;
}

/**
 * Declares the topology, so a first gen on a fresh broker has somewhere to publish. A least-privilege
 * gen user (write-only on the transactions exchange, see scripts/rabbitmq-users.sh) may not declare:
 * then it only checks, passively, that the exchange exists.
 */
async function ensureExchange(connection: ChannelModel, topology: Topology): Promise<void> {
  const setup = await connection.createChannel();
  setup.on('error', () => {});
  try {
    await assertTopology(setup, topology);
    await setup.close();
  } catch (err) {
    if ((err as { code?: number }).code !== 403) throw err;
    const check = await connection.createChannel();
    await check.checkExchange(topology.transactionsExchange);
    await check.close();
  }
}

/** A confirm channel (topology asserted) and its publisher on a connection. */
async function openSession(connection: ChannelModel, topology: Topology, options: PublishRunOptions): Promise<Session> {
  await ensureExchange(connection, topology);
  const channel = await connection.createConfirmChannel();
  const session: Session = {
    connection,
    channel,
    publisher: new ConfirmPublisher(channel, { windowMax: options.windowMax, confirmTimeoutMs: options.confirmTimeoutMs }),
    closed: false,
  };
  channel.on('error', () => {}); // surfaced through the publisher's failed confirms
  channel.on('close', () => (session.closed = true));
  connection.on('error', () => {});
  return session;
}

export interface RunProgress {
  readonly published: number;
  readonly confirmed: number;
  readonly returned: number;
  readonly failed: number;
}

/** Late messages by default: sent more than this after they were due. */
export const LATE_THRESHOLD_DEFAULT_MS = 10;

export interface RunSummary extends RunProgress, LatenessSummary {
  readonly runId: string;
  readonly seed: string;
  /** How the run was sent: published to RabbitMQ, or posted to `txsim serve` (`gen --via`). */
  readonly via: 'amqp' | 'http';
  readonly requested: number;
  readonly invalid: number;
  /** Ids of the run that were never sent (the run was interrupted or gave up before publishing them). */
  readonly notPublished: number;
  /** Stopped by SIGINT/SIGTERM (the abort signal) before the end. */
  readonly interrupted: boolean;
  /** From the start to the end of the run, the card flows' last follow-ups (sent up to seconds after the last primary message) included. */
  readonly elapsedMs: number;
  /**
   * The run's primary messages confirmed per second, over the span in which they were published and
   * confirmed: from the start of publishing to the last one's confirm (`publishSpanMs`). The card
   * flows' follow-ups are left out of both, so a run with flows reads as the same rate as one without:
   * counted over `elapsedMs` instead, the wait for the last follow-ups diluted it (505/s for a run
   * that sent 1,946 a second).
   */
  readonly ratePerS: number;
  /** The span `ratePerS` is over: the start of publishing to the last primary message's confirm (over HTTP: its answer). */
  readonly publishSpanMs?: number;
  /** Publish → confirm latency, measured from each message's intended send time (no coordinated omission). */
  readonly confirmLatencyMs: Percentiles;
  readonly completed: boolean;
  readonly firstError: string | null;
  /** The profile's stages (null when unpaced), and the instance this process published. */
  readonly profile: { readonly stages: readonly Stage[]; readonly durationMs: number } | null;
  readonly instance: Instance;
  readonly accountsDist: string;
  /**
   * Over HTTP: poison the API refused at the door (400), as it should; `verify --run` expects no
   * outcome for these. Always 0 over AMQP, where every poison message reaches a worker.
   */
  readonly refused: number;
  /** The HTTP figures of a run sent with `--via`; null over AMQP. */
  readonly http: HttpRunFigures | null;
  /**
   * Card flows: what gen planned for the authorizations it sent (how each hold should end, and the
   * follow-ups), and the follow-ups published and confirmed (not counted in `published`, which counts
   * the run's `count` primary messages). Null for a run without flows.
   */
  readonly flows: { readonly planned: PlannedFlows; readonly published: number; readonly confirmed: number } | null;
}

/** What a run sent through `txsim serve` measured beside the counts every run has. */
export interface HttpRunFigures {
  /** The server's origin, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  readonly concurrency: number;
  /** Answers by HTTP status, e.g. {"202": 990, "400": 10}. */
  readonly byStatus: Record<string, number>;
  /** Requests that got no answer (connection refused or reset, timeout). */
  readonly noAnswer: number;
  /** 429 answers (the server's per-token rate limit) waited out as Retry-After said, and sent again. */
  readonly throttled: number;
  /** Requests answered per second (every status). */
  readonly requestsPerS: number;
  /** Request latency from each request's intended send time to its answer (the API answers 202 after the broker's confirm). */
  readonly requestLatencyMs: Percentiles;
}

export interface PublishRunDeps {
  readonly db: Knex;
  readonly connection: ChannelModel;
  readonly topology: Topology;
  /** A new connection after the broker went away; without it a lost channel ends the run. */
  readonly reconnect?: () => Promise<ChannelModel>;
}

export interface PublishRunHooks {
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: RunProgress) => void;
  readonly onRecover?: (unconfirmed: number) => void;
  /** Saving the run record failed (database down): its counts are kept and saved again. */
  readonly onRecordOutage?: (err: unknown) => void;
  /** The run record was saved again after `failedSaves` failed saves. */
  readonly onRecordRecovered?: (failedSaves: number) => void;
  /** Each second of the run once it has passed: due, published, late, dropped. */
  readonly onSecond?: (line: SecondLine) => void;
  /** Hands over a reader of the live counters once publishing starts (the Prometheus exporter reads it per scrape). */
  readonly onPublisher?: (progress: () => RunProgress) => void;
}

/**
 * The options that decide the stream of a run: the same seed with these sends the same messages, so
 * a re-run with them resumes the run. Rate, window and timeouts only change how it is sent.
 */
export function streamOptionsOf(options: PublishRunOptions) {
  const accounts = options.accountIds
    ? `${options.accountIds.length} ids, sha256 ${createHash('sha256').update(options.accountIds.join(',')).digest('hex').slice(0, 16)}`
    : 'all';
  return {
    count: options.count,
    mix: recordedMix(options.mix),
    accounts,
    amountMinMinor: options.amountMinMinor,
    amountMaxMinor: options.amountMaxMinor,
    // Kept for runs recorded before --accounts-dist: a hot set of 0 share was the uniform choice.
    hotShare: options.accountsDist.kind === 'hot' ? options.accountsDist.share : options.accountsDist.kind === 'uniform' ? 0 : null,
    hotSetSize: options.accountsDist.kind === 'hot' ? options.accountsDist.setSize : 3,
    accountsDist: describeAccountsDist(options.accountsDist),
    invalidShare: options.invalidShare,
    // The instance count decides which ids each instance sends, so every instance of a run must agree on it.
    instances: (options.instance ?? WHOLE_RUN).count,
    // Only with flows: a run recorded without them compares equal to the same options now.
    ...(options.flows ? { flows: options.flows } : {}),
  };
}

/**
 * The mix as a run records it: the v1 types always, a v1.1 type only when it has a weight, so a run
 * recorded before v1.1 existed compares equal to the same options now (and can be resumed).
 */
function recordedMix(mix: Record<GeneratedType, number>): Partial<Record<GeneratedType, number>> {
  return Object.fromEntries(
    Object.entries(mix).filter(([type, weight]) => weight > 0 || V1_TRANSACTION_TYPES.includes(type as TransactionType)),
  );
}

/** Where the stream options of a re-used seed differ from the earlier run's: `count 20000 → 500`, … */
export function streamDifferences(earlier: Record<string, unknown>, now: Record<string, unknown>): string[] {
  return Object.keys(now)
    .filter((key) => JSON.stringify(earlier[key]) !== JSON.stringify(now[key]))
    .map((key) => `${key} ${JSON.stringify(earlier[key] ?? null)} → ${JSON.stringify(now[key])}`);
}

/** `--new-run` ids: the k-th new run of a seed. A NUL cannot be typed in a `--seed`, so no seed maps here. */
function newRunIdFor(seed: string, k: number): string {
  return runIdForSeed(`${seed}\u0000new-run-${k}`);
}

/**
 * The run id for this seed and these options: the seed's own run (new, or resumed with the same
 * stream options), or with `newRun` the first free new-run id. A re-used seed with other stream
 * options is refused: continuing would overwrite the earlier run's record.
 */
async function chooseRunId(db: Knex, options: PublishRunOptions, stream: ReturnType<typeof streamOptionsOf>): Promise<string> {
  const runId = runIdForSeed(options.seed);
  if (options.newRun && (options.instance ?? WHOLE_RUN).count > 1) {
    // Each instance would pick its own next free id: the halves of one run would become two runs.
    throw new UsageError('--new-run cannot be combined with --instance: give the instances a fresh --seed instead');
  }
  if (options.newRun) {
    if (!(await runExists(db, runId))) return runId;
    for (let k = 2; ; k++) if (!(await runExists(db, newRunIdFor(options.seed, k)))) return newRunIdFor(options.seed, k);
  }
  const earlier = await runStart(db, runId);
  if (!earlier) return runId;
  // Runs recorded before the stream options were stored are compared by their count alone.
  const stored = (JSON.parse(earlier.optionsJson) as { stream?: Record<string, unknown> }).stream ?? { count: earlier.countRequested };
  const differences = streamDifferences(stored, pick(stream, Object.keys(stored)));
  if (differences.length === 0) return runId;
  throw new UsageError(
    `--seed ${options.seed}: run ${runId} used this seed with other options (${differences.join(', ')}); ` +
      'run gen with the same options to resume it, or add --new-run to start a new run from this seed',
  );
}

/** The flow epoch a run's row holds (the one it was first started with), or `fallback` when it holds none. */
async function flowEpochOf(db: Knex, runId: string, fallback: number): Promise<number> {
  const earlier = await runStart(db, runId);
  const stored = earlier ? (JSON.parse(earlier.optionsJson) as { flowEpochMs?: unknown }).flowEpochMs : undefined;
  return typeof stored === 'number' && Number.isSafeInteger(stored) ? stored : fallback;
}

function pick(from: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, from[k]]));
}

/** A run ready to send: its id (new or resumed), its generator and its record (already started). */
export interface PreparedRun {
  readonly runId: string;
  readonly generator: ReturnType<typeof createGenerator>;
  readonly record: RunRecord;
  /** When each message of this instance is due (the profile or --rate), and how late they went out. */
  readonly schedule: SendSchedule;
  readonly tracker: LatenessTracker;
  readonly instance: Instance;
}

/**
 * What every run does before sending, whatever it is sent through: the target accounts, the run id
 * (a re-used seed resumes its run, or is refused when its stream options differ), the seeded
 * generator, and the `runs` row marked running. `sendOptions` are how it is sent (stored with the
 * run; they never change the stream).
 */
export async function prepareRun(
  db: Knex,
  options: PublishRunOptions,
  hooks: Pick<PublishRunHooks, 'onRecordOutage' | 'onRecordRecovered'>,
  sendOptions: Record<string, unknown>,
): Promise<PreparedRun> {
  const accounts = await customerTargets(db, options.accountIds);
  if (accounts.length === 0) {
    throw new UsageError(
      options.accountIds
        ? '--accounts: none of those accounts exist — run `txsim accounts seed`'
        : 'no customer accounts — run `txsim accounts seed --count 100` first',
    );
  }
  if (options.mix.transfer > 0 && accounts.length < 2)
    throw new UsageError('--mix: a transfer needs two accounts, and only one customer account is in play');
  const stream = streamOptionsOf(options);
  const runId = await chooseRunId(db, options, stream);
  const instance = options.instance ?? WHOLE_RUN;
  const schedule = new SendSchedule(
    options.profile ?? (options.ratePerS > 0 ? constantProfile(options.ratePerS, options.count) : null),
    options.count,
    instance,
  );
  // Flows date the expiry of holds left open from the run's first start: a resumed run keeps it, so it
  // sends the same bodies (an authorization's expiresAt is part of its identity). Instances of a split
  // run started together each propose one; the run's row keeps the first, and every instance uses that.
  const proposedEpochMs = options.flows ? Date.now() : null;
  const tracker = new LatenessTracker(
    schedule,
    options.lateThresholdMs ?? LATE_THRESHOLD_DEFAULT_MS,
    options.dropLateMs ?? null,
    options.lingerMs ?? 0,
  );
  const optionsJson = JSON.stringify({
    stream,
    ratePerS: options.ratePerS,
    profile: options.profile?.stages ?? null,
    // How the run was paced and what counted as late: sending options, so a resume may change them.
    lingerMs: options.lingerMs ?? 0,
    lateThresholdMs: options.lateThresholdMs ?? LATE_THRESHOLD_DEFAULT_MS,
    dropLateMs: options.dropLateMs ?? null,
    windowMax: options.windowMax,
    confirmTimeoutMs: options.confirmTimeoutMs,
    reconnectTimeoutMs: options.reconnectTimeoutMs,
    ...(proposedEpochMs !== null ? { flowEpochMs: proposedEpochMs } : {}),
    ...sendOptions,
  });
  await startRun(db, { id: runId, seed: options.seed, countRequested: options.count, optionsJson, startedAt: new Date() });
  const flowEpochMs = proposedEpochMs !== null ? await flowEpochOf(db, runId, proposedEpochMs) : null;
  const generator = createGenerator({
    runId,
    seed: options.seed,
    accounts,
    mix: options.mix,
    amountMinMinor: options.amountMinMinor,
    amountMaxMinor: options.amountMaxMinor,
    accountsDist: options.accountsDist,
    invalidShare: options.invalidShare,
    ...(options.flows && flowEpochMs !== null
      ? { flows: { options: options.flows, epochMs: flowEpochMs, dueMs: (index: number) => schedule.dueMs(index) } }
      : {}),
  });
  if (instance.count > 1) {
    await startRunInstance(db, runId, { no: instance.no, count: instance.count, countShare: schedule.shareCount, startedAt: new Date() });
  }
  const record = new RunRecord(
    db,
    runId,
    {
      ...(hooks.onRecordOutage ? { onOutage: hooks.onRecordOutage } : {}),
      ...(hooks.onRecordRecovered ? { onRecovered: hooks.onRecordRecovered } : {}),
    },
    instance,
  );
  return { runId, generator, record, schedule, tracker, instance };
}

/**
 * Publishes one run of generated transactions with confirms and records it, so `verify` can
 * account for every id. Stops early (summary.completed = false) on abort or when the broker goes
 * away; the summary then says exactly how many messages were never confirmed.
 */
export async function publishRun(deps: PublishRunDeps, options: PublishRunOptions, hooks: PublishRunHooks = {}): Promise<RunSummary> {
  const { runId, generator, record, schedule, tracker, instance } = await prepareRun(deps.db, options, hooks, {});
  const run = new RunPublisher(deps, options, hooks, record, generator, schedule, tracker);
  hooks.onPublisher?.(() => run.progress());
  const elapsedMs = await run.publish();
  const failed = run.unconfirmedCount;
  // Dropped ids are accounted for (recorded as dropped), so a run that dropped some still completed its schedule.
  const completed = run.published + tracker.dropped === schedule.shareCount && failed === 0;
  // The record says how far the run got: count_requested − published ids were never sent.
  await record.finish(
    run.returnedIds,
    {
      published: run.published,
      confirmed: run.confirmed,
      returned: run.returnedIds.length,
      nacked: failed,
      invalid: run.invalid,
      late: tracker.late,
      dropped: tracker.dropped,
      status: completed ? 'completed' : 'incomplete',
      finishedAt: new Date(),
    },
    options.reconnectTimeoutMs,
  );
  // What the flows were planned to do, for verify --run to show beside what the holds did: each
  // instance of a split run saves its own share, and verify adds them up.
  if (options.flows) await saveRunFlowsPlanned(deps.db, runId, JSON.stringify(run.planned), instance.count === 1 ? null : instance.no);
  return {
    runId,
    seed: options.seed,
    via: 'amqp',
    requested: options.count,
    published: run.published,
    confirmed: run.confirmed,
    returned: run.returnedIds.length,
    failed,
    invalid: run.invalid,
    notPublished: schedule.shareCount - run.published - tracker.dropped,
    interrupted: hooks.signal?.aborted === true && !completed,
    elapsedMs,
    ratePerS: ratePerSOf(run.confirmed, run.publishSpanMs),
    publishSpanMs: Math.round(run.publishSpanMs),
    confirmLatencyMs: percentilesOf(run.histogram),
    completed,
    firstError: run.firstError,
    ...tracker.summary(run.scheduleElapsedMs),
    profile: schedule.profile ? { stages: schedule.profile.stages, durationMs: schedule.profile.durationMs } : null,
    instance,
    accountsDist: describeAccountsDist(options.accountsDist),
    refused: 0,
    http: null,
    flows: options.flows ? { planned: run.planned, published: run.followUpsPublished, confirmed: run.followUpsConfirmed } : null,
  };
}

/** Messages per second, to the message; 0 over no time. */
function ratePerSOf(messages: number, spanMs: number): number {
  return spanMs > 0 ? Math.round((messages * 1000) / spanMs) : 0;
}

type Generator = ReturnType<typeof createGenerator>;

/** A message sent and not yet confirmed, kept to be sent again after a broker restart. */
interface InFlight {
  readonly generated: Pick<GeneratedMessage, 'id' | 'routingKey' | 'contentType' | 'body' | 'message'>;
  /** A card flow's follow-up (counted apart from the run's primary messages). */
  readonly followUp?: boolean;
  /** When it was due (performance.now() clock): latency counts from here. */
  readonly intendedMs: number;
  /** Its per-account sequence number (HEADERS.accountSeq), fixed at first send so a re-send carries the same one. */
  readonly accountSeq: number;
}

/**
 * The publishing half of a run: sends the generated messages on a confirm channel, tracks what the
 * broker has not confirmed yet, and after a failure reconnects and sends that again. Its counters
 * are what the run record and the summary report.
 */
class RunPublisher {
  published = 0;
  confirmed = 0;
  /** Poison messages among those published. */
  invalid = 0;
  readonly returnedIds: string[] = [];
  readonly histogram = createLatencyHistogram();
  firstError: string | null = null;
  /** Card flows: what was planned for the authorizations sent, and the follow-ups sent and confirmed. */
  readonly planned = emptyPlannedFlows();
  followUpsPublished = 0;
  followUpsConfirmed = 0;
  /** Follow-ups not due yet, by due time (performance.now() clock). */
  private readonly followUps = new FollowUpQueue();
  /**
   * Every published message stays here until the broker confirms it: after a broker restart these
   * are published again (ids dedupe at the workers), or counted exactly as unconfirmed.
   */
  private readonly unconfirmed = new Map<number, InFlight>();
  /**
   * Last sequence number given per account (the debit account: a message's accountId), for the
   * ordering check of an ordered namespace. Per run and per gen instance: instances count apart
   * (their messages carry HEADERS.accountSeqStream = k of --instance k/n).
   */
  private readonly accountSeqs = new Map<string, number>();
  /** A publish or confirm failed: recover before sending more. */
  private broken = false;
  private recoveries = 0;
  private session: Session | null = null;

  constructor(
    private readonly deps: PublishRunDeps,
    private readonly options: PublishRunOptions,
    private readonly hooks: PublishRunHooks,
    private readonly record: RunRecord,
    private readonly generator: Generator,
    private readonly schedule: SendSchedule,
    private readonly tracker: LatenessTracker,
  ) {}

  private get runId(): string {
    return this.record.runId;
  }

  /** When the group of messages gen last waited for goes out (`--linger`; performance.now() time). */
  private groupSendAtMs = Number.NEGATIVE_INFINITY;
  /** Ms from the start of the schedule (the channel open) to the end of publishing: the span of the per-second lines. */
  scheduleElapsedMs = 0;
  /** When the schedule started (performance.now(); null before the channel is open). */
  private scheduleStartMs: number | null = null;
  /** When the broker confirmed the last primary message so far (performance.now()); follow-ups not counted. */
  private lastPrimaryConfirmMs: number | null = null;

  /**
   * Ms from the start of the schedule to the last primary message's confirm: the span the run's
   * primary messages were published and confirmed in, without the wait for the last card-flow
   * follow-ups after them. 0 when none was confirmed.
   */
  get publishSpanMs(): number {
    return this.scheduleStartMs === null || this.lastPrimaryConfirmMs === null ? 0 : this.lastPrimaryConfirmMs - this.scheduleStartMs;
  }

  get unconfirmedCount(): number {
    return this.unconfirmed.size;
  }

  progress(): RunProgress {
    return {
      published: this.published,
      confirmed: this.confirmed,
      returned: this.returnedIds.length,
      failed: this.broken ? this.unconfirmed.size : 0,
    };
  }

  /** Publishes the whole run (or until aborted or given up) and waits for its confirms; returns the elapsed ms. */
  async publish(): Promise<number> {
    const t0 = performance.now();
    const onProgress = this.hooks.onProgress;
    const progressTimer = onProgress ? setInterval(() => onProgress(this.progress()), 200) : null;
    // Progress is saved every second, so verify can tell a killed run's unsent tail from lost messages.
    // A failed save (database down) is not fatal: the counts stay here and the next save writes them.
    const saveTimer = setInterval(() => void this.record.saveProgress(this.counts()), 1_000);
    const onSecond = this.hooks.onSecond;
    // The schedule starts once the channel is open: declaring the topology is not the publisher falling behind.
    let scheduleStart: number | null = null;
    const emitSeconds = (uptoMs: number) => onSecond && this.tracker.takeCompleted(uptoMs).forEach((line) => onSecond(line));
    const secondTimer = onSecond ? setInterval(() => scheduleStart !== null && emitSeconds(performance.now() - scheduleStart), 250) : null;
    try {
      this.session = await openSession(this.deps.connection, this.deps.topology, this.options);
      scheduleStart = performance.now();
      this.scheduleStartMs = scheduleStart;
      if (await this.sendAll(scheduleStart)) await this.settle();
    } finally {
      if (progressTimer) clearInterval(progressTimer);
      clearInterval(saveTimer);
      if (secondTimer) clearInterval(secondTimer);
      // The last, partial second too: every line the summary's `seconds` has.
      if (scheduleStart !== null) {
        this.scheduleElapsedMs = performance.now() - scheduleStart;
        emitSeconds(Math.ceil(this.scheduleElapsedMs / 1000) * 1000);
      }
      await this.closeSession();
    }
    // Let the last confirm callbacks run before counting.
    await new Promise((resolve) => setImmediate(resolve));
    return performance.now() - t0;
  }

  private counts() {
    return { published: this.published, confirmed: this.confirmed, late: this.tracker.late, dropped: this.tracker.dropped };
  }

  /** Publishes every index of this instance in order; false when a recovery gave up. */
  private async sendAll(t0: number): Promise<boolean> {
    for (const index of this.schedule.indices()) {
      if (this.hooks.signal?.aborted) break;
      if (this.broken && !(await this.recover())) return false;
      // Open loop: message i is due at its time in the profile, whatever happened before. Latency is
      // counted from that intended time, and lateness is recorded, so a stall shows up instead of
      // silently slowing the schedule.
      const dueMs = this.schedule.dueMs(index);
      const intendedMs = dueMs === null ? performance.now() : t0 + dueMs;
      // Follow-ups due before this message go first, each at its own time.
      if (!(await this.sendFollowUps(intendedMs))) return false;
      await this.waitUntilDue(intendedMs);
      // Waiting for room in the window is part of being late: the drop decision is taken once the
      // message could actually go out.
      await this.currentSession().publisher.waitForRoom();
      const latenessMs = dueMs === null ? 0 : this.latenessOf(intendedMs);
      if (this.tracker.shouldDrop(latenessMs)) {
        this.tracker.droppedAt(performance.now() - t0);
        this.record.addDrop(transactionIdFor(this.runId, index));
        continue;
      }
      // In paced mode a message is "created" at its intended time, so end-to-end latency also
      // counts any delay gen itself added.
      const generated = this.generator.at(index, new Date(dueMs !== null ? performance.timeOrigin + intendedMs : Date.now()));
      if (generated.kind === 'valid' && !validateTransaction(generated.message)) {
        throw new Error(`generator produced an invalid message at index ${index}: ${JSON.stringify(validateTransaction.errors)}`);
      }
      if (generated.kind !== 'valid') this.invalid++;
      if (generated.flow) {
        countPlan(this.planned, generated.flow);
        for (const f of generated.flow.followUps) this.followUps.push(intendedMs + f.delayMs, f);
      }
      this.published++;
      try {
        await this.send(index, { generated, intendedMs, accountSeq: this.nextAccountSeq(generated) });
        if (dueMs !== null) this.tracker.sent(this.latenessOf(intendedMs), performance.now() - t0);
        else this.tracker.sent(0, performance.now() - t0);
      } catch (err) {
        // Kept in `unconfirmed`: the next recovery sends it again.
        this.broken = true;
        this.firstError ??= (err as Error).message;
      }
    }
    // The last follow-ups, each at its time (up to a few seconds after the last primary message).
    if (!this.hooks.signal?.aborted && !(await this.sendFollowUps(Number.POSITIVE_INFINITY))) return false;
    return true;
  }

  /**
   * Waits for a message due at `dueAtMs` (performance.now() time): not at all when it is due (or due
   * within the timer's millisecond: it goes with the messages just sent); else until then plus the
   * linger, so the ones due meanwhile join it — its group goes out at `groupSendAtMs`.
   */
  private async waitUntilDue(dueAtMs: number): Promise<void> {
    const waitMs = dueAtMs - performance.now();
    if (waitMs <= 1) return;
    const lingerMs = this.options.lingerMs ?? 0;
    this.groupSendAtMs = dueAtMs + lingerMs;
    await new Promise((resolve) => setTimeout(resolve, waitMs + lingerMs));
  }

  /**
   * How late a message due at `dueAtMs` goes out now: counted from when it was meant to go out — its
   * group's send time when it belongs to the group gen waited for (`--linger`), else its due time. So a
   * message at the end of a group gets no slack of its own, and a gen that never waits gets none at all.
   */
  private latenessOf(dueAtMs: number): number {
    return performance.now() - (dueAtMs <= this.groupSendAtMs ? this.groupSendAtMs : dueAtMs);
  }

  /** Sends the follow-ups due up to `untilMs`, waiting for each one's time; false when a recovery gave up. */
  private async sendFollowUps(untilMs: number): Promise<boolean> {
    for (let next = this.followUps.peek(); next !== undefined && next.dueMs <= untilMs; next = this.followUps.peek()) {
      if (this.hooks.signal?.aborted) return true;
      if (this.broken && !(await this.recover())) return false;
      await this.waitUntilDue(next.dueMs);
      await this.currentSession().publisher.waitForRoom();
      this.followUps.pop();
      await this.sendFollowUp(next.followUp, next.dueMs);
    }
    return true;
  }

  private async sendFollowUp(followUp: FollowUp, intendedMs: number): Promise<void> {
    const { routingKey, body, message } = followUpBody(followUp, new Date());
    if (!validateTransaction(message)) {
      throw new Error(`flow produced an invalid ${followUp.type} ${followUp.id}: ${JSON.stringify(validateTransaction.errors)}`);
    }
    if (followUp.kind !== 'valid') this.invalid++;
    this.followUpsPublished++;
    this.record.addFollowUp(followUp.id);
    try {
      // Keyed below zero in `unconfirmed`: apart from the primary indices.
      // A follow-up joins its account's sequence like any message: in ordered mode it comes after its authorization.
      const generated = { id: followUp.id, routingKey, contentType: 'application/json', body, message };
      await this.send(-this.followUpsPublished, { generated, intendedMs, followUp: true, accountSeq: this.nextAccountSeq(generated) });
    } catch (err) {
      this.broken = true;
      this.firstError ??= (err as Error).message;
    }
  }

  /** Waits for the outstanding confirms, recovering until nothing is unconfirmed (or aborted, or given up). */
  private async settle(): Promise<void> {
    for (;;) {
      await this.currentSession()
        .publisher.settled()
        .catch(() => {});
      await new Promise((resolve) => setImmediate(resolve));
      if (this.unconfirmed.size === 0 || this.hooks.signal?.aborted) return;
      if (!(await this.recover())) return;
    }
  }

  /** The account a message is routed and sequenced by: its accountId, or its id when it has none (poison). */
  private nextAccountSeq(generated: Pick<GeneratedMessage, 'id' | 'message'>): number {
    const key = orderingKeyOf(generated);
    const seq = (this.accountSeqs.get(key) ?? 0) + 1;
    this.accountSeqs.set(key, seq);
    return seq;
  }

  private async send(index: number, entry: InFlight): Promise<void> {
    const { generated, intendedMs } = entry;
    this.unconfirmed.set(index, entry);
    const handle = await this.currentSession().publisher.publish(
      this.deps.topology.transactionsExchange,
      generated.routingKey,
      generated.body,
      {
        messageId: generated.id,
        contentType: generated.contentType,
        timestamp: Math.floor(Date.now() / 1000),
        // The start of the queue-wait hop, in ms (the AMQP timestamp has whole seconds only).
        headers: {
          [HEADERS.runId]: this.runId,
          [HEADERS.publishedAtMs]: Date.now(),
          [HEADERS.accountId]: orderingKeyOf(generated),
          [HEADERS.accountSeq]: entry.accountSeq,
          [HEADERS.accountSeqStream]: this.schedule.instance.no,
        },
      },
    );
    handle.confirmed.then(
      (outcome) => {
        if (!this.unconfirmed.delete(index)) return;
        if (outcome === 'returned') this.returnedIds.push(generated.id);
        else if (entry.followUp) this.followUpsConfirmed++;
        else {
          this.confirmed++;
          this.lastPrimaryConfirmMs = performance.now();
        }
        recordMs(this.histogram, performance.now() - intendedMs);
      },
      (err: Error) => {
        this.broken = true;
        this.firstError ??= err.message;
      },
    );
  }

  /** After a failure: wait for every pending confirm, reconnect if the channel died, re-send what is unconfirmed. */
  private async recover(): Promise<boolean> {
    await this.currentSession()
      .publisher.settled()
      .catch(() => {});
    if (++this.recoveries > RECOVERY_ROUNDS_MAX) return false;
    if (this.currentSession().closed && !(await this.reopen())) return false;
    this.broken = false;
    this.hooks.onRecover?.(this.unconfirmed.size);
    // In the order they were first sent (a Map keeps its first insertion's place when a re-send sets the
    // key again), so each account's messages go out again in their sequence order. Sorting by key put the
    // follow-ups (keyed below zero) first, newest first, ahead of every primary message.
    for (const [index, entry] of [...this.unconfirmed.entries()]) {
      try {
        await this.send(index, entry);
      } catch {
        this.broken = true;
        break;
      }
    }
    return true;
  }

  /** A new session on a new connection, retried with backoff until `reconnectTimeoutMs`; false when there is none. */
  private async reopen(): Promise<boolean> {
    const { reconnect, topology } = this.deps;
    if (!reconnect) return false;
    const deadline = Date.now() + this.options.reconnectTimeoutMs;
    for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, 5_000)) {
      if (this.hooks.signal?.aborted || Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      try {
        this.session = await openSession(await reconnect(), topology, this.options);
        return true;
      } catch (err) {
        this.firstError = (err as Error).message;
      }
    }
  }

  private currentSession(): Session {
    if (!this.session) throw new Error('run publisher used before publish()');
    return this.session;
  }

  private async closeSession(): Promise<void> {
    const session = this.session;
    if (!session) return;
    await session.channel.close().catch(() => {});
    if (session.connection !== this.deps.connection) await session.connection.close().catch(() => {});
  }
}

/** The value of HEADERS.accountId: the message's account id, or its id when it has none (some poison). */
function orderingKeyOf(generated: Pick<GeneratedMessage, 'id' | 'message'>): string {
  return generated.message ? String(generated.message.accountId) : generated.id;
}
