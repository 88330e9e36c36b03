import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, RecoveringChannelModel } from 'amqplib';
import { AckTracker } from '../amqp/ack-tracker.js';
import { connectRecovering } from '../amqp/connect.js';
import { ConfirmPublisher } from '../amqp/publisher.js';
import { assertTopology, HEADERS, type Topology } from '../amqp/topology.js';
import type { Knex } from '../db/knex.js';
import { decodeTransaction } from '../domain/message-schema.js';
import { runShutdownSteps } from '../lifecycle.js';
import type { Logger } from '../log.js';
import { WorkerMetrics } from '../stats/worker-metrics.js';
import { applyBatch, type Incoming, type Outcome } from './apply-batch.js';
import { classifyFailure, type ClassifiedFailure } from './classify-failure.js';

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
  /**
   * Fault injection for the fault suite: SIGKILL this process right after the n-th commit, before
   * any of that batch is acked — the worst moment to crash. Off (undefined) in normal use.
   */
  readonly crashAfterCommits?: number;
}

interface Delivery {
  readonly msg: ConsumeMessage;
  readonly channel: Channel;
  /** Settles deliveries of `channel` with as few frames as possible (multiple-acks). */
  readonly acks: AckTracker;
  readonly generation: number;
  readonly incoming: Incoming;
  readonly receivedAtMs: number;
}

/**
 * One worker replica: consumes the process queue, applies messages in batches (validate →
 * authorize under row locks → one DB transaction → commit → ack), sends business rejects to the
 * errors queue, retries system errors through the delay queues and parks them after
 * `attemptsMax`. Reconnects to RabbitMQ by itself; deliveries of a channel that is gone are
 * dropped, never acked (RabbitMQ redelivers them, and idempotency makes that harmless).
 */
export class Worker {
  readonly metrics = new WorkerMetrics();
  private connection: RecoveringChannelModel | null = null;
  private consumeChannel: Channel | null = null;
  private publisher: ConfirmPublisher | null = null;
  private consumerTag: string | null = null;
  private acks: AckTracker | null = null;
  private generation = 0;
  private buffer: Delivery[] = [];
  /** Batches being applied right now (at most `transactionsMax`). */
  private readonly flushes = new Set<Promise<void>>();
  private batchTimer: NodeJS.Timeout | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;
  private pausedForDatabase = false;

  constructor(
    private readonly options: WorkerOptions,
    private readonly db: Knex,
    private readonly log: Logger,
  ) {}

  /** Connects (waiting for the broker with backoff) and starts consuming. */
  async start(): Promise<void> {
    const t = this.options.topology;
    this.connection = await connectRecovering({
      url: this.options.amqpUrl,
      log: this.log,
      clientName: `txsim worker ${this.options.workerId}`,
      setup: async (model) => {
        const channel = await model.createChannel();
        await assertTopology(channel, t);
        await channel.close();
      },
      onConnect: (model) => {
        this.openChannels(model).catch((err) => {
          this.log.error({ err: (err as Error).message }, 'could not open channels; closing connection to retry');
          model.close().catch(() => {});
        });
      },
      onDisconnect: () => this.dropChannel(),
      onBlocked: (blocked) => (this.metrics.blocked = blocked),
      initialMaxRetries: 20,
    });
  }

  private async openChannels(model: ChannelModel): Promise<void> {
    const generation = ++this.generation;
    const confirm: ConfirmChannel = await model.createConfirmChannel();
    confirm.on('error', (err: Error) => this.log.warn({ err: err.message }, 'publish channel error'));
    const channel = await model.createChannel();
    channel.on('error', (err: Error) => this.log.warn({ err: err.message }, 'consume channel error'));
    channel.on('close', () => {
      if (this.consumeChannel === channel) this.dropChannel();
    });
    await channel.prefetch(this.options.prefetchCount);
    const acks = new AckTracker({
      ack: (tag, multiple) => channel.ack({ fields: { deliveryTag: tag } } as ConsumeMessage, multiple),
      nack: (tag) => channel.nack({ fields: { deliveryTag: tag } } as ConsumeMessage, false, true),
    });
    this.publisher = new ConfirmPublisher(confirm, { windowMax: 1_000, confirmTimeoutMs: 10_000 });
    this.consumeChannel = channel;
    this.acks = acks;
    if (!this.closing && !this.pausedForDatabase) await this.consume(channel, generation, acks);
    this.log.info({ prefetch: this.options.prefetchCount, batchSizeMax: this.options.batchSizeMax }, 'worker consuming');
  }

  private async consume(channel: Channel, generation: number, acks: AckTracker): Promise<void> {
    const reply = await channel.consume(this.options.topology.processQueue, (msg) => {
      if (msg === null) {
        // The broker cancelled us (queue deleted or failed over): resubscribe shortly.
        this.log.warn('consumer cancelled by broker; resubscribing');
        this.consumerTag = null;
        setTimeout(() => {
          if (this.consumeChannel === channel && !this.closing) this.consume(channel, generation, acks).catch(() => {});
        }, 1_000).unref();
        return;
      }
      this.onDelivery(msg, channel, generation, acks);
    });
    this.consumerTag = reply.consumerTag;
  }

  private dropChannel(): void {
    // Deliveries of the old channel can no longer be acked; RabbitMQ will redeliver them.
    const dropped = this.buffer.length;
    this.buffer = [];
    this.consumeChannel = null;
    this.consumerTag = null;
    this.acks = null;
    this.publisher = null;
    this.metrics.inFlight = 0;
    if (dropped > 0) this.log.warn({ dropped }, 'channel gone; dropped buffered deliveries (they will be redelivered)');
  }

  private onDelivery(msg: ConsumeMessage, channel: Channel, generation: number, acks: AckTracker): void {
    acks.delivered(msg.fields.deliveryTag);
    const headers = msg.properties.headers ?? {};
    const priorAttempts = Number(headers[HEADERS.attempts] ?? 0);
    const incoming: Incoming = {
      decoded: decodeTransaction(msg.content, { contentType: msg.properties.contentType, messageId: msg.properties.messageId }),
      attempt: (Number.isSafeInteger(priorAttempts) && priorAttempts > 0 ? priorAttempts : 0) + 1,
      runId: typeof headers[HEADERS.runId] === 'string' ? (headers[HEADERS.runId] as string) : null,
    };
    this.buffer.push({ msg, channel, acks, generation, incoming, receivedAtMs: Date.now() });
    this.metrics.inFlight = this.buffer.length;
    this.schedule();
  }

  /**
   * Starts flushes while there is room: at once for a full batch, after `batchWaitMs` for a partial
   * one. Up to `transactionsMax` full batches are applied at once, so under load the worker prepares
   * the next batch while the database commits the previous one. A partial batch starts only when no
   * batch is in flight: at moderate rates messages then gather behind the running commit (group
   * commit) instead of going out in many tiny transactions, which cost more CPU per message and, on
   * a busy machine, latency.
   */
  private schedule(): void {
    if (this.pausedForDatabase) return;
    while (this.flushes.size < this.options.transactionsMax && this.buffer.length >= this.options.batchSizeMax) this.startFlush();
    if (this.buffer.length === 0 || this.flushes.size > 0) return;
    if (this.options.batchWaitMs === 0 || this.closing) {
      this.startFlush();
    } else if (!this.batchTimer) {
      this.batchTimer = setTimeout(() => {
        this.batchTimer = null;
        if (this.flushes.size === 0 && !this.pausedForDatabase) this.startFlush();
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
    const flush: Promise<void> = this.processBatch(batch)
      .catch((err) => {
        // processBatch handles every expected failure; reaching here is a bug. Keep the worker alive.
        this.metrics.recordError(err);
        this.log.error({ err: (err as Error).stack }, 'unexpected failure while processing a batch');
      })
      .finally(() => {
        this.flushes.delete(flush);
        this.metrics.inFlight = this.buffer.length;
        this.schedule();
      });
    this.flushes.add(flush);
  }

  private async processBatch(batch: Delivery[]): Promise<void> {
    const live = batch.filter((d) => d.generation === this.generation);
    if (live.length === 0) return;
    let outcomes: Outcome[];
    try {
      outcomes = await applyBatch(this.db, live.map((d) => d.incoming), { workerId: this.options.workerId });
    } catch (err) {
      const failure = classifyFailure(err);
      this.metrics.recordError(err);
      if (failure.class === 'db_unavailable') return this.pauseForDatabase(live, failure);
      if (live.length === 1) return this.retryOrPark(live[0]!, failure);
      // One bad message must not hold the others back: fall back to one transaction per message.
      this.log.warn({ size: live.length, code: failure.code, err: failure.message }, 'batch failed; applying one by one');
      for (const delivery of live) await this.processBatch([delivery]);
      return;
    }
    this.metrics.batches++;
    if (this.options.crashAfterCommits !== undefined && this.metrics.batches >= this.options.crashAfterCommits) {
      this.log.warn({ batches: this.metrics.batches }, 'fault injection: crashing after commit, before ack');
      process.kill(process.pid, 'SIGKILL');
    }
    const committedAtMs = Date.now();
    // Rejects' errors-queue publishes are pipelined; each delivery is acked after its own confirm.
    await Promise.all(live.map((delivery, i) => this.finish(delivery, outcomes[i]!, committedAtMs)));
  }

  /** After commit: publish rejects to the errors queue, then ack. Logs one line per transaction. */
  private async finish(delivery: Delivery, outcome: Outcome, committedAtMs: number): Promise<void> {
    const m = delivery.incoming.decoded.ok ? delivery.incoming.decoded.message : undefined;
    const createdAtMs = m ? Date.parse(m.createdAt) : NaN;
    const latencyMs = Number.isFinite(createdAtMs) ? committedAtMs - createdAtMs : null;
    const fields = { id: outcome.id, type: m?.type, account: m?.accountId, amountMinor: m?.amountMinor, latencyMs };
    switch (outcome.kind) {
      case 'applied':
        this.metrics.applied++;
        this.metrics.recordCommitted(Number.isFinite(createdAtMs) ? createdAtMs : null, delivery.receivedAtMs, committedAtMs);
        this.log.info({ ...fields, outcome: 'applied', balanceAfterMinor: outcome.balanceAfterMinor.toString() }, 'applied');
        break;
      case 'rejected':
        if (!(await this.publishReject(delivery, outcome.reason, outcome.detail))) return;
        this.metrics.rejected[outcome.reason]++;
        this.metrics.recordCommitted(Number.isFinite(createdAtMs) ? createdAtMs : null, delivery.receivedAtMs, committedAtMs);
        this.log.info({ ...fields, outcome: 'rejected', reason: outcome.reason, detail: outcome.detail }, 'rejected');
        break;
      case 'duplicate':
        this.metrics.duplicates++;
        // A reject whose errors-queue publish was cut off by a crash is re-sent: at least once there.
        if (outcome.previous === 'rejected' && !(await this.publishReject(delivery, (outcome.previousReason ?? 'invalid_message') as never, 'redelivered; already rejected'))) return;
        this.log.info({ ...fields, outcome: 'duplicate', previous: outcome.previous }, 'duplicate ignored');
        break;
    }
    this.ack(delivery);
  }

  private async publishReject(delivery: Delivery, reason: string, detail: string): Promise<boolean> {
    const { msg } = delivery;
    const envelope = {
      reason,
      detail,
      id: delivery.incoming.decoded.ok ? delivery.incoming.decoded.message.id : delivery.incoming.decoded.id,
      workerId: this.options.workerId,
      rejectedAt: new Date().toISOString(),
      attempt: delivery.incoming.attempt,
      routingKey: msg.fields.routingKey,
      contentType: msg.properties.contentType ?? null,
      body: msg.content.toString('utf8'),
    };
    return this.publishTo(delivery, this.options.topology.errorsQueue, Buffer.from(JSON.stringify(envelope)), {
      contentType: 'application/json',
      messageId: msg.properties.messageId,
      headers: { [HEADERS.reason]: reason, [HEADERS.detail]: detail.slice(0, 255), [HEADERS.workerId]: this.options.workerId, [HEADERS.attempts]: delivery.incoming.attempt },
    });
  }

  /** System error: back through a delay queue, or into the parking queue after the last attempt. */
  private async retryOrPark(delivery: Delivery, failure: ClassifiedFailure): Promise<void> {
    const { msg, incoming } = delivery;
    const t = this.options.topology;
    const park = incoming.attempt >= this.options.attemptsMax;
    const target = park ? t.deadQueue : t.retryQueues[Math.min(incoming.attempt - 1, t.retryQueues.length - 1)]!.name;
    const ok = await this.publishTo(delivery, target, msg.content, {
      contentType: msg.properties.contentType,
      messageId: msg.properties.messageId,
      timestamp: msg.properties.timestamp,
      headers: {
        ...msg.properties.headers,
        [HEADERS.attempts]: incoming.attempt,
        [HEADERS.lastError]: `${failure.code}: ${failure.message}`.slice(0, 500),
        [HEADERS.workerId]: this.options.workerId,
        [HEADERS.failedAt]: new Date().toISOString(),
        [HEADERS.originalRoutingKey]: msg.properties.headers?.[HEADERS.originalRoutingKey] ?? msg.fields.routingKey,
      },
    });
    if (!ok) return;
    if (park) this.metrics.parked++;
    else this.metrics.retried++;
    const id = incoming.decoded.ok ? incoming.decoded.message.id : incoming.decoded.id;
    this.log.warn({ id, attempt: incoming.attempt, code: failure.code, err: failure.message, to: target }, park ? 'parked' : 'retry scheduled');
    this.ack(delivery);
  }

  /** Publishes with confirm via the default exchange; false when the delivery must be left unacked. */
  private async publishTo(delivery: Delivery, queue: string, body: Buffer, options: Parameters<ConfirmPublisher['publish']>[3]): Promise<boolean> {
    const publisher = this.publisher;
    if (!publisher || delivery.generation !== this.generation) return false;
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

  private ack(delivery: Delivery): void {
    if (delivery.generation !== this.generation || delivery.channel !== this.consumeChannel) return;
    try {
      delivery.acks.ack(delivery.msg.fields.deliveryTag);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'ack failed; message will be redelivered');
    }
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
    const channel = this.consumeChannel;
    const held = [...batch, ...this.buffer.splice(0)];
    if (channel && this.consumerTag) await channel.cancel(this.consumerTag).catch(() => {});
    this.consumerTag = null;
    for (const d of held) this.nackRequeue(d);
    for (let delayMs = 250; !this.closing; delayMs = Math.min(delayMs * 2, 5_000)) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      try {
        await this.db.raw('SELECT 1');
        break;
      } catch {
        this.log.debug({ delayMs }, 'database still unavailable');
      }
    }
    this.pausedForDatabase = false;
    this.metrics.paused = false;
    if (this.closing) return;
    this.log.info('database back; resuming consumption');
    if (channel && this.consumeChannel === channel && this.acks) await this.consume(channel, this.generation, this.acks).catch(() => {});
  }

  /** Hands a delivery back to the queue (no attempt spent). A gone channel requeues on its own. */
  private nackRequeue(d: Delivery): void {
    if (d.channel !== this.consumeChannel || d.generation !== this.generation) return;
    try {
      d.acks.requeue(d.msg.fields.deliveryTag);
    } catch {
      // channel gone: RabbitMQ requeues on its own
    }
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
    await runShutdownSteps(
      [
        ['cancel consumer', async () => { if (this.consumeChannel && this.consumerTag) await this.consumeChannel.cancel(this.consumerTag); }],
        ['finish in-flight', () => this.drain(this.options.shutdownDeadlineMs)],
        ['close connection', async () => { await this.connection?.close(); }],
      ],
      this.log,
      'worker',
    );
    this.log.info({ applied: this.metrics.applied, rejected: this.metrics.processed - this.metrics.applied }, 'worker stopped');
  }

  private async drain(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while ((this.flushes.size > 0 || this.buffer.length > 0) && Date.now() < deadline) {
      this.schedule();
      await Promise.race([...this.flushes, new Promise((r) => setTimeout(r, 50))]);
    }
    if (this.buffer.length > 0) this.log.warn({ left: this.buffer.length }, 'shutdown deadline reached; unacked messages go back to the queue');
  }
}
