import type { Channel } from 'amqplib';
import { LiveEvents } from '../amqp/live-events.js';
import { redactSecrets } from '../config/redact.js';
import {
  attemptRoutingKey,
  encodeAttemptEvent,
  ERROR_CODE_CHARS_MAX,
  ERROR_MESSAGE_CHARS_MAX,
  type AttemptEvent,
} from '../domain/attempt-event.js';
import type { FailureRecord } from '../db/transaction-failures.js';
import type { Logger } from '../log.js';

/** One failed attempt as the worker saw it, after its retry or park publish was confirmed (its worker is the reporter's). */
export type FailedAttempt = Omit<AttemptEvent, 'at' | 'workerId'> & { readonly failedAt: Date };

export interface FailureReportOptions {
  readonly workerId: string;
  /** The `<ns>.feed` topic exchange the attempt events go to. */
  readonly feedExchange: string;
  /** Records held while the database write is slow or failing; beyond it the oldest are dropped. */
  readonly bufferMax?: number;
  /** Most records written in one INSERT. */
  readonly writeBatchMax?: number;
}

export interface FailureReportDeps {
  /** Appends records to `transaction_failures`; absent (unit tests without a database) = not recorded. */
  readonly write?: (records: readonly FailureRecord[]) => Promise<void>;
  /** The open channel to publish attempt events on, or null while there is none. */
  readonly channel: () => Channel | null;
}

const BUFFER_MAX = 10_000;
const WRITE_BATCH_MAX = 500;

/**
 * Tells the rest of the system that an attempt failed: a transient event on the feed exchange (for
 * live WebSocket clients) and a durable row in `transaction_failures` (for the status reads, which
 * must survive a `txsim serve` restart). Both are best-effort and off the message's path: `report`
 * never throws, never waits, and is only called after the message itself was safely moved to its
 * delay or parking queue. The rows are written by one loop, many per INSERT and one INSERT at a
 * time, so a burst of failures holds at most one pooled connection — the applying batches keep the
 * rest — and a database that is down costs the records (logged), never the message.
 */
export class FailureReport {
  private buffer: FailureRecord[] = [];
  private writing: Promise<void> | null = null;
  private dropped = 0;
  private readonly events: LiveEvents;
  recordsLost = 0;

  constructor(
    private readonly options: FailureReportOptions,
    private readonly deps: FailureReportDeps,
    private readonly log: Logger,
  ) {
    this.events = new LiveEvents(deps.channel, options.feedExchange, log, 'attempt event');
  }

  /** Events not published (no channel, congested, or the publish threw). */
  get eventsSkipped(): number {
    return this.events.skipped;
  }

  report(failure: FailedAttempt): void {
    const errorCode = redactSecrets(failure.errorCode, []).slice(0, ERROR_CODE_CHARS_MAX);
    const errorMessage = redactSecrets(failure.errorMessage, []).slice(0, ERROR_MESSAGE_CHARS_MAX);
    this.publish({ ...failure, errorCode, errorMessage });
    if (!this.deps.write) return;
    this.buffer.push({
      transactionId: failure.transactionId,
      state: failure.state,
      accountId: failure.accountId,
      attempt: failure.attempt,
      errorCode,
      errorMessage,
      workerId: this.options.workerId,
      failedAt: failure.failedAt,
    });
    const overflow = this.buffer.length - (this.options.bufferMax ?? BUFFER_MAX);
    if (overflow > 0) {
      this.buffer.splice(0, overflow);
      this.recordsLost += overflow;
      this.dropped += overflow;
    }
    this.writing ??= this.writeAll().finally(() => (this.writing = null));
  }

  /** Waits (at most `deadlineMs`) for the records still held to be written. Safe to call twice. */
  async close(deadlineMs: number): Promise<void> {
    if (!this.writing) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.writing, new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)))]);
    clearTimeout(timer);
    if (this.buffer.length > 0) this.log.warn({ records: this.buffer.length }, 'failed-attempt records not written before shutdown');
  }

  private publish(failure: FailedAttempt): void {
    if (!this.events.ready()) return;
    const event: AttemptEvent = {
      transactionId: failure.transactionId,
      state: failure.state,
      attempt: failure.attempt,
      accountId: failure.accountId,
      type: failure.type,
      amountMinor: failure.amountMinor,
      currency: failure.currency,
      errorCode: failure.errorCode,
      errorMessage: failure.errorMessage,
      workerId: this.options.workerId,
      at: failure.failedAt.toISOString(),
    };
    this.events.publish(attemptRoutingKey(failure), encodeAttemptEvent(event));
  }

  private async writeAll(): Promise<void> {
    const write = this.deps.write!;
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, this.options.writeBatchMax ?? WRITE_BATCH_MAX);
      try {
        await write(batch);
      } catch (err) {
        // The status then shows less than happened; the messages themselves are already where they belong.
        this.recordsLost += batch.length;
        this.log.warn({ records: batch.length, err: (err as Error).message }, 'could not record failed attempts; carrying on');
      }
      if (this.dropped > 0) {
        this.log.warn({ records: this.dropped }, 'failed-attempt records dropped: more failures than the database took');
        this.dropped = 0;
      }
    }
  }
}
