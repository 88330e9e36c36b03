import { ManagedConnection } from '../amqp/managed-channel.js';
import type { Topology } from '../amqp/topology.js';
import { decodeAccountingEvent, type AccountingEvent } from '../domain/accounting-event.js';
import type { Logger } from '../log.js';

export interface FeedSourceOptions {
  readonly amqpUrl: string;
  readonly topology: Topology;
  readonly clientName: string;
  /** Events kept in the server's queue while it is slow; older ones are dropped first. */
  readonly queueLengthMax: number;
}

/**
 * The accounting events a server pushes to its WebSocket clients. Each server binds its own
 * exclusive, auto-delete, server-named queue to `<ns>.accounting` (`#`), so any number of servers
 * run side by side and each sees every committed outcome — the outbox relay publishes only what
 * committed, so nothing that rolled back is ever pushed. The feed is live, not durable: no acks,
 * a bounded queue; after a reconnect `onReconnect` lets the server re-read what its clients wait for.
 */
export class FeedSource {
  private readonly connection: ManagedConnection;
  private opens = 0;

  constructor(
    private readonly options: FeedSourceOptions,
    private readonly log: Logger,
    private readonly handlers: { onEvent: (event: AccountingEvent) => void; onReconnect: () => void },
  ) {
    const { topology } = options;
    this.connection = new ManagedConnection({
      url: options.amqpUrl,
      clientName: options.clientName,
      log,
      setup: async (channel) => {
        await channel.assertExchange(topology.accountingExchange, 'topic', { durable: true });
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
        return q.queue;
      },
      (delivery) => {
        const decoded = decodeAccountingEvent(delivery.msg.content);
        if (decoded.ok) this.handlers.onEvent(decoded.event);
        else this.log.warn({ detail: decoded.detail }, 'feed: not an accounting event; ignored');
      },
      { noAck: true, label: 'feed consumer' },
    );
  }

  /** Connects (retrying a few times, then throwing ServiceUnavailableError). */
  async start(): Promise<void> {
    await this.connection.start();
  }

  async close(): Promise<void> {
    await this.connection.close();
  }
}
