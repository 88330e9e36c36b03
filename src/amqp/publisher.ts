import type { ConfirmChannel, Message, Options } from 'amqplib';
import { typedProperties } from './message-properties.js';

/** Outcome of one confirmed publish. */
export type PublishOutcome = 'confirmed' | 'returned';

export class PublishError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PublishError';
  }
}

/** Correlates a returned message without a message_id (rare) with its publish. */
const PUBLISH_KEY_HEADER = 'x-txsim-publish-key';

interface Pending {
  messageId: string | undefined;
  resolve: (outcome: PublishOutcome) => void;
  reject: (err: Error) => void;
  /** When the confirm is overdue (performance.now() clock). */
  deadlineMs: number;
  returned: boolean;
}

export interface ConfirmPublisherOptions {
  /** Most messages published but not yet confirmed; `publish` waits for room beyond it. */
  readonly windowMax: number;
  /** A confirm that takes longer than this fails the publish (confirms can hang after a silent disconnect). */
  readonly confirmTimeoutMs: number;
}

/**
 * Confirmed, mandatory, persistent publishing on one confirm channel with a bounded window of
 * unconfirmed messages. `publish` resolves when the broker confirms ('returned' when the message
 * was unroutable and came back), rejects on nack, timeout or channel loss.
 */
export class ConfirmPublisher {
  private readonly pending = new Map<string, Pending>();
  private readonly keysByMessageId = new Map<string, string[]>();
  private readonly roomWaiters: (() => void)[] = [];
  private drainWaiter: (() => void) | null = null;
  private closedError: Error | null = null;
  private sequence = 0;
  /**
   * One timer for the whole window, not one per message (a timer per publish was a visible share of
   * gen's CPU): armed for the oldest unconfirmed message's deadline. Every message has the same
   * timeout, so `pending`'s insertion order is deadline order and the oldest is its first entry.
   */
  private overdueTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly channel: ConfirmChannel,
    private readonly options: ConfirmPublisherOptions,
  ) {
    channel.on('return', (message: Message) => {
      // A returned message is matched to its publish by message_id (or, without one, by a header):
      // RabbitMQ sends basic.return before the confirm of the same message.
      const { messageId, headers } = typedProperties(message);
      const keyHeader = headers[PUBLISH_KEY_HEADER];
      const key = messageId ? this.keysByMessageId.get(messageId)?.[0] : typeof keyHeader === 'string' ? keyHeader : undefined;
      const entry = key ? this.pending.get(key) : undefined;
      if (entry) entry.returned = true;
    });
    channel.on('drain', () => {
      const waiter = this.drainWaiter;
      this.drainWaiter = null;
      waiter?.();
    });
    const fail = (err?: Error) => this.failAll(err ?? new PublishError('channel closed'));
    channel.on('close', () => fail());
    channel.on('error', (err: Error) => fail(new PublishError(`channel error: ${err.message}`, { cause: err })));
  }

  /** Messages published and not yet confirmed. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Publishes and waits for the broker's confirm. */
  async publishConfirmed(exchange: string, routingKey: string, body: Buffer, options: Options.Publish = {}): Promise<PublishOutcome> {
    return (await this.publish(exchange, routingKey, body, options)).confirmed;
  }

  /**
   * Waits until the window has room (and the channel's buffer has drained), then publishes.
   * Resolves as soon as the message is handed to the channel; `confirmed` settles with the broker's
   * answer, so a producer can keep `windowMax` messages in flight.
   */
  async publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish = {},
  ): Promise<{ confirmed: Promise<PublishOutcome> }> {
    while (this.pending.size >= this.options.windowMax) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    if (this.closedError) throw this.closedError;
    const key = String(++this.sequence);
    const deadlineMs = performance.now() + this.options.confirmTimeoutMs;
    const outcome = new Promise<PublishOutcome>((resolve, reject) => {
      this.pending.set(key, { messageId: options.messageId, resolve, reject, deadlineMs, returned: false });
    });
    this.armOverdueTimer();
    // Marked handled here: callers attach their own handler later, and an early failure must not
    // count as an unhandled rejection in between.
    outcome.catch(() => {});
    if (options.messageId) {
      const keys = this.keysByMessageId.get(options.messageId);
      if (keys) keys.push(key);
      else this.keysByMessageId.set(options.messageId, [key]);
    }
    let writable: boolean;
    try {
      writable = this.channel.publish(
        exchange,
        routingKey,
        body,
        {
          persistent: true,
          mandatory: true,
          ...options,
          ...(options.messageId ? {} : { headers: { ...typedProperties(options).headers, [PUBLISH_KEY_HEADER]: key } }),
        },
        (err: unknown) => this.settle(key, err ? new PublishError('broker nacked the message', { cause: err }) : null),
      );
    } catch (err) {
      this.settle(key, new PublishError(`publish failed: ${(err as Error).message}`, { cause: err }));
      return { confirmed: outcome };
    }
    // publish() returning false still buffered the message: stop here until the socket drains,
    // or memory grows without bound under load.
    if (!writable && !this.closedError) await new Promise<void>((resolve) => (this.drainWaiter = resolve));
    return { confirmed: outcome };
  }

  /** Resolves once the window has room for one more message (at once when it has; also when the channel closed). */
  async waitForRoom(): Promise<void> {
    while (this.pending.size >= this.options.windowMax && !this.closedError) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
  }

  /** Resolves when everything published so far is settled (confirmed, returned or failed). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  /** Arms the timer for the oldest unconfirmed message, unless it is armed or nothing is unconfirmed. */
  private armOverdueTimer(): void {
    if (this.overdueTimer !== null) return;
    const oldest = this.pending.values().next();
    if (oldest.done) return;
    this.overdueTimer = setTimeout(() => this.failOverdue(), Math.max(0, oldest.value.deadlineMs - performance.now()));
  }

  /** Fails every message whose confirm is overdue (the oldest first), then waits for the next one's deadline. */
  private failOverdue(): void {
    this.overdueTimer = null;
    const nowMs = performance.now();
    for (const [key, entry] of this.pending) {
      if (entry.deadlineMs > nowMs) break;
      this.settle(key, new PublishError(`no confirm within ${this.options.confirmTimeoutMs} ms`));
    }
    this.armOverdueTimer();
  }

  private settle(key: string, err: Error | null): void {
    const entry = this.pending.get(key);
    if (!entry) return;
    this.pending.delete(key);
    // Nothing left to time out: no timer keeps the process alive.
    if (this.pending.size === 0 && this.overdueTimer !== null) {
      clearTimeout(this.overdueTimer);
      this.overdueTimer = null;
    }
    if (entry.messageId) {
      const keys = this.keysByMessageId.get(entry.messageId);
      const at = keys?.indexOf(key) ?? -1;
      if (keys && at >= 0) keys.splice(at, 1);
      if (keys?.length === 0) this.keysByMessageId.delete(entry.messageId);
    }
    if (err) entry.reject(err);
    else entry.resolve(entry.returned ? 'returned' : 'confirmed');
    this.roomWaiters.shift()?.();
  }

  private failAll(err: Error): void {
    this.closedError ??= err;
    for (const key of [...this.pending.keys()]) this.settle(key, err);
    for (const waiter of this.roomWaiters.splice(0)) waiter();
    this.drainWaiter?.();
    this.drainWaiter = null;
  }
}
