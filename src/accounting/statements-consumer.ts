import { setMaxListeners } from 'node:events';
import type { ConnectionFactory } from '../amqp/connect.js';
import { ManagedConnection, type Delivery, type ManagedChannel, type ManagedConsumer } from '../amqp/managed-channel.js';
import { typedProperties } from '../amqp/message-properties.js';
import { assertTopology, HEADERS, type Topology } from '../amqp/topology.js';
import { redactUrl } from '../config/redact.js';
import type { Knex } from '../db/knex.js';
import { recordInvalidEvent, recordStatement, recordWebhookOutcome, type WebhookStatus } from '../db/statements.js';
import { decodeAccountingMessage, encodeAccountingEvent, type AccountingEvent } from '../domain/accounting-event.js';
import { runShutdownSteps } from '../lifecycle.js';
import type { Logger } from '../log.js';
import { HopTimings } from '../stats/hops.js';
import { deliverWebhook, type WebhookRetryPolicy, type WebhookTransport } from './webhook-delivery.js';

/**
 * The user-facing accounting system (`txsim accounting`): consumes the accounting queue, keeps one
 * statement line per event in its own tables (deduplicated by event id, ordered by the per-account
 * sequence), optionally forwards each event to a webhook, and acknowledges a delivery only after
 * all of that is recorded. A crash at any point therefore leads to redelivery, never to a gap.
 */

/** Settings of `txsim accounting`. Units in the names. */
export interface AccountingOptions {
  readonly amqpUrl: string;
  readonly topology: Topology;
  /** Unacknowledged messages held at once (each one event or several): the bound on concurrent DB transactions, and on webhook POSTs. */
  readonly prefetchCount: number;
  /** How long shutdown waits for events in progress before leaving them to redelivery. */
  readonly shutdownDeadlineMs: number;
  readonly webhook: { readonly url: string; readonly secret: string; readonly policy: WebhookRetryPolicy } | null;
  readonly clientName: string;
  /** How long start() waits for the broker, retries included, before it fails (default 15 s). */
  readonly connectTimeoutMs?: number;
}

export interface AccountingDeps {
  readonly db: Knex;
  readonly log: Logger;
  /** Required when `options.webhook` is set. */
  readonly transport: WebhookTransport | null;
  /** Called once per new statement line, after it committed (never for a repeat). */
  readonly onStatement: (event: AccountingEvent) => void;
  /** Opens the recovering AMQP connection; the real one unless a test passes a fake. */
  readonly connect?: ConnectionFactory;
}

export interface AccountingMetrics {
  statements: number;
  duplicates: number;
  invalid: number;
  webhooksDelivered: number;
  webhooksFailed: number;
}

/** Largest prefetch `txsim accounting` accepts; `verify` uses it to bound what a consumer may hold unacknowledged. */
export const ACCOUNTING_PREFETCH_MAX = 1_000;

/** Cap of the backoff while the database is failing. */
const DB_RETRY_MAX_MS = 5_000;

/** At most `max` tasks at once; the others wait their turn, first come first served. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(max: number) {
    this.free = max;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/**
 * Consumes `<ns>.accounting.statements`. Per event of a delivery (one, or several from the relay):
 * one DB transaction (statement line, deduplicated by event id; webhook record) → commit → webhook
 * with retries → outcome recorded; then the delivery's ack. Database trouble is retried with capped
 * backoff while the delivery stays unacknowledged (the prefetch bounds how many wait), never
 * nack-requeued in a loop. Reconnects by itself; deliveries of
 * a channel that is gone are never acked (RabbitMQ redelivers them and the event id deduplicates).
 */
export class AccountingConsumer {
  readonly metrics: AccountingMetrics = { statements: 0, duplicates: 0, invalid: 0, webhooksDelivered: 0, webhooksFailed: 0 };
  /** The statement hop (relayed → statement line committed); see stats/hops.ts. */
  readonly hops = new HopTimings();
  private readonly connection: ManagedConnection;
  /** Messages are acked one by one ('single'): a webhook retrying for minutes must not hold back the acks of later messages. */
  private readonly channel: ManagedChannel;
  private readonly consumer: ManagedConsumer;
  private readonly inFlight = new Set<Promise<void>>();
  /** Aborted at shutdown: no new webhook attempt and no further DB retry starts. */
  private readonly stopRetrying = new AbortController();
  /** Aborted when the shutdown deadline passes: attempts still on the wire are cut. */
  private readonly hardStop = new AbortController();
  private closed: Promise<void> | null = null;
  /** Set once start() connected: one that never started says nothing when closed. */
  private started = false;
  private readonly webhookUrlRedacted: string | null;
  /** Webhook POSTs (with their retries) in progress at once, across deliveries: at most `prefetchCount`. */
  private readonly webhookSlots: Slots;

  constructor(
    private readonly options: AccountingOptions,
    private readonly deps: AccountingDeps,
  ) {
    if (options.webhook && !deps.transport) throw new Error('a webhook needs a transport');
    // Every event in progress listens on these two signals (its waits and its HTTP attempt): up to
    // `prefetchCount` each, which is expected, not a leak.
    setMaxListeners(options.prefetchCount * 2 + 10, this.stopRetrying.signal, this.hardStop.signal);
    this.webhookUrlRedacted = options.webhook ? redactUrl(options.webhook.url) : null;
    this.webhookSlots = new Slots(options.prefetchCount);
    const { log } = deps;
    this.connection = new ManagedConnection({
      url: options.amqpUrl,
      log,
      clientName: options.clientName,
      setup: (channel) => assertTopology(channel, options.topology, { processRouting: false }),
      // Bounded by time instead: connectTimeoutMs.
      initialMaxRetries: Infinity,
      ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
      ...(deps.connect ? { connect: deps.connect } : {}),
    });
    this.channel = this.connection.channel({
      name: 'accounting channel',
      ackMode: 'single',
      setup: async (channel) => {
        await channel.prefetch(options.prefetchCount);
      },
      onOpen: () =>
        log.info(
          { queue: options.topology.accountingQueue, prefetch: options.prefetchCount, webhook: this.webhookUrlRedacted },
          'accounting consuming',
        ),
    });
    this.consumer = this.channel.consume(options.topology.accountingQueue, (delivery) => this.track(delivery), {
      label: 'accounting consumer',
    });
  }

  /**
   * Connects (waiting for the broker with backoff, up to `connectTimeoutMs`) and starts consuming.
   * Throws ServiceUnavailableError when the broker does not answer in time; resolves false without
   * connecting when `signal` aborts first.
   */
  async start(signal?: AbortSignal): Promise<boolean> {
    this.started = await this.connection.start(signal);
    return this.started;
  }

  /** Events in progress (delivered, not yet acked). */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** The accounting channel is open. */
  get connected(): boolean {
    return this.channel.channel !== null;
  }

  /** amqplib does not await the consume callback: track the work so shutdown can wait for it. */
  private track(delivery: Delivery): void {
    const task = this.handle(delivery)
      .catch((err) =>
        this.deps.log.error({ err: (err as Error).stack }, 'unexpected failure handling an accounting event; left unacknowledged'),
      )
      .finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  /**
   * A message carries one event or several (the relay's default). Each is stored in turn; the
   * webhooks of the stored ones go out at once (at most `prefetchCount` POSTs in the whole consumer),
   * so one receiver retrying for minutes holds back no other event's line. The delivery is acked once
   * every event is stored and forwarded. Shutting down part-way leaves it unacked: RabbitMQ delivers
   * it again and the events already stored are recognised by their ids.
   */
  private async handle(delivery: Delivery): Promise<void> {
    const { msg } = delivery;
    const decoded = decodeAccountingMessage(msg.content);
    if (!decoded.ok) {
      if (await this.recordInvalid(msg, 0, decoded.detail, msg.content)) this.ack(delivery);
      return;
    }
    const forwards: Promise<boolean>[] = [];
    let complete = true;
    for (const [i, element] of decoded.elements.entries()) {
      if (!element.ok) {
        complete = await this.recordInvalid(msg, i + 1, element.detail, element.body);
      } else {
        const stored = await this.storeEvent(msg, element.event);
        complete = stored !== null;
        if (this.options.webhook && stored?.webhookStatus === 'pending')
          forwards.push(this.webhookSlots.run(() => this.forward(element.event)));
      }
      if (!complete) break;
    }
    // Every forward is awaited, even after shutdown cut the loop short: close() waits for this task.
    const forwarded = await Promise.all(forwards);
    if (complete && forwarded.every(Boolean)) this.ack(delivery);
  }

  /**
   * Keeps what is not an accounting event in accounting_invalid_events (`position` 0: the whole message,
   * n: its nth event); false when shutdown came first. A delivery that came back finds its record there.
   */
  private async recordInvalid(msg: Delivery['msg'], position: number, detail: string, body: Buffer): Promise<boolean> {
    const messageId = messageIdOf(msg);
    const stored = await this.retryDb('record invalid event', () =>
      recordInvalidEvent(this.deps.db, { messageId, position, routingKey: msg.fields.routingKey, detail, body }),
    );
    if (!stored) return false;
    if (!stored.value) {
      this.deps.log.debug({ messageId, position }, 'invalid element recorded already; a repeated delivery');
      return true;
    }
    this.metrics.invalid++;
    this.deps.log.warn({ messageId, detail }, 'not an accounting event; recorded in accounting_invalid_events');
    return true;
  }

  /** Stores one event's statement line: its webhook status (null without a webhook), or null when shutdown came first. */
  private async storeEvent(msg: Delivery['msg'], event: AccountingEvent): Promise<{ webhookStatus: WebhookStatus | null } | null> {
    const stored = await this.retryDb('record statement', () => recordStatement(this.deps.db, event, this.webhookUrlRedacted));
    if (!stored) return null;
    if (stored.value.inserted) {
      this.metrics.statements++;
      const relayedAtMs = typedProperties(msg).headers[HEADERS.relayedAtMs];
      if (typeof relayedAtMs === 'number') this.hops.record('statement', Date.now() - relayedAtMs);
      this.deps.onStatement(event);
    } else {
      this.metrics.duplicates++;
      this.deps.log.debug({ eventId: event.eventId }, 'repeated event; statement already has it');
    }
    return { webhookStatus: stored.value.webhookStatus };
  }

  /** POSTs one stored event to the webhook and records the outcome; false when shutdown came first. */
  private async forward(event: AccountingEvent): Promise<boolean> {
    const webhook = this.options.webhook!;
    const wlog = this.deps.log.child({ eventId: event.eventId });
    const result = await deliverWebhook(
      this.deps.transport!,
      { url: webhook.url, eventId: event.eventId, body: encodeAccountingEvent(event) },
      webhook.secret,
      webhook.policy,
      this.stopRetrying.signal,
      {
        attemptSignal: this.hardStop.signal,
        onRetry: ({ attempt, delayMs, result: r }) =>
          wlog.info(
            {
              attempt,
              retryInMs: delayMs,
              ...(r.kind === 'response' ? { status: r.status } : r.kind === 'error' ? { code: r.code } : {}),
            },
            'webhook not accepted; retrying',
          ),
      },
    );
    // Shutting down mid-delivery: no outcome to record; the event comes back after a restart.
    if (result.status === 'aborted') return false;
    if (!(await this.retryDb('record webhook outcome', () => recordWebhookOutcome(this.deps.db, event.eventId, result)))) return false;
    if (result.status === 'delivered') this.metrics.webhooksDelivered++;
    else {
      this.metrics.webhooksFailed++;
      wlog.warn(
        { attempts: result.attempts, status: result.responseStatus, err: result.lastError, gaveUp: result.gaveUp },
        'webhook delivery failed; recorded',
      );
    }
    return true;
  }

  /** Runs `work` until it succeeds, with capped backoff; null once shutdown starts (leave the delivery unacked). */
  private async retryDb<T>(what: string, work: () => Promise<T>): Promise<{ value: T } | null> {
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, DB_RETRY_MAX_MS)) {
      try {
        return { value: await work() };
      } catch (err) {
        if (this.stopRetrying.signal.aborted) return null;
        this.deps.log.warn({ step: what, err: (err as Error).message, retryInMs: delayMs }, 'accounting database step failed; retrying');
        await abortableSleep(delayMs, this.stopRetrying.signal);
        if (this.stopRetrying.signal.aborted) return null;
      }
    }
  }

  private ack(delivery: Delivery): void {
    // A delivery of a channel that is gone cannot be acked; RabbitMQ redelivers it instead (the event id deduplicates).
    this.channel.ack(delivery);
  }

  /**
   * Graceful shutdown, safe to call twice: stop consuming → stop retrying → let events in progress
   * finish (up to the deadline) → cut what is left → close the connection. The caller closes the
   * database pool and the webhook transport.
   */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    if (!this.started) {
      // Nothing was consumed; the caller prints why it could not start, as its one line.
      await this.connection.close();
      return;
    }
    await runShutdownSteps(
      [
        ['cancel consumer', () => this.consumer.cancel()],
        [
          'stop retrying',
          () => {
            this.stopRetrying.abort();
            return Promise.resolve();
          },
        ],
        [
          'finish in-flight',
          () =>
            Promise.race([
              Promise.allSettled([...this.inFlight]),
              new Promise((r) => setTimeout(r, this.options.shutdownDeadlineMs).unref()),
            ]),
        ],
        [
          'cut what is left',
          async () => {
            this.hardStop.abort();
            // Aborted attempts return at once; only a hung database call could still hold a task, so bound it too.
            await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, 2_000).unref())]);
          },
        ],
        ['close connection', () => this.connection.close()],
      ],
      this.deps.log,
      'accounting',
    );
    this.deps.log.info({ ...this.metrics }, 'accounting stopped');
  }
}

function messageIdOf(msg: Delivery['msg']): string | null {
  return typedProperties(msg).messageId ?? null;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
