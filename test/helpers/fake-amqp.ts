import { EventEmitter } from 'node:events';
import type { Channel, ConfirmChannel, ConsumeMessage, MessageProperties, Options } from 'amqplib';
import type { AmqpModel, ConnectionFactory, RecoveringConnection, RecoveringConnectionOptions } from '../../src/amqp/connect.js';

/**
 * A fake amqplib for unit tests: a broker with queues, connections and channels that behave like
 * RabbitMQ where txsim depends on it — prefetch bounds unsettled deliveries, `ack(multiple)` settles
 * every earlier tag, a requeued or unsettled delivery goes back to its queue (redelivered, returns first
 * and in the order they came back, as a quorum queue does), an
 * unknown delivery tag closes the channel (PRECONDITION_FAILED), settling on a closed channel throws,
 * confirms arrive asynchronously (or when the test says so), and a broker-side cancel is a `null`
 * delivery. The recovering connection is simulated by `FakeBroker.connect`, which has the shape of
 * `connectRecovering`: setup, then onConnect, on every (re)connect; `disconnect()` drops everything.
 */

export interface FakeMessage {
  readonly content: Buffer;
  readonly properties: Partial<MessageProperties>;
  readonly routingKey: string;
  redelivered: boolean;
}

export interface Settlement {
  readonly kind: 'ack' | 'nack';
  readonly tag: number;
  readonly multiple: boolean;
  readonly requeue: boolean;
  /** The channel was closed already (amqplib throws; recorded so a test can see the attempt). */
  readonly afterClose: boolean;
}

export interface Published {
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
}

interface FakeConsumer {
  readonly tag: string;
  readonly queue: string;
  readonly onMessage: (msg: ConsumeMessage | null) => void;
  readonly noAck: boolean;
}

/** An error shaped like amqplib's for a closed channel. */
class IllegalOperationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IllegalOperationError';
  }
}

export class FakeChannel extends EventEmitter {
  closed = false;
  prefetchCount = 0;
  readonly settlements: Settlement[] = [];
  readonly published: Published[] = [];
  readonly consumers = new Map<string, FakeConsumer>();
  /** Consumer tags cancelled by the client. */
  readonly cancelled: string[] = [];
  /** Errors the next `consume` calls reject with, one per call. */
  readonly consumeFailures: Error[] = [];
  /** 'auto': every publish is confirmed on the next turn; 'manual': `confirmAll()` confirms. */
  confirmMode: 'auto' | 'manual' = 'auto';
  private readonly pendingConfirms: ((err: unknown) => void)[] = [];
  /** Delivered, not yet settled: tag → message (in tag order). */
  private readonly unsettled = new Map<number, { msg: FakeMessage; queue: string }>();
  private nextTag = 1;
  private nextConsumer = 1;

  constructor(
    private readonly broker: FakeBroker,
    readonly confirm: boolean,
  ) {
    super();
  }

  /** This fake as the amqplib type the code under test expects. */
  asChannel(): ConfirmChannel {
    return this as unknown as ConfirmChannel;
  }

  get unsettledCount(): number {
    return this.unsettled.size;
  }

  /** Tags acked on this channel, multiple-acks expanded to every tag they settled. */
  ackedTags(): number[] {
    return this.settled.filter((s) => s.kind === 'ack').map((s) => s.tag);
  }

  private readonly settled: { kind: 'ack' | 'nack'; tag: number }[] = [];

  // The channel methods answer asynchronously, as amqplib's do (an RPC to the broker).
  async prefetch(count: number): Promise<void> {
    await this.rpc();
    this.prefetchCount = count;
  }

  async assertExchange(): Promise<void> {
    await this.rpc();
  }

  async assertQueue(name: string): Promise<{ queue: string; messageCount: number; consumerCount: number }> {
    await this.rpc();
    const queue = name === '' ? `amq.gen-${Math.random().toString(36).slice(2)}` : name;
    this.broker.queue(queue);
    return { queue, messageCount: 0, consumerCount: 0 };
  }

  async bindQueue(): Promise<void> {
    await this.rpc();
  }

  async checkExchange(): Promise<void> {
    await this.rpc();
  }

  async consume(
    queue: string,
    onMessage: (msg: ConsumeMessage | null) => void,
    options: Options.Consume = {},
  ): Promise<{ consumerTag: string }> {
    await this.rpc();
    const failure = this.consumeFailures.shift();
    if (failure) throw failure;
    const tag = `ctag-${this.nextConsumer++}`;
    this.consumers.set(tag, { tag, queue, onMessage, noAck: options.noAck === true });
    this.broker.dispatchSoon();
    return { consumerTag: tag };
  }

  async cancel(consumerTag: string): Promise<void> {
    await this.rpc();
    this.consumers.delete(consumerTag);
    this.cancelled.push(consumerTag);
  }

  /** The broker cancels a consumer (its queue was deleted): amqplib delivers `null`. */
  cancelByBroker(consumerTag?: string): void {
    const consumer = consumerTag ? this.consumers.get(consumerTag) : [...this.consumers.values()][0];
    if (!consumer) throw new Error('no consumer to cancel');
    this.consumers.delete(consumer.tag);
    consumer.onMessage(null);
  }

  ack(message: Pick<ConsumeMessage, 'fields'>, allUpTo = false): void {
    this.settle('ack', message.fields.deliveryTag, allUpTo, false);
  }

  nack(message: Pick<ConsumeMessage, 'fields'>, allUpTo = false, requeue = true): void {
    this.settle('nack', message.fields.deliveryTag, allUpTo, requeue);
  }

  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish = {},
    onConfirm?: (err: unknown) => void,
  ): boolean {
    this.ensureOpen();
    this.published.push({ exchange, routingKey, content, options });
    if (this.confirm && onConfirm) {
      if (this.confirmMode === 'auto') setImmediate(() => onConfirm(null));
      else this.pendingConfirms.push(onConfirm);
    }
    return true;
  }

  /** Confirms (or, with an error, nacks) every publish waiting for a confirm. */
  confirmAll(err: unknown = null): void {
    for (const confirm of this.pendingConfirms.splice(0)) confirm(err);
  }

  async close(): Promise<void> {
    await this.rpc();
    this.closeWith(null);
  }

  /** Closes as the broker does after a channel error: 'error', then 'close'; unsettled deliveries go back. */
  closeWith(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.consumers.clear();
    for (const { msg, queue } of this.unsettled.values()) this.broker.requeue(queue, msg);
    this.unsettled.clear();
    if (err) this.emit('error', err);
    this.emit('close', err ?? undefined);
    this.broker.dispatchSoon();
  }

  /** Hands queued messages to this channel's consumers, as far as prefetch allows. */
  dispatch(): void {
    for (const consumer of this.consumers.values()) {
      while (
        !this.closed &&
        this.consumers.has(consumer.tag) &&
        (this.prefetchCount === 0 || consumer.noAck || this.unsettled.size < this.prefetchCount)
      ) {
        const msg = this.broker.take(consumer.queue);
        if (!msg) break;
        const deliveryTag = this.nextTag++;
        if (!consumer.noAck) this.unsettled.set(deliveryTag, { msg, queue: consumer.queue });
        consumer.onMessage({
          content: msg.content,
          fields: { deliveryTag, redelivered: msg.redelivered, exchange: '', routingKey: msg.routingKey, consumerTag: consumer.tag },
          properties: { headers: {}, ...msg.properties } as MessageProperties,
        });
      }
    }
  }

  private settle(kind: 'ack' | 'nack', tag: number, multiple: boolean, requeue: boolean): void {
    this.settlements.push({ kind, tag, multiple, requeue, afterClose: this.closed });
    if (this.closed) throw new IllegalOperationError('Channel closed');
    const tags = multiple ? [...this.unsettled.keys()].filter((t) => t <= tag) : this.unsettled.has(tag) ? [tag] : [];
    if (tags.length === 0) {
      // What RabbitMQ does with a tag it does not know (never delivered, or settled already).
      const err = Object.assign(
        new Error(`Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - unknown delivery tag ${tag}"`),
        { code: 406 },
      );
      setImmediate(() => this.closeWith(err));
      return;
    }
    for (const t of tags) {
      const entry = this.unsettled.get(t)!;
      this.unsettled.delete(t);
      this.settled.push({ kind, tag: t });
      if (kind === 'nack' && requeue) this.broker.requeue(entry.queue, entry.msg);
      else if (kind === 'ack') this.broker.acked.push(entry.msg);
    }
    this.broker.dispatchSoon();
  }

  private ensureOpen(): void {
    if (this.closed) throw new IllegalOperationError('Channel closed');
  }

  /** One round trip: rejects on a closed channel, resolves on a later turn. */
  private async rpc(): Promise<void> {
    this.ensureOpen();
    await Promise.resolve();
  }
}

export class FakeConnection extends EventEmitter {
  closed = false;
  readonly channels: FakeChannel[] = [];

  constructor(private readonly broker: FakeBroker) {
    super();
  }

  /** This fake as the model type the code under test expects (it has that shape). */
  asModel(): AmqpModel {
    return this;
  }

  createChannel(): Promise<Channel> {
    return this.open(false);
  }

  createConfirmChannel(): Promise<ConfirmChannel> {
    return this.open(true);
  }

  close(): Promise<void> {
    this.drop(null);
    return Promise.resolve();
  }

  /** Every channel closes (unsettled deliveries go back to their queues), then the connection. */
  drop(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    for (const channel of this.channels) channel.closeWith(null);
    this.emit('close', err ?? undefined);
  }

  private async open(confirm: boolean): Promise<ConfirmChannel> {
    await Promise.resolve();
    if (this.closed) throw new IllegalOperationError('Connection closed');
    const channel = new FakeChannel(this.broker, confirm);
    this.channels.push(channel);
    return channel.asChannel();
  }
}

export class FakeBroker {
  readonly queues = new Map<string, FakeMessage[]>();
  /** Every message acked, in ack order (a message acked twice shows twice). */
  readonly acked: FakeMessage[] = [];
  readonly connections: FakeConnection[] = [];
  /** Errors the next connect attempts fail with (the setup step), one per attempt. */
  readonly connectFailures: Error[] = [];
  private options: RecoveringConnectionOptions | null = null;
  private stopped = false;
  private dispatchScheduled = false;
  /** Messages handed back and not yet delivered again (see `requeue`). */
  private readonly returned = new WeakSet<FakeMessage>();

  /** A ConnectionFactory with the behaviour of `connectRecovering`. */
  readonly connect: ConnectionFactory = async (options) => {
    this.options = options;
    this.stopped = false;
    await this.reconnect();
    const handle: RecoveringConnection = {
      close: () => {
        this.stopped = true;
        this.current?.drop(null);
        return Promise.resolve();
      },
    };
    return handle;
  };

  get current(): FakeConnection | null {
    const last = this.connections.at(-1);
    return last && !last.closed ? last : null;
  }

  /** Every channel of every connection, oldest first. */
  get channels(): FakeChannel[] {
    return this.connections.flatMap((c) => c.channels);
  }

  /** The open channels of the current connection that consume `queue`. */
  consumersOf(queue: string): FakeChannel[] {
    return (this.current?.channels ?? []).filter((ch) => !ch.closed && [...ch.consumers.values()].some((c) => c.queue === queue));
  }

  queue(name: string): FakeMessage[] {
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = []));
    return q;
  }

  /** Publishes to a queue directly (what the default exchange does). */
  enqueue(queue: string, content: Buffer | string, properties: Partial<MessageProperties> = {}, routingKey = 'tx.test'): void {
    this.queue(queue).push({ content: Buffer.from(content), properties, routingKey, redelivered: false });
    this.dispatchSoon();
  }

  /**
   * A returned message goes ahead of the queue's never-delivered ones, behind those returned before it
   * and not yet delivered again: a quorum queue keeps its returns in the order they came back and
   * delivers them first, so messages handed back in order are redelivered in order.
   */
  requeue(queue: string, msg: FakeMessage): void {
    msg.redelivered = true;
    const q = this.queue(queue);
    let at = 0;
    while (at < q.length && this.returned.has(q[at]!)) at++;
    q.splice(at, 0, msg);
    this.returned.add(msg);
  }

  take(queue: string): FakeMessage | undefined {
    const msg = this.queue(queue).shift();
    if (msg) this.returned.delete(msg);
    return msg;
  }

  /** The connection drops (broker restart, network): channels close, 'disconnect' is reported. */
  disconnect(err: Error = new Error('Connection closed: 320 (CONNECTION-FORCED)')): void {
    const connection = this.current;
    if (!connection || !this.options) return;
    connection.drop(err);
    this.options.onDisconnect(err);
  }

  /** A new connection, as recovery makes it: setup, then onConnect. */
  async reconnect(): Promise<FakeConnection> {
    if (!this.options || this.stopped) throw new Error('not connected through broker.connect');
    const failure = this.connectFailures.shift();
    if (failure) throw failure;
    const connection = new FakeConnection(this);
    this.connections.push(connection);
    await this.options.setup(connection.asModel());
    this.options.onConnect(connection.asModel());
    return connection;
  }

  /** Delivers on the next turn, as a socket would: never re-entrantly inside the caller's ack. */
  dispatchSoon(): void {
    if (this.dispatchScheduled) return;
    this.dispatchScheduled = true;
    setImmediate(() => {
      this.dispatchScheduled = false;
      for (const channel of this.current?.channels ?? []) channel.dispatch();
    });
  }
}
