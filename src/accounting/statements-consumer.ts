import { setMaxListeners } from 'node:events';
import type { Channel, ChannelModel, ConsumeMessage, RecoveringChannelModel } from 'amqplib';
import { connectRecovering } from '../amqp/connect.js';
import { assertTopology, type Topology } from '../amqp/topology.js';
import { redactUrl } from '../config/redact.js';
import type { Knex } from '../db/knex.js';
import { recordInvalidEvent, recordStatement, recordWebhookOutcome } from '../db/statements.js';
import { decodeAccountingEvent, encodeAccountingEvent, type AccountingEvent } from '../domain/accounting-event.js';
import { runShutdownSteps } from '../lifecycle.js';
import type { Logger } from '../log.js';
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
  /** Unacknowledged events held at once: the bound on concurrent DB transactions and webhook POSTs. */
  readonly prefetchCount: number;
  /** How long shutdown waits for events in progress before leaving them to redelivery. */
  readonly shutdownDeadlineMs: number;
  readonly webhook: { readonly url: string; readonly secret: string; readonly policy: WebhookRetryPolicy } | null;
  readonly clientName: string;
}

export interface AccountingDeps {
  readonly db: Knex;
  readonly log: Logger;
  /** Required when `options.webhook` is set. */
  readonly transport: WebhookTransport | null;
  /** Called once per new statement line, after it committed (never for a repeat). */
  readonly onStatement: (event: AccountingEvent) => void;
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

/**
 * Consumes `<ns>.accounting.statements`. Per delivery: decode → one DB transaction (statement line,
 * deduplicated by event id; webhook record) → commit → webhook with retries → outcome recorded →
 * ack. Database trouble is retried with capped backoff while the delivery stays unacknowledged (the
 * prefetch bounds how many wait), never nack-requeued in a loop. Reconnects by itself; deliveries of
 * a channel that is gone are never acked (RabbitMQ redelivers them and the event id deduplicates).
 */
export class AccountingConsumer {
  readonly metrics: AccountingMetrics = { statements: 0, duplicates: 0, invalid: 0, webhooksDelivered: 0, webhooksFailed: 0 };
  private connection: RecoveringChannelModel | null = null;
  private channel: Channel | null = null;
  private consumerTag: string | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  /** Aborted at shutdown: no new webhook attempt and no further DB retry starts. */
  private readonly stopRetrying = new AbortController();
  /** Aborted when the shutdown deadline passes: attempts still on the wire are cut. */
  private readonly hardStop = new AbortController();
  private closing = false;
  private closed: Promise<void> | null = null;
  private readonly webhookUrlRedacted: string | null;

  constructor(
    private readonly options: AccountingOptions,
    private readonly deps: AccountingDeps,
  ) {
    if (options.webhook && !deps.transport) throw new Error('a webhook needs a transport');
    // Every event in progress listens on these two signals (its waits and its HTTP attempt): up to
    // `prefetchCount` each, which is expected, not a leak.
    setMaxListeners(options.prefetchCount * 2 + 10, this.stopRetrying.signal, this.hardStop.signal);
    this.webhookUrlRedacted = options.webhook ? redactUrl(options.webhook.url) : null;
  }

  /** Connects (waiting for the broker with backoff) and starts consuming. */
  async start(): Promise<void> {
    const { log } = this.deps;
    this.connection = await connectRecovering({
      url: this.options.amqpUrl,
      log,
      clientName: this.options.clientName,
      setup: async (model) => {
        const channel = await model.createChannel();
        await assertTopology(channel, this.options.topology);
        await channel.close();
      },
      onConnect: (model) => {
        this.openChannel(model).catch((err) => {
          log.error({ err: (err as Error).message }, 'could not open the accounting channel; closing connection to retry');
          model.close().catch(() => {});
        });
      },
      onDisconnect: () => {
        this.channel = null;
        this.consumerTag = null;
      },
      initialMaxRetries: 20,
    });
  }

  private async openChannel(model: ChannelModel): Promise<void> {
    const channel = await model.createChannel();
    channel.on('error', (err: Error) => this.deps.log.warn({ err: err.message }, 'accounting channel error'));
    channel.on('close', () => {
      if (this.channel === channel) this.channel = null;
    });
    await channel.prefetch(this.options.prefetchCount);
    this.channel = channel;
    if (!this.closing) await this.consume(channel);
    this.deps.log.info({ queue: this.options.topology.accountingQueue, prefetch: this.options.prefetchCount, webhook: this.webhookUrlRedacted }, 'accounting consuming');
  }

  private async consume(channel: Channel): Promise<void> {
    const reply = await channel.consume(this.options.topology.accountingQueue, (msg) => {
      if (msg === null) {
        // Cancelled by the broker (queue deleted or moved): subscribe again shortly.
        this.deps.log.warn('accounting consumer cancelled by broker; resubscribing');
        this.consumerTag = null;
        setTimeout(() => {
          if (this.channel === channel && !this.closing) this.consume(channel).catch(() => {});
        }, 1_000).unref();
        return;
      }
      // amqplib does not await this callback: track the work so shutdown can wait for it.
      const task = this.handle(msg, channel)
        .catch((err) => this.deps.log.error({ err: (err as Error).stack }, 'unexpected failure handling an accounting event; left unacknowledged'))
        .finally(() => this.inFlight.delete(task));
      this.inFlight.add(task);
    });
    this.consumerTag = reply.consumerTag;
  }

  private async handle(msg: ConsumeMessage, channel: Channel): Promise<void> {
    const { db, log } = this.deps;
    const decoded = decodeAccountingEvent(msg.content);
    if (!decoded.ok) {
      const messageId = typeof msg.properties.messageId === 'string' ? msg.properties.messageId : null;
      const stored = await this.retryDb('record invalid event', () => recordInvalidEvent(db, { messageId, routingKey: msg.fields.routingKey, detail: decoded.detail, body: msg.content }));
      if (!stored) return;
      this.metrics.invalid++;
      log.warn({ messageId, detail: decoded.detail }, 'not an accounting event; recorded in accounting_invalid_events');
      return this.ack(msg, channel);
    }
    const event = decoded.event;
    const stored = await this.retryDb('record statement', () => recordStatement(db, event, this.webhookUrlRedacted));
    if (!stored) return;
    if (stored.value.inserted) {
      this.metrics.statements++;
      this.deps.onStatement(event);
    } else {
      this.metrics.duplicates++;
      log.debug({ eventId: event.eventId }, 'repeated event; statement already has it');
    }
    const webhook = this.options.webhook;
    if (webhook && stored.value.webhookStatus === 'pending') {
      const wlog = log.child({ eventId: event.eventId });
      const result = await deliverWebhook(this.deps.transport!, { url: webhook.url, eventId: event.eventId, body: encodeAccountingEvent(event) }, webhook.secret, webhook.policy, this.stopRetrying.signal, {
        attemptSignal: this.hardStop.signal,
        onRetry: ({ attempt, delayMs, result: r }) =>
          wlog.info({ attempt, retryInMs: delayMs, ...(r.kind === 'response' ? { status: r.status } : r.kind === 'error' ? { code: r.code } : {}) }, 'webhook not accepted; retrying'),
      });
      // Shutting down mid-delivery: no outcome to record; the event comes back after a restart.
      if (result.status === 'aborted') return;
      if (!(await this.retryDb('record webhook outcome', () => recordWebhookOutcome(db, event.eventId, result)))) return;
      if (result.status === 'delivered') this.metrics.webhooksDelivered++;
      else {
        this.metrics.webhooksFailed++;
        wlog.warn({ attempts: result.attempts, status: result.responseStatus, err: result.lastError, gaveUp: result.gaveUp }, 'webhook delivery failed; recorded');
      }
    }
    this.ack(msg, channel);
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

  private ack(msg: ConsumeMessage, channel: Channel): void {
    // A delivery of a channel that is gone cannot be acked; RabbitMQ redelivers it instead.
    if (channel !== this.channel) return;
    try {
      channel.ack(msg);
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'ack failed; event will be redelivered');
    }
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
    this.closing = true;
    await runShutdownSteps(
      [
        ['cancel consumer', async () => { if (this.channel && this.consumerTag) await this.channel.cancel(this.consumerTag); }],
        ['stop retrying', async () => this.stopRetrying.abort()],
        ['finish in-flight', () => Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, this.options.shutdownDeadlineMs).unref())])],
        ['cut what is left', async () => {
          this.hardStop.abort();
          // Aborted attempts return at once; only a hung database call could still hold a task, so bound it too.
          await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, 2_000).unref())]);
        }],
        ['close connection', async () => { await this.connection?.close(); }],
      ],
      this.deps.log,
      'accounting',
    );
    this.deps.log.info({ ...this.metrics }, 'accounting stopped');
  }
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
