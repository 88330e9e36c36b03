import { ManagedConnection } from '../amqp/managed-channel.js';
import type { ConsumeMessage } from 'amqplib';
import { FEED_EXCHANGE_OPTIONS, type Topology } from '../amqp/topology.js';
import { decodeAccountingMessage } from '../domain/accounting-event.js';
import { decodeAttemptEvent } from '../domain/attempt-event.js';
import { decodeStageEvent, isStageRoutingKey } from '../domain/stage-event.js';
import type { Logger } from '../log.js';
import { feedEventOf, feedEventOfAttempt, feedEventOfStage, type FeedEvent } from './feed-hub.js';

export interface FeedSourceOptions {
  readonly amqpUrl: string;
  readonly topology: Topology;
  readonly clientName: string;
  /** Events kept in the server's queue while it is slow; older ones are dropped first. */
  readonly queueLengthMax: number;
}

/**
 * The events a server pushes to its WebSocket clients. Each server binds its own exclusive,
 * auto-delete, server-named queue to `<ns>.accounting` (`#`) and to `<ns>.feed` (`#`), so any number
 * of servers run side by side and each sees every committed outcome and every failed attempt.
 * Outcomes come only from the outbox relay, which publishes only what committed, so nothing that
 * rolled back is ever pushed; `retrying` and `parked` come from the workers, published after the
 * message was moved; `stage` events come from workers run with `--emit-stage-events`. The feed is live, not durable: no acks, a bounded queue; after a reconnect
 * `onReconnect` lets the server re-read what its clients wait for.
 */
export class FeedSource {
  private readonly connection: ManagedConnection;
  private opens = 0;

  constructor(
    private readonly options: FeedSourceOptions,
    private readonly log: Logger,
    private readonly handlers: { onEvent: (event: FeedEvent) => void; onReconnect: () => void },
  ) {
    const { topology } = options;
    this.connection = new ManagedConnection({
      url: options.amqpUrl,
      clientName: options.clientName,
      log,
      setup: async (channel) => {
        await channel.assertExchange(topology.accountingExchange, 'topic', { durable: true });
        await channel.assertExchange(topology.feedExchange, 'topic', FEED_EXCHANGE_OPTIONS);
      },
    });
    const channel = this.connection.channel({
      name: 'feed channel',
      onOpen: () => {
        if (this.opens++ > 0) this.handlers.onReconnect();
      },
    });
    channel.consume(
      async (ch) => {
        const q = await ch.assertQueue('', {
          exclusive: true,
          autoDelete: true,
          durable: false,
          arguments: { 'x-max-length': options.queueLengthMax, 'x-overflow': 'drop-head' },
        });
        await ch.bindQueue(q.queue, topology.accountingExchange, '#');
        await ch.bindQueue(q.queue, topology.feedExchange, '#');
        return q.queue;
      },
      (delivery) => {
        for (const event of this.decode(delivery.msg)) this.handlers.onEvent(event);
      },
      { noAck: true, label: 'feed consumer' },
    );
  }

  /** The feed events of a message from either exchange (an accounting message may carry several); what is not a valid event is logged and left out. */
  private decode(msg: ConsumeMessage): FeedEvent[] {
    if (msg.fields.exchange === this.options.topology.feedExchange && isStageRoutingKey(msg.fields.routingKey)) {
      const decoded = decodeStageEvent(msg.content);
      if (decoded.ok) return [feedEventOfStage(decoded.event)];
      this.log.warn({ detail: decoded.detail }, 'feed: not a stage event; ignored');
      return [];
    }
    if (msg.fields.exchange === this.options.topology.feedExchange) {
      const decoded = decodeAttemptEvent(msg.content);
      if (decoded.ok) return [feedEventOfAttempt(decoded.event)];
      this.log.warn({ detail: decoded.detail }, 'feed: not an attempt event; ignored');
      return [];
    }
    const decoded = decodeAccountingMessage(msg.content);
    if (!decoded.ok) {
      this.log.warn({ detail: decoded.detail }, 'feed: not an accounting event; ignored');
      return [];
    }
    const events: FeedEvent[] = [];
    for (const element of decoded.elements) {
      if (element.ok) events.push(feedEventOf(element.event));
      else this.log.warn({ detail: element.detail }, 'feed: not an accounting event; ignored');
    }
    return events;
  }

  /** Connects (retrying a few times, then throwing ServiceUnavailableError). */
  async start(): Promise<void> {
    await this.connection.start();
  }

  async close(): Promise<void> {
    await this.connection.close();
  }
}
