import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from '../log.js';
import { AckTracker } from './ack-tracker.js';
import { ConnectAbortedError, connectRecovering, type AmqpModel, type ConnectionFactory, type RecoveringConnection } from './connect.js';
import { ConfirmPublisher, type ConfirmPublisherOptions } from './publisher.js';

/**
 * The one consumer skeleton of txsim, in the manner of node-amqp-connection-manager: a
 * `ManagedConnection` that comes back by itself, and `ManagedChannel`s on it whose setup functions
 * and consumers are re-run on every new channel. Each channel a `ManagedChannel` opens is a new
 * *generation*; deliveries carry the generation they came from, and one of an earlier generation is
 * never acked (its delivery tag means nothing on the new channel, and RabbitMQ has already put it
 * back). A consumer the broker cancels (a `null` delivery) subscribes again; a failed subscribe is
 * logged at error and retried with capped backoff — never swallowed.
 */

/** Capped exponential backoff of channel re-opens and re-subscribes. */
export interface RetryDelay {
  readonly initialMs: number;
  readonly maxMs: number;
}

const DEFAULT_RETRY_DELAY: RetryDelay = { initialMs: 1_000, maxMs: 10_000 };

export interface ManagedConnectionOptions {
  readonly url: string;
  /** Shown as the connection name in the RabbitMQ console. */
  readonly clientName: string;
  readonly log: Logger;
  /** Runs on a throwaway channel of every new connection, before any managed channel opens: assert topology here. */
  readonly setup?: (channel: Channel) => Promise<void>;
  /** Attempts before the very first connection gives up (a process started with no broker); default 3. */
  readonly initialMaxRetries?: number;
  /** How long the first connection may take, retries included, before start() fails (default 15 s). */
  readonly connectTimeoutMs?: number;
  /** Opens the recovering connection; `connectRecovering` unless a unit test passes a fake. */
  readonly connect?: ConnectionFactory;
  readonly onConnect?: () => void;
  readonly onDisconnect?: (err: Error) => void;
  readonly onBlocked?: (blocked: boolean, reason?: string) => void;
}

/**
 * A recovering connection that owns its channels: on every (re)connect it runs `setup`, then opens
 * each registered channel in registration order (so a publish channel registered before a consume
 * channel is ready before the first delivery arrives).
 */
export class ManagedConnection {
  private handle: RecoveringConnection | null = null;
  private model: AmqpModel | null = null;
  private readonly channels: ManagedChannel[] = [];
  private closing = false;
  private closed: Promise<void> | null = null;
  /** Aborted by close(): a start() still waiting for the broker gives up at once. */
  private readonly stopStarting = new AbortController();

  constructor(private readonly options: ManagedConnectionOptions) {}

  /** The connection of right now, or null between a loss and the next connect. */
  get currentModel(): AmqpModel | null {
    return this.model;
  }

  /** Registers a channel; it opens on the next connect (at once when connected). */
  channel(options: ManagedChannelOptions): ManagedChannel {
    const channel = new ManagedChannel(this, this.options.log, options);
    this.channels.push(channel);
    if (this.model) void channel.open(this.model);
    return channel;
  }

  /**
   * Connects, waiting for the broker as `connectTimeoutMs` and `initialMaxRetries` allow; throws
   * ServiceUnavailableError when it gives up. Resolves false, not connected, when `signal` aborts
   * or close() is called first: a SIGINT ends the wait at once.
   */
  async start(signal?: AbortSignal): Promise<boolean> {
    const stop = signal ? AbortSignal.any([signal, this.stopStarting.signal]) : this.stopStarting.signal;
    let handle: RecoveringConnection;
    try {
      handle = await this.connect(stop);
    } catch (err) {
      if (err instanceof ConnectAbortedError) return false;
      throw err;
    }
    this.handle = handle;
    // close() ran while we were connecting: it had nothing to close yet.
    if (this.closing) {
      await handle.close();
      return false;
    }
    return true;
  }

  /** Opens the recovering connection: setup, then the channels, on every (re)connect. */
  private connect(signal: AbortSignal): Promise<RecoveringConnection> {
    const { setup, log } = this.options;
    const connect = this.options.connect ?? connectRecovering;
    return connect({
      url: this.options.url,
      log,
      clientName: this.options.clientName,
      signal,
      ...(this.options.initialMaxRetries === undefined ? {} : { initialMaxRetries: this.options.initialMaxRetries }),
      ...(this.options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: this.options.connectTimeoutMs }),
      setup: async (model) => {
        if (!setup) return;
        const channel = await model.createChannel();
        await setup(channel);
        await channel.close();
      },
      onConnect: (model) => {
        this.model = model;
        this.options.onConnect?.();
        void this.openAll(model);
      },
      onDisconnect: (err) => {
        this.model = null;
        for (const channel of this.channels) channel.lost();
        this.options.onDisconnect?.(err);
      },
      ...(this.options.onBlocked ? { onBlocked: this.options.onBlocked } : {}),
    });
  }

  /** A plain channel on the current connection, for readers that manage their own (e.g. passive declares). */
  async createChannel(): Promise<Channel> {
    if (!this.model) throw new Error('not connected to RabbitMQ');
    return this.model.createChannel();
  }

  /**
   * Stops every channel's retries, closes the channels (which flushes what was written on them:
   * a last message goes out first) and then the connection. Safe to call twice.
   */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    this.stopStarting.abort();
    for (const channel of this.channels) channel.stop();
    for (const channel of this.channels) await channel.closeChannel();
    await this.handle?.close();
  }

  private async openAll(model: AmqpModel): Promise<void> {
    // open() handles its own failures (logged, retried); awaiting keeps the registration order.
    for (const channel of this.channels) {
      if (this.model !== model) return;
      await channel.open(model);
    }
  }
}

export interface ManagedChannelOptions {
  /** Names the channel in log lines ('consume channel', 'relay channel'). */
  readonly name: string;
  /** Makes it a confirm channel with a ConfirmPublisher over it, rebuilt with each channel. */
  readonly publisher?: ConfirmPublisherOptions;
  /** Runs on every new channel before its consumers subscribe: prefetch, for one. */
  readonly setup?: (channel: Channel) => Promise<void>;
  /**
   * 'multiple' settles through an AckTracker: one frame acks many deliveries, but only in delivery
   * order, so one slow delivery holds back the acks of later ones. 'single' acks each on its own.
   */
  readonly ackMode?: 'multiple' | 'single';
  /** A new channel is set up and its consumers subscribed (or retrying). */
  readonly onOpen?: (generation: number) => void;
  /** The channel of `generation` is gone (connection lost or channel closed); its deliveries are stale. */
  readonly onLost?: (generation: number) => void;
  /**
   * Says whether a failure (a channel error, a failed setup or subscribe) is expected: expected ones
   * are logged at debug, because the owner shows them its own way; all others at warn or error.
   */
  readonly onFailure?: (err: unknown) => 'expected' | 'unexpected';
  readonly retryDelay?: RetryDelay;
}

/** A delivery tagged with the channel generation it came from. */
export interface Delivery {
  readonly msg: ConsumeMessage;
  readonly generation: number;
}

export interface ConsumeOptions extends Options.Consume {
  /** Names the consumer in log lines. */
  readonly label?: string;
  /** Called after every successful subscribe (first, after a reconnect, after a re-subscribe). */
  readonly onSubscribed?: () => void;
}

/** The queue to consume, or a function that declares one on the channel (a private, server-named queue) and names it. */
export type QueueSource = string | ((channel: Channel) => Promise<string>);

interface Generation {
  readonly channel: Channel;
  readonly number: number;
  readonly acks: AckTracker | null;
  readonly publisher: ConfirmPublisher | null;
}

/** The stand-in message a settlement by tag needs: amqplib reads only the delivery tag. */
function byTag(tag: number): ConsumeMessage {
  return { fields: { deliveryTag: tag } } as ConsumeMessage;
}

/** One amqplib channel, re-opened (a new generation) after every reconnect and after an unexpected close. */
export class ManagedChannel {
  private current: Generation | null = null;
  private generationCount = 0;
  private readonly consumers: ManagedConsumer[] = [];
  private stopped = false;
  private reopenTimer: NodeJS.Timeout | null = null;
  private reopenDelayMs: number;
  readonly retryDelay: RetryDelay;

  constructor(
    private readonly connection: { readonly currentModel: AmqpModel | null },
    readonly log: Logger,
    readonly options: ManagedChannelOptions,
  ) {
    this.retryDelay = options.retryDelay ?? DEFAULT_RETRY_DELAY;
    this.reopenDelayMs = this.retryDelay.initialMs;
  }

  /** The channel generation of right now; null while there is no channel. */
  get generation(): number | null {
    return this.current?.number ?? null;
  }

  get channel(): Channel | null {
    return this.current?.channel ?? null;
  }

  /** The confirm publisher of the current channel (with `options.publisher`); null while there is none. */
  get publisher(): ConfirmPublisher | null {
    return this.current?.publisher ?? null;
  }

  /** True while `delivery` came from the channel of right now: only then may it be settled. */
  isCurrent(delivery: Delivery): boolean {
    return this.current !== null && this.current.number === delivery.generation;
  }

  /**
   * Consumes `queue` on every channel this opens, now and after each reconnect. `onMessage` is not
   * awaited (amqplib never awaits it): track the work yourself.
   */
  consume(queue: QueueSource, onMessage: (delivery: Delivery) => void, options: ConsumeOptions = {}): ManagedConsumer {
    const { label = 'consumer', onSubscribed, ...consumeOptions } = options;
    const consumer = new ManagedConsumer(this, queue, onMessage, consumeOptions, label, onSubscribed ?? (() => {}));
    this.consumers.push(consumer);
    if (this.current) void consumer.subscribe(this.current);
    return consumer;
  }

  /** Acks a delivery of the current channel; a stale one is left alone (false). */
  ack(delivery: Delivery): boolean {
    const gen = this.current;
    if (!gen || gen.number !== delivery.generation) return false;
    try {
      if (gen.acks) gen.acks.ack(delivery.msg.fields.deliveryTag);
      else gen.channel.ack(delivery.msg);
      return true;
    } catch (err) {
      this.log.warn({ channel: this.options.name, err: (err as Error).message }, 'ack failed; message will be redelivered');
      return false;
    }
  }

  /** Hands a delivery of the current channel back to its queue; a stale one is back already (false). */
  requeue(delivery: Delivery): boolean {
    const gen = this.current;
    if (!gen || gen.number !== delivery.generation) return false;
    try {
      if (gen.acks) gen.acks.requeue(delivery.msg.fields.deliveryTag);
      else gen.channel.nack(delivery.msg, false, true);
      return true;
    } catch {
      // The channel is going: RabbitMQ requeues everything unacked on its own.
      return false;
    }
  }

  /** Opens a channel on `model`: called on every connect and after an unexpected channel close. */
  async open(model: AmqpModel): Promise<void> {
    if (this.stopped || this.current) return;
    let channel: Channel | null = null;
    let closed = false;
    let expectedClose = false;
    try {
      channel = this.options.publisher ? await model.createConfirmChannel() : await model.createChannel();
      const opened = channel;
      opened.on('error', (err: Error) => {
        expectedClose = this.isExpected(err);
        this.log[expectedClose ? 'debug' : 'warn']({ channel: this.options.name, err: err.message }, 'amqp channel error');
      });
      opened.on('close', () => {
        closed = true;
        this.onClosed(opened, model, expectedClose);
      });
      await this.options.setup?.(opened);
    } catch (err) {
      this.report(err, 'could not open channel; retrying', this.reopenDelayMs);
      // Best effort: a channel whose setup failed may be closed already.
      channel?.close().catch(() => {});
      this.scheduleReopen(model, true);
      return;
    }
    // The connection (or just this channel) went away while the setup ran: the next connect, or
    // the reopen scheduled by the close, starts over.
    if (closed || this.connection.currentModel !== model || this.stopped) {
      if (!closed) channel.close().catch(() => {});
      return;
    }
    const gen = this.newGeneration(channel);
    this.current = gen;
    this.reopenDelayMs = this.retryDelay.initialMs;
    for (const consumer of this.consumers) await consumer.subscribe(gen);
    if (this.current === gen) this.options.onOpen?.(gen.number);
  }

  /** The connection is gone (its channels with it): the current generation is stale now. */
  lost(): void {
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    const gen = this.current;
    this.current = null;
    if (gen) this.options.onLost?.(gen.number);
  }

  /** For shutdown: no more reopens or re-subscribes. */
  stop(): void {
    this.stopped = true;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    for (const consumer of this.consumers) consumer.stopRetrying();
  }

  /** Closes the current channel (at shutdown, after stop()). */
  async closeChannel(): Promise<void> {
    const gen = this.current;
    this.current = null;
    if (!gen) return;
    try {
      await gen.channel.close();
    } catch {
      // Closed already (with its connection).
    }
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /**
   * Logs a failure at error; at debug when the owner expects it, or when close() cut the operation
   * short (a stopping process's last setup or subscribe fails because its channel is gone).
   */
  report(err: unknown, what: string, retryInMs: number): void {
    this.log[this.stopped || this.isExpected(err) ? 'debug' : 'error'](
      { channel: this.options.name, err: (err as Error).message, retryInMs },
      what,
    );
  }

  private isExpected(err: unknown): boolean {
    return this.options.onFailure?.(err) === 'expected';
  }

  private newGeneration(channel: Channel): Generation {
    const acks =
      this.options.ackMode === 'multiple'
        ? new AckTracker({
            ack: (tag, multiple) => channel.ack(byTag(tag), multiple),
            nack: (tag) => channel.nack(byTag(tag), false, true),
          })
        : null;
    const publisher = this.options.publisher ? new ConfirmPublisher(channel as ConfirmChannel, this.options.publisher) : null;
    return { channel, number: ++this.generationCount, acks, publisher };
  }

  private onClosed(channel: Channel, model: AmqpModel, expected: boolean): void {
    if (this.current?.channel !== channel) return;
    const gen = this.current;
    this.current = null;
    this.options.onLost?.(gen.number);
    // When the whole connection went, its 'disconnect' follows this close; the reopen then finds
    // the model replaced and leaves the work to the next connect.
    this.scheduleReopen(model, expected);
  }

  private scheduleReopen(model: AmqpModel, quiet: boolean): void {
    if (this.stopped || this.reopenTimer) return;
    const delayMs = this.reopenDelayMs;
    this.reopenDelayMs = Math.min(delayMs * 2, this.retryDelay.maxMs);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      if (this.stopped || this.connection.currentModel !== model) return;
      this.log[quiet ? 'debug' : 'warn']({ channel: this.options.name }, 'amqp channel closed; reopening');
      void this.open(model);
    }, delayMs);
    this.reopenTimer.unref();
  }

  /** The generation of right now, for consumers deciding whether a retry is still theirs. */
  currentGeneration(): Generation | null {
    return this.current;
  }
}

/**
 * One consumer of a ManagedChannel: subscribed on every channel generation while active, paused and
 * resumed by its owner (the worker's database pause), cancelled for good at shutdown.
 */
export class ManagedConsumer {
  private consumerTag: string | null = null;
  private subscribedOn: number | null = null;
  /** The generation a subscribe is on the wire for, so two callers never subscribe twice. */
  private subscribing: number | null = null;
  private active = true;
  private cancelled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelayMs: number;

  constructor(
    private readonly owner: ManagedChannel,
    private readonly queue: QueueSource,
    private readonly onMessage: (delivery: Delivery) => void,
    private readonly options: Options.Consume,
    private readonly label: string,
    private readonly onSubscribed: () => void,
  ) {
    this.retryDelayMs = owner.retryDelay.initialMs;
  }

  /** Subscribed on the current channel right now. */
  get subscribed(): boolean {
    return this.consumerTag !== null && this.subscribedOn === this.owner.generation;
  }

  /** Subscribes on `gen`; a failure is logged at error and retried with capped backoff. */
  async subscribe(gen: Generation): Promise<void> {
    if (
      !this.active ||
      this.owner.isStopped ||
      this.subscribing === gen.number ||
      (this.consumerTag !== null && this.subscribedOn === gen.number)
    )
      return;
    this.subscribing = gen.number;
    try {
      const queue = typeof this.queue === 'string' ? this.queue : await this.queue(gen.channel);
      const reply = await gen.channel.consume(queue, (msg) => this.deliver(gen, msg), this.options);
      this.consumerTag = reply.consumerTag;
      this.subscribedOn = gen.number;
      this.retryDelayMs = this.owner.retryDelay.initialMs;
    } catch (err) {
      this.owner.report(err, `${this.label}: could not subscribe; retrying`, this.retryDelayMs);
      this.scheduleRetry(gen);
      return;
    } finally {
      this.subscribing = null;
    }
    // Paused while the subscribe was on the wire: take it back.
    if (!this.active) await this.cancelOnBroker();
    else this.onSubscribed();
  }

  /** Stops deliveries (cancels on the broker) until `resume()`; survives reconnects. */
  async pause(): Promise<void> {
    this.active = false;
    this.stopRetrying();
    await this.cancelOnBroker();
  }

  /** Subscribes again (on the current channel, or on the next one). */
  async resume(): Promise<void> {
    if (this.cancelled) return;
    this.active = true;
    const gen = this.owner.currentGeneration();
    if (gen) await this.subscribe(gen);
  }

  /** Cancels for good (shutdown): in-flight deliveries can still be settled. */
  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.pause();
  }

  stopRetrying(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private deliver(gen: Generation, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled us (queue deleted, or its node failed over): subscribe again shortly.
      this.owner.log.warn({ channel: this.owner.options.name }, `${this.label} cancelled by broker; resubscribing`);
      this.consumerTag = null;
      this.subscribedOn = null;
      this.scheduleRetry(gen);
      return;
    }
    gen.acks?.delivered(msg.fields.deliveryTag);
    this.onMessage({ msg, generation: gen.number });
  }

  private scheduleRetry(gen: Generation): void {
    if (this.retryTimer || !this.active || this.owner.isStopped) return;
    const delayMs = this.retryDelayMs;
    this.retryDelayMs = Math.min(delayMs * 2, this.owner.retryDelay.maxMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      // A newer channel subscribes this consumer itself when it opens.
      if (this.owner.currentGeneration() === gen) void this.subscribe(gen);
    }, delayMs);
    this.retryTimer.unref();
  }

  private async cancelOnBroker(): Promise<void> {
    const tag = this.consumerTag;
    const gen = this.owner.currentGeneration();
    const on = this.subscribedOn;
    this.consumerTag = null;
    this.subscribedOn = null;
    // A tag of an earlier channel died with it.
    if (tag === null || !gen || on !== gen.number) return;
    try {
      await gen.channel.cancel(tag);
    } catch (err) {
      // The channel is going away, which cancels the consumer anyway.
      this.owner.log.warn({ channel: this.owner.options.name, err: (err as Error).message }, `${this.label}: cancel failed`);
    }
  }
}
