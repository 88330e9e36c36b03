import { setMaxListeners } from 'node:events';
import type { ConnectionFactory } from '../amqp/connect.js';
import { ManagedConnection, type Delivery, type ManagedChannel, type ManagedConsumer } from '../amqp/managed-channel.js';
import { typedProperties } from '../amqp/message-properties.js';
import { assertTopology, HEADERS, type Topology } from '../amqp/topology.js';
import { redactUrl } from '../config/redact.js';
import type { Knex } from '../db/knex.js';
import { recordInvalidEvent, recordStatement, type StoredStatement } from '../db/statements.js';
import { ACCOUNTING_EVENTS_PER_MESSAGE_MAX, decodeAccountingMessage, type AccountingEvent } from '../domain/accounting-event.js';
import { runShutdownSteps } from '../lifecycle.js';
import type { Logger } from '../log.js';
import { HopTimings } from '../stats/hops.js';
import { retryDb } from './retry-db.js';
import { type WebhookRetryPolicy, type WebhookTransport } from './webhook-delivery.js';
import { SWEEP_PAGE_MAX, WebhookForwarder } from './webhook-forwarder.js';

/**
 * The user-facing accounting system (`txsim accounting`): consumes the accounting queue, keeps one
 * statement line per event in its own tables (deduplicated by event id, ordered by the per-account
 * sequence), optionally forwards each event to a webhook, and acknowledges a delivery only after
 * all of that is recorded. A crash at any point therefore leads to redelivery, never to a gap. A
 * webhook left pending with no message left to bring it back (a consumer without --webhook acked the
 * redelivery) is found in the database and sent by the next consumer with --webhook (WebhookForwarder).
 */

/** Settings of `txsim accounting`. Units in the names. */
export interface AccountingOptions {
  readonly amqpUrl: string;
  readonly topology: Topology;
  /** Unacknowledged messages held at once (each one event or several): the bound on concurrent DB transactions, and on webhook POSTs. */
  readonly prefetchCount: number;
  /** How long shutdown waits for events in progress before leaving them to redelivery. */
  readonly shutdownDeadlineMs: number;
  readonly webhook: {
    readonly url: string;
    readonly secret: string;
    readonly policy: WebhookRetryPolicy;
    /**
     * A pending delivery nobody has worked on for this long (left by a consumer that crashed, its events
     * then acked by one without --webhook) is taken over and sent; see WebhookForwarder.
     */
    readonly orphanAfterMs: number;
  } | null;
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
  /** Webhook attempts made (each POST handed to the transport), counted once whatever became of its channel. */
  webhookAttempts: number;
  /** Pending deliveries left by an earlier consumer that this one took over and sent. */
  webhooksTakenOver: number;
}

/** Largest prefetch `txsim accounting` accepts; `verify` uses it to bound what a consumer may hold unacknowledged. */
export const ACCOUNTING_PREFETCH_MAX = 1_000;

/** Every count at zero: a consumer's metrics before its first message. */
export function emptyAccountingMetrics(): AccountingMetrics {
  return { statements: 0, duplicates: 0, invalid: 0, webhooksDelivered: 0, webhooksFailed: 0, webhookAttempts: 0, webhooksTakenOver: 0 };
}

/**
 * Consumes `<ns>.accounting.statements`. Per event of a delivery (one, or several from the relay):
 * one DB transaction (statement line, deduplicated by event id; webhook record) → commit → webhook
 * with retries → outcome recorded; then the delivery's ack. Database trouble is retried with capped
 * backoff while the delivery stays unacknowledged (the prefetch bounds how many wait), never
 * nack-requeued in a loop. Reconnects by itself; deliveries of a channel that is gone are never acked
 * (RabbitMQ redelivers them and the event id deduplicates), and their work stops when it goes: the
 * broker closes a channel that holds a message unacked past its `consumer_timeout`, and the copies it
 * redelivers must not queue behind (or POST beside) the ones it took back.
 */
export class AccountingConsumer {
  readonly metrics: AccountingMetrics = emptyAccountingMetrics();
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
  /**
   * Per channel generation with deliveries in progress: aborted when that channel is lost, which
   * stops its events' webhook retries, queued forwards and DB retries (not an attempt on the wire).
   * Entries go when their generation is lost, so at most the current one and none of the past.
   */
  private readonly generations = new Map<number, { readonly lost: AbortController; readonly stop: AbortSignal }>();
  private closed: Promise<void> | null = null;
  /** Set once start() connected: one that never started says nothing when closed. */
  private started = false;
  private readonly webhookUrlRedacted: string | null;
  /** Sends the webhooks (at most `prefetchCount` POSTs at once) and the pending ones left by an earlier consumer; null without --webhook. */
  private readonly forwarder: WebhookForwarder | null;
  /** Listeners a generation's stop signal may have: each of its events waiting for a webhook slot, a full prefetch of messages. */
  private readonly maxListenersPerGeneration: number;

  constructor(
    private readonly options: AccountingOptions,
    private readonly deps: AccountingDeps,
  ) {
    if (options.webhook && !deps.transport) throw new Error('a webhook needs a transport');
    // Every event in progress listens on these two signals (its waits and its HTTP attempt): up to
    // `prefetchCount` each, and a page of the webhook sweeper's, which is expected, not a leak.
    setMaxListeners((options.prefetchCount + SWEEP_PAGE_MAX) * 2 + 10, this.stopRetrying.signal, this.hardStop.signal);
    this.maxListenersPerGeneration = options.prefetchCount * (ACCOUNTING_EVENTS_PER_MESSAGE_MAX + 2) + 10;
    this.webhookUrlRedacted = options.webhook ? redactUrl(options.webhook.url) : null;
    const { log } = deps;
    this.forwarder =
      options.webhook && deps.transport
        ? new WebhookForwarder(
            {
              url: options.webhook.url,
              secret: options.webhook.secret,
              policy: options.webhook.policy,
              concurrencyMax: options.prefetchCount,
              orphanAfterMs: options.webhook.orphanAfterMs,
            },
            {
              db: deps.db,
              log,
              transport: deps.transport,
              metrics: this.metrics,
              shutdown: this.stopRetrying.signal,
              hardStop: this.hardStop.signal,
            },
          )
        : null;
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
      onLost: (generation) => this.abandon(generation),
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
    // Deliveries left pending by an earlier consumer have no message to bring them back: look for them.
    if (this.started) this.forwarder?.startSweeping();
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
    const task = this.handle(delivery, this.stopSignalOf(delivery))
      .catch((err) =>
        this.deps.log.error({ err: (err as Error).stack }, 'unexpected failure handling an accounting event; left unacknowledged'),
      )
      .finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  /**
   * The signal that stops a delivery's work: shutdown, or the loss of the channel it came on. A
   * delivery whose channel is already gone gets one aborted from the start.
   */
  private stopSignalOf(delivery: Delivery): AbortSignal {
    if (!this.channel.isCurrent(delivery)) return AbortSignal.abort();
    let generation = this.generations.get(delivery.generation);
    if (!generation) {
      const lost = new AbortController();
      const stop = AbortSignal.any([this.stopRetrying.signal, lost.signal]);
      setMaxListeners(this.maxListenersPerGeneration, stop);
      generation = { lost, stop };
      this.generations.set(delivery.generation, generation);
    }
    return generation.stop;
  }

  /**
   * The channel of `generation` is gone (the broker closed it, e.g. at its consumer_timeout, or the
   * connection dropped): RabbitMQ has put its unacked messages back and will deliver them again, so
   * its work stops here: the redelivered copies take over, with the give-up clock they had.
   */
  private abandon(generation: number): void {
    const entry = this.generations.get(generation);
    this.generations.delete(generation);
    if (!entry) return;
    this.deps.log.info({ generation }, 'accounting channel lost; its events stop here and come back redelivered');
    entry.lost.abort();
  }

  /**
   * A message carries one event or several (the relay's default). Each is stored in turn; the
   * webhooks of the stored ones go out at once (at most `prefetchCount` POSTs in the whole consumer),
   * so one receiver retrying for minutes holds back no other event's line. The delivery is acked once
   * every event is stored and forwarded. Shutting down, or losing the channel, part-way (`stop`)
   * leaves it unacked: RabbitMQ delivers it again and the events already stored are recognised by
   * their ids.
   */
  private async handle(delivery: Delivery, stop: AbortSignal): Promise<void> {
    const { msg } = delivery;
    if (stop.aborted) return;
    const decoded = decodeAccountingMessage(msg.content);
    if (!decoded.ok) {
      if (await this.recordInvalid(msg, 0, decoded.detail, msg.content, stop)) this.ack(delivery);
      return;
    }
    const forwards: Promise<boolean>[] = [];
    let complete = true;
    for (const [i, element] of decoded.elements.entries()) {
      // Stopped between two events: the rest wait for the redelivery (or the restart).
      if (stop.aborted) {
        complete = false;
        break;
      }
      if (!element.ok) {
        complete = await this.recordInvalid(msg, i + 1, element.detail, element.body, stop);
      } else {
        const stored = await this.storeEvent(msg, element.event, stop);
        complete = stored !== null;
        if (this.forwarder && stored?.webhookStatus === 'pending') {
          // The give-up clock runs from when the delivery was first stored: a redelivered event carries on with the time it has left.
          const startedMs = stored.webhookCreatedAt?.getTime() ?? Date.now();
          forwards.push(this.forwarder.forward(element.event, startedMs, stop, !stored.inserted));
        }
      }
      if (!complete) break;
    }
    // Every forward is awaited, even after a stop cut the loop short: close() waits for this task.
    const forwarded = await Promise.all(forwards);
    if (complete && forwarded.every(Boolean)) this.ack(delivery);
  }

  /**
   * Keeps what is not an accounting event in accounting_invalid_events (`position` 0: the whole message,
   * n: its nth event); false when shutdown came first. A delivery that came back finds its record there.
   */
  private async recordInvalid(msg: Delivery['msg'], position: number, detail: string, body: Buffer, stop: AbortSignal): Promise<boolean> {
    const messageId = messageIdOf(msg);
    const stored = await retryDb(
      this.deps.log,
      'record invalid event',
      () => recordInvalidEvent(this.deps.db, { messageId, position, routingKey: msg.fields.routingKey, detail, body }),
      stop,
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

  /**
   * Stores one event's statement line: where its webhook stands (status and first-stored time; null
   * without a webhook), or null when `stop` came first.
   */
  private async storeEvent(msg: Delivery['msg'], event: AccountingEvent, stop: AbortSignal): Promise<StoredStatement | null> {
    // Retried with capped backoff while the database fails; null once `stop` aborts (shutdown, or the
    // delivery's channel is gone: the delivery stays unacked).
    const stored = await retryDb(
      this.deps.log,
      'record statement',
      () => recordStatement(this.deps.db, event, this.webhookUrlRedacted),
      stop,
    );
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
    return stored.value;
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
              Promise.allSettled([...this.inFlight, this.forwarder?.stopped()]),
              new Promise((r) => setTimeout(r, this.options.shutdownDeadlineMs).unref()),
            ]),
        ],
        [
          'cut what is left',
          async () => {
            this.hardStop.abort();
            // Aborted attempts return at once; only a hung database call could still hold a task, so bound it too.
            await Promise.race([
              Promise.allSettled([...this.inFlight, this.forwarder?.stopped()]),
              new Promise((r) => setTimeout(r, 2_000).unref()),
            ]);
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
