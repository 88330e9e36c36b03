import type { ConsumeMessage } from 'amqplib';
import type { ConnectionFactory } from '../amqp/connect.js';
import { ManagedConnection, type Delivery as AmqpDelivery, type ManagedChannel, type ManagedConsumer } from '../amqp/managed-channel.js';
import { typedProperties } from '../amqp/message-properties.js';
import type { ConfirmPublisher } from '../amqp/publisher.js';
import { assertTopology, HEADERS, PROCESS_QUEUE_DELIVERY_LIMIT, type Topology } from '../amqp/topology.js';
import type { Knex } from '../db/knex.js';
import { pingDatabase } from '../db/ping.js';
import { partitionLeaseStore, type PartitionLeaseStore } from '../db/partition-leases.js';
import { insertFailures, type FailureRecord } from '../db/transaction-failures.js';
import { decodeTransaction } from '../domain/message-schema.js';
import { UUID_PATTERN } from '../domain/ids.js';
import { runShutdownSteps } from '../lifecycle.js';
import type { Logger } from '../log.js';
import { WorkerMetrics } from '../stats/worker-metrics.js';
import { applyBatch, type ApplyContext, type Incoming, type Outcome } from './apply-batch.js';
import { classifyFailure, type ClassifiedFailure } from './classify-failure.js';
import { FailureReport } from './failure-report.js';
import { DEFAULT_LEASE_TIMING, PartitionConsumers, type LeaseTiming } from './partition-leases.js';
import { stageRunnerFor, type StageRunner, type StagesOptions, type StageVerdict } from './stages.js';

/** Settings of one worker replica. Units are in the names. */
export interface WorkerOptions {
  readonly workerId: string;
  readonly amqpUrl: string;
  readonly topology: Topology;
  /** Unacknowledged deliveries RabbitMQ may hand this worker: the concurrency bound. */
  readonly prefetchCount: number;
  /** Most messages applied in one DB transaction (1 = one commit per message). */
  readonly batchSizeMax: number;
  /** How long a partial batch waits for more messages before it is applied anyway. */
  readonly batchWaitMs: number;
  /** Batches applied at once (each its own DB transaction and pooled connection). */
  readonly transactionsMax: number;
  /** Attempts at a message that keeps failing with system errors before it is parked. */
  readonly attemptsMax: number;
  /** How long shutdown waits for in-flight messages before closing anyway. */
  readonly shutdownDeadlineMs: number;
  /** How long start() waits for the broker, retries included, before it fails (default 15 s). */
  readonly connectTimeoutMs?: number;
  /**
   * How often the `info` summary line (applied / rejected / retried / parked since the last one) is
   * logged, when anything happened; per-transaction lines are at `debug`. Default 1 s.
   */
  readonly summaryIntervalMs?: number;
  /**
   * Fault injection for the fault suite: SIGKILL this process right after the n-th commit, before
   * any of that batch is acked — the worst moment to crash. Off (undefined) in normal use.
   */
  readonly crashAfterCommits?: number;
  /**
   * Ordered mode (the topology has partitions): consume the partitions this worker leases, and retry
   * system errors in place (see README "Per-account ordering"). Heartbeat and lease timing; default
   * DEFAULT_LEASE_TIMING.
   */
  readonly leaseTiming?: LeaseTiming;
  /** Simulated processing stages each message walks before it is applied (`--stage`); none by default. */
  readonly stages?: StagesOptions;
}

/**
 * What the worker needs besides RabbitMQ, injected so unit tests run it without a database (and
 * with a fake broker). `workerDepsFor(db)` gives the real ones.
 */
export interface WorkerDeps {
  /** Applies one batch in one DB transaction; throws (after rolling back) on a system error. */
  readonly applyBatch: (items: readonly Incoming[], context: ApplyContext) => Promise<Outcome[]>;
  /** Resolves when the database answers; the paused worker probes with it. */
  readonly pingDatabase: () => Promise<void>;
  /** Opens the recovering AMQP connection; the real one unless a test passes a fake. */
  readonly connect?: ConnectionFactory;
  /** Records failed attempts (`transaction_failures`), best-effort; absent = not recorded. */
  readonly recordFailures?: (records: readonly FailureRecord[]) => Promise<void>;
  /** The partition leases of an ordered namespace; required when the topology is ordered. */
  readonly partitionLeases?: PartitionLeaseStore;
}

/** The real dependencies over one knex pool. */
export function workerDepsFor(db: Knex, namespace?: string): WorkerDeps {
  return {
    applyBatch: (items, context) => applyBatch(db, items, context),
    pingDatabase: () => pingDatabase(db),
    recordFailures: (records) => insertFailures(db, records),
    ...(namespace === undefined ? {} : { partitionLeases: partitionLeaseStore(db, namespace) }),
  };
}

/** A delivery (tagged with its channel generation) as the worker holds it. */
interface Delivery extends AmqpDelivery {
  readonly incoming: Incoming;
  readonly receivedAtMs: number;
  /** Set when a processing stage declined this attempt: applied as that reject (see Incoming). */
  stageDecline?: Incoming['stageDecline'];
}

/** How long shutdown waits for failed-attempt records still being written. */
const FAILURE_RECORDS_DEADLINE_MS = 2_000;

/** Capped backoff of the database probe while paused. */
const DB_PROBE_FIRST_MS = 250;
const DB_PROBE_MAX_MS = 5_000;

/**
 * One worker replica: consumes the process queue, applies messages in batches (validate →
 * authorize under row locks → one DB transaction → commit → ack), sends business rejects to the
 * errors queue, retries system errors through the delay queues and parks them after
 * `attemptsMax`. Reconnects to RabbitMQ by itself; deliveries of a channel that is gone are
 * dropped, never acked (RabbitMQ redelivers them, and idempotency makes that harmless).
 */
export class Worker {
  readonly metrics = new WorkerMetrics();
  private readonly connection: ManagedConnection;
  /** Publishes rejects, retries and parked messages (registered first, so it is open before deliveries come). */
  private readonly publishChannel: ManagedChannel;
  /** Consumes the process queue; its deliveries are settled with multiple-acks, in order. */
  private readonly consumeChannel: ManagedChannel;
  private readonly consumer: Pick<ManagedConsumer, 'pause' | 'resume' | 'cancel'>;
  /** Ordered mode: the consumers of the leased partitions (the `consumer` then); null otherwise. */
  readonly partitions: PartitionConsumers | null;
  /** Retries and parks as events for the live feed and rows for the status reads (best-effort). */
  private readonly failureReport: FailureReport;
  /** The simulated processing stages (src/worker/stages.ts); null without `--stage`. */
  private readonly stages: StageRunner | null;
  private buffer: Delivery[] = [];
  /** Batches being applied right now (at most `transactionsMax`). */
  private readonly flushes = new Set<Promise<void>>();
  private batchTimer: NodeJS.Timeout | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;
  private pausedForDatabase = false;
  /** Ordered mode: deliveries handed back to RabbitMQ so far (nackRequeue), watched across a step. */
  private handedBack = 0;
  /** Deliveries of the batches being processed, not yet acked or handed back (the in-flight gauge). */
  private readonly inBatches = new Set<ConsumeMessage>();
  /** Ordered mode: after a hand-back, consuming is stopped until what was in transit went back too. */
  private rewinding: Promise<void> | null = null;
  /** Ordered mode: the batch being applied (one at a time), in delivery order. */
  private orderedBatch: readonly Delivery[] = [];
  /** Ordered mode: messages acked or handed back, never settled twice nor applied once handed back. */
  private readonly settledMessages = new WeakSet<ConsumeMessage>();
  /** Set once start() connected: a worker that never started says nothing when closed. */
  private started = false;
  private summary: OutcomeSummary | null = null;

  constructor(
    private readonly options: WorkerOptions,
    private readonly deps: WorkerDeps,
    private readonly log: Logger,
  ) {
    this.connection = new ManagedConnection({
      url: options.amqpUrl,
      log,
      clientName: `txsim worker ${options.workerId}`,
      setup: (channel) => assertTopology(channel, options.topology),
      onBlocked: (blocked) => (this.metrics.blocked = blocked),
      // Bounded by time instead: connectTimeoutMs.
      initialMaxRetries: Infinity,
      ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
      ...(deps.connect ? { connect: deps.connect } : {}),
    });
    this.publishChannel = this.connection.channel({ name: 'publish channel', publisher: { windowMax: 1_000, confirmTimeoutMs: 10_000 } });
    // Its own plain channel: the feed's events are unconfirmed and must not share the confirm window
    // of the retry and park publishes. Registered before the consume channel, so it is open (channels
    // open in registration order) before the first delivery walks its stages and emits events.
    const feedChannel = this.connection.channel({ name: 'feed channel' });
    this.consumeChannel = this.connection.channel({
      name: 'consume channel',
      ackMode: 'multiple',
      setup: async (channel) => {
        await channel.prefetch(options.prefetchCount);
      },
      onOpen: () => log.info({ prefetch: options.prefetchCount, batchSizeMax: options.batchSizeMax }, 'worker consuming'),
      onLost: () => this.dropBuffered(),
    });
    const ordered = options.topology.ordered;
    if (ordered && !deps.partitionLeases) throw new Error('an ordered topology needs the partition lease store');
    this.partitions = ordered
      ? new PartitionConsumers(
          this.consumeChannel,
          ordered.partitionQueues,
          (d) => this.onDelivery(d),
          deps.partitionLeases!,
          { workerId: options.workerId, timing: options.leaseTiming ?? DEFAULT_LEASE_TIMING },
          log,
        )
      : null;
    this.consumer = this.partitions ?? this.consumeChannel.consume(options.topology.processQueue, (d) => this.onDelivery(d));
    this.failureReport = new FailureReport(
      { workerId: options.workerId, feedExchange: options.topology.feedExchange },
      { channel: () => feedChannel.channel, ...(deps.recordFailures ? { write: deps.recordFailures } : {}) },
      log,
    );
    this.stages = stageRunnerFor(
      { stages: options.stages, workerId: options.workerId, feedExchange: options.topology.feedExchange },
      () => feedChannel.channel,
      this.metrics,
      log,
    );
  }

  /**
   * Connects (waiting for the broker with backoff, up to `connectTimeoutMs`) and starts consuming.
   * Throws ServiceUnavailableError when the broker does not answer in time; resolves false without
   * connecting when `signal` aborts first (a SIGINT while waiting).
   */
  async start(signal?: AbortSignal): Promise<boolean> {
    if (!(await this.connection.start(signal))) return false;
    this.started = true;
    this.partitions?.start();
    this.summary = new OutcomeSummary(this.metrics, this.log, this.options.summaryIntervalMs ?? SUMMARY_INTERVAL_MS);
    return true;
  }

  /** The consume channel is open (the Prometheus connection gauge). */
  get connected(): boolean {
    return this.consumeChannel.channel !== null;
  }

  /**
   * The in-flight gauge: deliveries waiting for a batch plus those of batches being processed (their
   * stages, commit, reject publishes and, in ordered mode, retries in place) not yet acked or handed
   * back; at most the prefetch.
   */
  private countInFlight(): void {
    this.metrics.inFlight = this.buffer.length + this.inBatches.size;
  }

  private dropBuffered(): void {
    // Deliveries of the old channel can no longer be acked; RabbitMQ will redeliver them.
    const dropped = this.buffer.length;
    this.buffer = [];
    this.partitions?.channelLost();
    this.countInFlight();
    if (dropped > 0) this.log.warn({ dropped }, 'channel gone; dropped buffered deliveries (they will be redelivered)');
  }

  private onDelivery({ msg, generation }: AmqpDelivery): void {
    const properties = typedProperties(msg);
    const { headers } = properties;
    const priorAttempts = Number(headers[HEADERS.attempts] ?? 0);
    const runId = headers[HEADERS.runId];
    const receivedAtMs = Date.now();
    // Queue wait of a first attempt only: a retry's header still holds gen's publish time, and its
    // wait would count the retry delay as queueing.
    const publishedAtMs = headers[HEADERS.publishedAtMs];
    if (typeof publishedAtMs === 'number' && !(priorAttempts > 0)) this.metrics.hops.record('queue_wait', receivedAtMs - publishedAtMs);
    const incoming: Incoming = {
      decoded: decodeTransaction(msg.content, properties),
      attempt: (Number.isSafeInteger(priorAttempts) && priorAttempts > 0 ? priorAttempts : 0) + 1,
      // A run id goes into a CHAR(36) column: anything but a UUID is ignored, never a reason to park a valid body.
      runId: typeof runId === 'string' && UUID_PATTERN.test(runId) ? runId : null,
      accountSeq: accountSeqOf(headers),
    };
    this.buffer.push({ msg, generation, incoming, receivedAtMs });
    this.countInFlight();
    this.schedule();
  }

  /**
   * Starts flushes while there is room: at once for a full batch, after `batchWaitMs` for a partial
   * one. Up to `transactionsMax` full batches are applied at once, so under load the worker prepares
   * the next batch while the database commits the previous one. A partial batch starts only when no
   * batch is in flight: at moderate rates messages then gather behind the running commit (group
   * commit) instead of going out in many tiny transactions, which cost more CPU per message and, on
   * a busy machine, latency. The wait starts again when a commit ends, even for messages that
   * gathered behind it: starting those at once was measured (bench, 2,000 tx/s, 3 alternated pairs)
   * to make more, smaller commits — +30 µs of CPU a transaction, p99 28–39 ms against 29.
   */
  private schedule(): void {
    if (this.pausedForDatabase || this.rewinding) return;
    while (this.flushes.size < this.options.transactionsMax && this.buffer.length >= this.options.batchSizeMax) this.startFlush();
    if (this.buffer.length === 0 || this.flushes.size > 0) return;
    if (this.options.batchWaitMs === 0 || this.closing) {
      this.startFlush();
    } else if (!this.batchTimer) {
      this.batchTimer = setTimeout(() => {
        this.batchTimer = null;
        if (this.flushes.size === 0 && !this.pausedForDatabase && !this.rewinding) this.startFlush();
      }, this.options.batchWaitMs);
    }
  }

  private startFlush(): void {
    if (this.buffer.length === 0) return;
    if (this.batchTimer) {
      clearTimeout(this.batchTimer);
      this.batchTimer = null;
    }
    const batch = this.buffer.splice(0, this.options.batchSizeMax);
    if (this.partitions) this.orderedBatch = batch;
    for (const d of batch) this.inBatches.add(d.msg);
    const flush: Promise<void> = this.processBatch(batch)
      .catch((err) => {
        // processBatch handles every expected failure; reaching here is a bug. Keep the worker alive.
        this.metrics.recordError(err);
        this.log.error({ err: (err as Error).stack }, 'unexpected failure while processing a batch');
      })
      .finally(() => {
        this.flushes.delete(flush);
        for (const d of batch) this.inBatches.delete(d.msg);
        if (this.orderedBatch === batch) this.orderedBatch = [];
        this.countInFlight();
        this.schedule();
      });
    this.flushes.add(flush);
  }

  private async processBatch(batch: Delivery[]): Promise<void> {
    const current = batch.filter((d) => this.undecided(d));
    const spent = current.filter(atDeliveryLimit);
    const live = spent.length === 0 ? current : current.filter((d) => !atDeliveryLimit(d));
    const mark = this.handedBack;
    if (spent.length > 0) await Promise.all(spent.map((d) => this.retryOrPark(d, deliveryLimitFailure(d), { park: true })));
    if (live.length === 0 || this.handedBackSince(mark)) return;
    if (!this.stages) return this.applyDeliveries(live);
    return this.applyWalked(live, await this.stages.walkAll(live.map((d) => d.incoming)));
  }

  /**
   * Applies a batch that walked its processing stages: a failed message goes back through the delay
   * queues (parked after the last attempt) like any system error; a declined one stays in the batch, to
   * be recorded as that reject. In ordered mode a failed message is retried in place instead, so what
   * came before it in the batch is applied first and what came after it waits for it (with the verdicts
   * it already drew: its stages are not walked twice).
   */
  private async applyWalked(live: Delivery[], verdicts: StageVerdict[]): Promise<void> {
    const failedAt = this.partitions ? verdicts.findIndex((v) => v.kind === 'failed') : -1;
    if (failedAt < 0) {
      const moves: Promise<void>[] = [];
      const survivors = this.survivorsOf(live, verdicts, moves);
      await Promise.all(moves);
      return this.applyDeliveries(survivors);
    }
    const verdict = verdicts[failedAt]! as Extract<StageVerdict, { kind: 'failed' }>;
    const mark = this.handedBack;
    await this.applyDeliveries(this.survivorsOf(live.slice(0, failedAt), verdicts.slice(0, failedAt), []));
    if (this.handedBackSince(mark)) return;
    await this.retryOrPark(live[failedAt]!, { class: 'transient', code: verdict.code, message: verdict.message });
    if (this.handedBackSince(mark)) return;
    return this.applyWalked(live.slice(failedAt + 1), verdicts.slice(failedAt + 1));
  }

  /** The deliveries left to apply after their stage verdicts; failed ones are moved on (their moves pushed to `moves`). */
  private survivorsOf(live: Delivery[], verdicts: readonly StageVerdict[], moves: Promise<void>[]): Delivery[] {
    const survivors: Delivery[] = [];
    live.forEach((delivery, i) => {
      const verdict = verdicts[i]!;
      if (verdict.kind === 'abandoned') return; // shutdown: left unacked, redelivered
      if (verdict.kind === 'failed')
        moves.push(this.retryOrPark(delivery, { class: 'transient', code: verdict.code, message: verdict.message }));
      else {
        if (verdict.kind === 'declined') delivery.stageDecline = { reason: verdict.reason, detail: verdict.detail };
        // The channel may have gone while the stages took their time: its deliveries are redelivered.
        if (this.consumeChannel.isCurrent(delivery)) survivors.push(delivery);
      }
    });
    return survivors;
  }

  /** Applies deliveries in one DB transaction (or one by one after a failed batch), then settles each. */
  private async applyDeliveries(deliveries: Delivery[]): Promise<void> {
    const live = deliveries.filter((d) => this.undecided(d));
    if (live.length === 0) return;
    let outcomes: Outcome[];
    const startedAtMs = Date.now();
    try {
      outcomes = await this.deps.applyBatch(
        live.map((d) => (d.stageDecline ? { ...d.incoming, stageDecline: d.stageDecline } : d.incoming)),
        { workerId: this.options.workerId, attemptsMax: this.options.attemptsMax, holdBehindDeferred: this.partitions !== null },
      );
    } catch (err) {
      const failure = classifyFailure(err);
      this.metrics.recordError(err);
      if (failure.class === 'db_unavailable') return this.pauseForDatabase(live, failure);
      if (live.length === 1) return this.retryOrPark(live[0]!, failure);
      // One bad message must not hold the others back: fall back to one transaction per message.
      this.log.warn({ size: live.length, code: failure.code, err: failure.message }, 'batch failed; applying one by one');
      const mark = this.handedBack;
      for (const delivery of live) {
        if (this.handedBackSince(mark)) return;
        await this.applyDeliveries([delivery]);
      }
      return;
    }
    const committedAtMs = Date.now();
    this.metrics.recordBatch(live.length, startedAtMs, committedAtMs);
    if (this.options.crashAfterCommits !== undefined && this.metrics.batches >= this.options.crashAfterCommits) {
      this.log.warn({ batches: this.metrics.batches }, 'fault injection: crashing after commit, before ack');
      process.kill(process.pid, 'SIGKILL');
    }
    // Rejects' errors-queue publishes are pipelined; each delivery is acked after its own confirm.
    const held = live.filter((_, i) => outcomes[i]!.kind === 'held');
    const mark = this.handedBack;
    await Promise.all(live.map((delivery, i) => this.finish(delivery, outcomes[i]!, startedAtMs, committedAtMs)));
    // Ordered mode: what came after a deferred message goes once that one was retried in place (just
    // above, in finish), so no later message of its partition is applied before it; if it was handed
    // back instead, they went back behind it (nackRequeue).
    if (held.length > 0 && !this.handedBackSince(mark)) await this.applyDeliveries(held);
  }

  /** After commit: publish rejects to the errors queue, then ack. Logs one line per transaction at debug. */
  private async finish(delivery: Delivery, outcome: Outcome, startedAtMs: number, committedAtMs: number): Promise<void> {
    const m = delivery.incoming.decoded.ok ? delivery.incoming.decoded.message : undefined;
    const createdAtMs = m ? Date.parse(m.createdAt) : NaN;
    const latencyMs = Number.isFinite(createdAtMs) ? committedAtMs - createdAtMs : null;
    const fields = { id: outcome.id, type: m?.type, account: m?.accountId, amountMinor: m?.amountMinor, latencyMs };
    switch (outcome.kind) {
      case 'applied':
        this.metrics.recordOutcome('applied', m?.type);
        this.metrics.recordCommitted(Number.isFinite(createdAtMs) ? createdAtMs : null, delivery.receivedAtMs, startedAtMs, committedAtMs);
        this.log.debug({ ...fields, outcome: 'applied', balanceAfterMinor: outcome.balanceAfterMinor.toString() }, 'applied');
        break;
      case 'rejected':
        if (!(await this.publishReject(delivery, outcome.reason, outcome.detail))) return;
        this.metrics.recordOutcome(outcome.reason, m?.type);
        this.metrics.recordCommitted(Number.isFinite(createdAtMs) ? createdAtMs : null, delivery.receivedAtMs, startedAtMs, committedAtMs);
        this.log.debug({ ...fields, outcome: 'rejected', reason: outcome.reason, detail: outcome.detail }, 'rejected');
        break;
      case 'held':
        return; // applied after the deferred message ahead of it (applyDeliveries)
      case 'deferred':
        // A capture, void or refund ahead of its authorization: back through the delay queues, like
        // a system error but not one (the batch committed). Never parked: the last attempt rejects it.
        return this.retryOrPark(delivery, { class: 'transient', code: 'authorization_pending', message: outcome.detail });
      case 'duplicate':
        this.metrics.duplicates++;
        // A reject whose errors-queue publish was cut off by a crash is re-sent: at least once there.
        if (
          outcome.previous === 'rejected' &&
          !(await this.publishReject(delivery, outcome.previousReason ?? 'invalid_message', 'redelivered; already rejected'))
        )
          return;
        this.log.debug({ ...fields, outcome: 'duplicate', previous: outcome.previous }, 'duplicate ignored');
        break;
    }
    this.ack(delivery);
    this.metrics.hops.record('ack', Date.now() - committedAtMs);
  }

  private async publishReject(delivery: Delivery, reason: string, detail: string): Promise<boolean> {
    const { msg } = delivery;
    const properties = typedProperties(msg);
    const envelope = {
      reason,
      detail,
      id: delivery.incoming.decoded.ok ? delivery.incoming.decoded.message.id : delivery.incoming.decoded.id,
      workerId: this.options.workerId,
      rejectedAt: new Date().toISOString(),
      attempt: delivery.incoming.attempt,
      routingKey: msg.fields.routingKey,
      contentType: properties.contentType ?? null,
      body: msg.content.toString('utf8'),
    };
    return this.publishTo(delivery, this.options.topology.errorsQueue, Buffer.from(JSON.stringify(envelope)), {
      contentType: 'application/json',
      messageId: properties.messageId,
      headers: {
        [HEADERS.reason]: reason,
        [HEADERS.detail]: detail.slice(0, 255),
        [HEADERS.workerId]: this.options.workerId,
        [HEADERS.attempts]: delivery.incoming.attempt,
      },
    });
  }

  /**
   * System error: back through a delay queue, or into the parking queue after the last attempt (or
   * at once with `park`: a message at the process queue's delivery limit).
   */
  private async retryOrPark(delivery: Delivery, failure: ClassifiedFailure, options: { park?: boolean } = {}): Promise<void> {
    const { msg, incoming } = delivery;
    const properties = typedProperties(msg);
    const t = this.options.topology;
    const park = options.park === true || incoming.attempt >= this.options.attemptsMax;
    if (this.partitions && !park) return this.retryInPlace(delivery, failure);
    const target = park ? t.deadQueue : t.retryQueues[Math.min(incoming.attempt - 1, t.retryQueues.length - 1)]!.name;
    const failedAt = new Date();
    const ok = await this.publishTo(delivery, target, msg.content, {
      contentType: properties.contentType,
      messageId: properties.messageId,
      timestamp: properties.timestamp,
      headers: {
        ...properties.headers,
        [HEADERS.attempts]: incoming.attempt,
        [HEADERS.lastError]: `${failure.code}: ${failure.message}`.slice(0, 500),
        [HEADERS.workerId]: this.options.workerId,
        [HEADERS.failedAt]: failedAt.toISOString(),
        [HEADERS.originalRoutingKey]: properties.headers[HEADERS.originalRoutingKey] ?? msg.fields.routingKey,
      },
    });
    if (!ok) return;
    if (park) this.metrics.parked++;
    else this.metrics.retried++;
    const id = incoming.decoded.ok ? incoming.decoded.message.id : incoming.decoded.id;
    // A retry is one transaction's business (debug, counted in the summary line); a message given up is worth a warning.
    this.log[park ? 'warn' : 'debug'](
      { id, attempt: incoming.attempt, code: failure.code, err: failure.message, to: target },
      park ? 'parked' : 'retry scheduled',
    );
    this.ack(delivery);
    // Only once the message is safely in its delay or parking queue: the report never announces a
    // move that did not happen, and it neither waits nor throws, so it cannot hold the message back.
    this.reportAttempt(incoming, park ? 'parked' : 'retrying', failure, failedAt);
  }

  private reportAttempt(incoming: Incoming, state: 'parked' | 'retrying', failure: ClassifiedFailure, failedAt: Date): void {
    const id = incoming.decoded.ok ? incoming.decoded.message.id : incoming.decoded.id;
    const m = incoming.decoded.ok ? incoming.decoded.message : null;
    if (id)
      this.failureReport.report({
        transactionId: id,
        state,
        attempt: incoming.attempt,
        accountId: m?.accountId ?? null,
        type: m?.type ?? null,
        amountMinor: m?.amountMinor !== undefined ? String(m.amountMinor) : null,
        currency: m?.currency ?? null,
        errorCode: failure.code,
        errorMessage: failure.message,
        failedAt,
      });
  }

  /**
   * Ordered mode: a system error (or a deferred capture) is tried again right here after the retry
   * step's delay, not through a delay queue, which would let the partition's later messages pass
   * it. The worker applies one batch at a time in ordered mode, so the partition (and the worker's
   * other partitions) wait; after the attempt limit retryOrPark parks it and they move on.
   */
  private async retryInPlace(delivery: Delivery, failure: ClassifiedFailure): Promise<void> {
    const { incoming } = delivery;
    const steps = this.options.topology.retryQueues;
    const delayMs = steps[Math.min(incoming.attempt - 1, steps.length - 1)]?.delayMs ?? 0;
    this.metrics.retried++;
    this.log.debug({ attempt: incoming.attempt, code: failure.code, err: failure.message, delayMs }, 'retrying in place');
    this.reportAttempt(incoming, 'retrying', failure, new Date());
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    await this.processBatch([{ ...delivery, incoming: { ...incoming, attempt: incoming.attempt + 1 } }]);
  }

  /** Publishes with confirm via the default exchange; false when the delivery must be left unacked. */
  private async publishTo(
    delivery: Delivery,
    queue: string,
    body: Buffer,
    options: Parameters<ConfirmPublisher['publish']>[3],
  ): Promise<boolean> {
    if (!this.consumeChannel.isCurrent(delivery)) return false;
    const publisher = this.publishChannel.publisher;
    if (!publisher) {
      // The publish channel is being reopened: hand the message back rather than hold it unacked,
      // which would hold back the multiple-acks of every later delivery.
      this.log.warn({ queue }, 'no publish channel; requeueing message');
      this.nackRequeue(delivery);
      return false;
    }
    try {
      const result = await publisher.publishConfirmed('', queue, body, options);
      if (result === 'returned') throw new Error(`queue ${queue} does not exist`);
      return true;
    } catch (err) {
      // Handed back (not acked): the message returns to the process queue and is handled again.
      // Leaving it unacked instead would hold back the multiple-acks of every later delivery.
      this.metrics.recordError(err);
      this.log.error({ queue, err: (err as Error).message }, 'could not move message; requeueing it');
      this.nackRequeue(delivery);
      return false;
    }
  }

  /** Acks on the channel the delivery came from; one of an earlier channel is left to redelivery. */
  private ack(delivery: Delivery): void {
    if (!this.settleOnce(delivery)) return;
    this.consumeChannel.ack(delivery);
    this.inBatches.delete(delivery.msg);
    this.partitions?.settled(delivery.msg);
  }

  /**
   * The database is gone: hand every held message back to RabbitMQ without spending an attempt,
   * stop consuming, and probe the database with capped backoff until it answers.
   */
  private async pauseForDatabase(batch: Delivery[], failure: ClassifiedFailure): Promise<void> {
    if (this.pausedForDatabase) {
      // Another batch already paused the worker: just hand this one back too.
      for (const d of batch) this.nackRequeue(d);
      return;
    }
    this.pausedForDatabase = true;
    this.metrics.paused = true;
    this.log.error({ code: failure.code, err: failure.message }, 'database unavailable; pausing consumption');
    if (this.partitions) {
      // Ordered: back at once and in order (the batch, then the buffer); what arrives until the consumers
      // are cancelled is later in its partition, so it goes back after them.
      this.giveBackInOrder(batch);
      await this.stopConsuming();
    } else {
      const held = [...batch, ...this.buffer.splice(0)];
      await this.consumer.pause();
      for (const d of held) this.nackRequeue(d);
    }
    this.countInFlight();
    for (let delayMs = DB_PROBE_FIRST_MS; !this.closing; delayMs = Math.min(delayMs * 2, DB_PROBE_MAX_MS)) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      try {
        await this.deps.pingDatabase();
        break;
      } catch {
        this.log.debug({ delayMs }, 'database still unavailable');
      }
    }
    this.pausedForDatabase = false;
    this.metrics.paused = false;
    if (this.closing) return;
    this.log.info('database back; resuming consumption');
    // A failed subscribe is logged and retried by the consumer itself.
    await this.consumer.resume();
  }

  /**
   * Hands a delivery back to the queue (no attempt spent). A gone channel requeues on its own.
   *
   * Ordered mode: nothing of the partition may be decided before it, so every delivery the worker
   * holds goes back with it, in delivery order — its batch's unsettled ones (those ahead of it too:
   * one mid-retry that commits anyway is redelivered as a duplicate), then the buffer — and consuming
   * stops until what the broker had already sent is back as well (`rewind`). A quorum queue
   * redelivers returned messages first, in the order they came back, so the partition's order holds.
   */
  private nackRequeue(d: Delivery): void {
    if (!this.partitions) {
      this.giveBack(d);
      return;
    }
    this.giveBackInOrder([d]);
    if (!this.pausedForDatabase) this.rewind();
  }

  /**
   * Ordered mode: gives back these deliveries — the whole running batch, in delivery order, when one
   * of them is in it — and then the buffer.
   */
  private giveBackInOrder(deliveries: readonly Delivery[]): void {
    const inBatch = deliveries.some((d) => this.orderedBatch.some((b) => b.msg === d.msg));
    for (const each of [...(inBatch ? this.orderedBatch : []), ...deliveries, ...this.buffer.splice(0)]) this.giveBack(each);
    this.countInFlight();
  }

  private giveBack(d: Delivery): void {
    if (!this.settleOnce(d)) return;
    if (this.partitions) this.handedBack++;
    this.consumeChannel.requeue(d);
    this.inBatches.delete(d.msg);
    this.partitions?.settled(d.msg);
  }

  /**
   * Ordered mode, after a hand-back: cancels the consumers (deliveries already on the wire arrive before
   * the cancel is confirmed), hands back what arrived meanwhile — later than what went back before —
   * and subscribes again. No batch starts meanwhile.
   */
  private rewind(): void {
    this.rewinding ??= (async () => {
      try {
        await this.stopConsuming();
      } finally {
        this.rewinding = null;
      }
      // A database pause that began meanwhile resumes consuming itself, once the database is back.
      if (!this.pausedForDatabase && !this.closing) await this.consumer.resume();
      this.schedule();
    })().catch((err: unknown) => {
      this.metrics.recordError(err);
      this.log.error({ err: (err as Error).message }, 'could not stop consuming after handing messages back');
    });
  }

  /**
   * Ordered mode: cancels the consumers (deliveries already on the wire arrive before the cancel is
   * confirmed) and gives back what arrived meanwhile, later in its partition than what went back before.
   */
  private async stopConsuming(): Promise<void> {
    await this.consumer.pause();
    for (const d of this.buffer.splice(0)) this.giveBack(d);
    this.countInFlight();
  }

  /** Ordered mode: a delivery is acked or handed back once, whichever comes first; false when it already was. */
  private settleOnce(d: Delivery): boolean {
    if (!this.partitions) return true;
    if (this.settledMessages.has(d.msg)) return false;
    this.settledMessages.add(d.msg);
    return true;
  }

  /** Ordered mode: something of this batch was handed back since `mark`, so the step must not go on. */
  private handedBackSince(mark: number): boolean {
    return this.partitions !== null && this.handedBack !== mark;
  }

  /** Still to be decided here: from the current channel, and (ordered mode) neither acked nor handed back. */
  private undecided(d: Delivery): boolean {
    return this.consumeChannel.isCurrent(d) && !(this.partitions && this.settledMessages.has(d.msg));
  }

  /**
   * Graceful shutdown, safe to call twice: stop consuming → finish in-flight (up to the deadline) →
   * close channels and connection. The caller closes the database pool and flushes logs.
   */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    if (!this.started) {
      // Start failed or was cut short: nothing was consumed, so there is nothing to report (the
      // caller prints why it could not start, as its one line).
      await this.connection.close();
      return;
    }
    await runShutdownSteps(
      [
        ['cancel consumer', () => this.consumer.cancel()],
        ['finish in-flight', () => this.drain(this.options.shutdownDeadlineMs)],
        ['release partitions', async () => this.partitions?.leave()],
        // Past the deadline: walks still in a stage end now, unapplied (their deliveries go back to the queue).
        ['stop stages', () => Promise.resolve(this.stages?.stop())],
        ['record failed attempts', () => this.failureReport.close(FAILURE_RECORDS_DEADLINE_MS)],
        ['close connection', () => this.connection.close()],
      ],
      this.log,
      'worker',
    );
    // The last partial second, then the totals.
    this.summary?.stop();
    this.log.info({ applied: this.metrics.applied, rejected: this.metrics.processed - this.metrics.applied }, 'worker stopped');
  }

  private async drain(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while ((this.flushes.size > 0 || this.buffer.length > 0) && Date.now() < deadline) {
      this.schedule();
      await Promise.race([...this.flushes, new Promise((r) => setTimeout(r, 50))]);
    }
    if (this.buffer.length > 0)
      this.log.warn({ left: this.buffer.length }, 'shutdown deadline reached; unacked messages go back to the queue');
  }
}

/**
 * RabbitMQ's count of the times a message went back to its quorum queue unacknowledged (absent on
 * a first delivery). At the queue's delivery limit this is the last delivery the broker makes: one
 * more return and it dead-letters the message itself, with no record of why. Such a message took
 * down or cut off every worker that held it (a crash, a lost channel, a lost database, 20 times),
 * so the worker parks it rather than try it once more: the parking is recorded like any other, and a
 * message that crashes workers stops doing so. A message that was only unlucky is one
 * `txsim replay-dead` away, as it would be after the broker's own dead-lettering.
 */
function deliveryCountOf(delivery: Delivery): number {
  const count = typedProperties(delivery.msg).headers['x-delivery-count'];
  return typeof count === 'number' && Number.isSafeInteger(count) && count > 0 ? count : 0;
}

function atDeliveryLimit(delivery: Delivery): boolean {
  return deliveryCountOf(delivery) >= PROCESS_QUEUE_DELIVERY_LIMIT;
}

/** The failure a message parked at the delivery limit is recorded with (`inspect-errors --reason delivery_limit`). */
function deliveryLimitFailure(delivery: Delivery): ClassifiedFailure {
  const deliveries = deliveryCountOf(delivery) + 1;
  return {
    class: 'unexpected',
    code: 'delivery_limit',
    message: `delivered ${deliveries} times and never acknowledged (the workers holding it stopped or lost their channel); parked at the queue's delivery limit of ${PROCESS_QUEUE_DELIVERY_LIMIT}`,
  };
}

/** gen's per-account sequence number of a message (headers), recorded with its outcome; null without one. */
function accountSeqOf(headers: Record<string, unknown>): Incoming['accountSeq'] {
  const seq = headers[HEADERS.accountSeq];
  const stream = headers[HEADERS.accountSeqStream];
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return null;
  return { seq, stream: typeof stream === 'number' && Number.isSafeInteger(stream) && stream >= 1 && stream <= 32_767 ? stream : 1 };
}

/** The worker's `info` summary comes once a second. */
export const SUMMARY_INTERVAL_MS = 1_000;

/**
 * One `info` line per interval with what the worker decided in it — applied, rejected, retried,
 * parked, duplicates — and only when something happened: on a terminal a busy worker shows one
 * line a second instead of one per transaction (those are at `debug`).
 */
export class OutcomeSummary {
  private last: OutcomeCounts;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly metrics: WorkerMetrics,
    private readonly log: Logger,
    intervalMs: number,
  ) {
    this.last = countsOf(metrics);
    this.timer = setInterval(() => this.logSince(), intervalMs);
    this.timer.unref();
  }

  /** Logs what happened since the last line (if anything) and stops. */
  stop(): void {
    clearInterval(this.timer);
    this.logSince();
  }

  private logSince(): void {
    const now = countsOf(this.metrics);
    const since: OutcomeCounts = {
      applied: now.applied - this.last.applied,
      rejected: now.rejected - this.last.rejected,
      retried: now.retried - this.last.retried,
      parked: now.parked - this.last.parked,
      duplicates: now.duplicates - this.last.duplicates,
    };
    this.last = now;
    if (Object.values(since).every((n) => n === 0)) return;
    this.log.info({ ...since, totalApplied: now.applied }, 'outcomes');
  }
}

interface OutcomeCounts {
  readonly applied: number;
  readonly rejected: number;
  readonly retried: number;
  readonly parked: number;
  readonly duplicates: number;
}

function countsOf(m: WorkerMetrics): OutcomeCounts {
  const rejected = Object.values(m.rejected).reduce((sum, n) => sum + n, 0);
  return { applied: m.applied, rejected, retried: m.retried, parked: m.parked, duplicates: m.duplicates };
}
