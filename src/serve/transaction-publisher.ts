import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { connectOnce } from '../amqp/connect.js';
import { ConfirmPublisher, type PublishOutcome } from '../amqp/publisher.js';
import { assertTopology, HEADERS, type Topology } from '../amqp/topology.js';
import { routingKeyFor, type TransactionMessage } from '../domain/transaction.js';
import type { Logger } from '../log.js';

export interface TransactionPublisherOptions {
  readonly amqpUrl: string;
  readonly topology: Topology;
  readonly clientName: string;
  /** Most unconfirmed messages at once over all requests; beyond it requests wait their turn. */
  readonly windowMax: number;
  readonly confirmTimeoutMs: number;
}

/** Why a publish did not end confirmed: the broker is unreachable or blocked, or the message was unroutable. */
export class BrokerUnavailableError extends Error {
  constructor(
    message: string,
    readonly reason: 'unreachable' | 'blocked' | 'unroutable' | 'not_confirmed',
  ) {
    super(message);
    this.name = 'BrokerUnavailableError';
  }
}

interface Session {
  readonly connection: ChannelModel;
  readonly channel: ConfirmChannel;
  readonly publisher: ConfirmPublisher;
  blocked: boolean;
  closed: boolean;
}

/**
 * The server's producer: one connection and confirm channel shared by all requests, opened on first
 * use and again after it is lost (a producer fails fast: a request during an outage gets a 503, it
 * does not wait for the broker). Messages go out exactly as `txsim gen` sends them — persistent,
 * mandatory, `message_id` = id, `content_type` application/json, a timestamp, `x-txsim-run` when the
 * caller names a run — and `publish` resolves only once the broker confirmed.
 */
export class TransactionPublisher {
  /** The options' topology, or the namespace's real one once serve has read it (useTopology). */
  private topology: Topology;
  private session: Session | null = null;
  private opening: Promise<Session> | null = null;
  private closing = false;

  constructor(
    private readonly options: TransactionPublisherOptions,
    private readonly log: Logger,
  ) {
    this.topology = options.topology;
  }

  /**
   * The topology to declare from now on: serve reads whether the namespace is ordered from the
   * database after it started (binding the process queue of an ordered one would copy every message).
   */
  useTopology(topology: Topology): void {
    this.topology = topology;
  }

  /** Whether the broker is reachable and not blocking publishers (for /readyz). */
  async ready(): Promise<{ ok: boolean; detail: string; error?: unknown }> {
    try {
      const session = await this.open();
      return session.blocked
        ? { ok: false, detail: 'connection blocked by the broker (resource alarm)' }
        : { ok: true, detail: 'connected' };
    } catch (err) {
      return { ok: false, detail: (err as Error).message, error: err };
    }
  }

  async publish(message: TransactionMessage, runId: string | null): Promise<void> {
    let session: Session;
    try {
      session = await this.open();
    } catch (err) {
      throw new BrokerUnavailableError(`RabbitMQ unreachable: ${(err as Error).message}`, 'unreachable');
    }
    // A blocked connection accepts the publish and holds it until the alarm clears: answer now
    // instead, so nothing is half-sent while the client waits.
    if (session.blocked) throw new BrokerUnavailableError('RabbitMQ is blocking publishers (memory or disk alarm)', 'blocked');
    let outcome: PublishOutcome;
    try {
      outcome = await session.publisher.publishConfirmed(
        this.topology.transactionsExchange,
        routingKeyFor(message.type),
        Buffer.from(JSON.stringify(message)),
        {
          messageId: message.id,
          contentType: 'application/json',
          timestamp: Math.floor(Date.now() / 1000),
          // The account header routes it to its partition in an ordered namespace (no sequence number: see README).
          headers: {
            ...(runId ? { [HEADERS.runId]: runId } : {}),
            [HEADERS.publishedAtMs]: Date.now(),
            [HEADERS.accountId]: String(message.accountId),
          },
        },
      );
    } catch (err) {
      throw new BrokerUnavailableError(`not confirmed: ${(err as Error).message}`, 'not_confirmed');
    }
    if (outcome === 'returned')
      throw new BrokerUnavailableError(
        `unroutable: no queue is bound to ${this.topology.transactionsExchange} for ${routingKeyFor(message.type)} (run txsim setup)`,
        'unroutable',
      );
  }

  private async open(): Promise<Session> {
    if (this.closing) throw new Error('publisher closed');
    if (this.session && !this.session.closed) return this.session;
    this.opening ??= this.connect().finally(() => (this.opening = null));
    return this.opening;
  }

  private async connect(): Promise<Session> {
    const connection = await connectOnce(this.options.amqpUrl, this.log, this.options.clientName);
    try {
      const setup = await connection.createChannel();
      setup.on('error', () => {});
      try {
        await assertTopology(setup, this.topology);
        await setup.close();
      } catch (err) {
        // A least-privilege user may not declare: then the exchange must exist already.
        if ((err as { code?: number }).code !== 403) throw err;
        const check = await connection.createChannel();
        await check.checkExchange(this.topology.transactionsExchange);
        await check.close();
      }
      const channel = await connection.createConfirmChannel();
      const publisher = new ConfirmPublisher(channel, {
        windowMax: this.options.windowMax,
        confirmTimeoutMs: this.options.confirmTimeoutMs,
      });
      const session: Session = { connection, channel, publisher, blocked: false, closed: false };
      const lost = () => {
        if (!session.closed) this.log.warn('amqp publisher connection lost; the next request reconnects');
        session.closed = true;
      };
      channel.on('error', () => {}); // surfaced through the publisher's failed confirms
      channel.on('close', lost);
      connection.on('close', lost);
      connection.on('blocked', () => (session.blocked = true));
      connection.on('unblocked', () => (session.blocked = false));
      this.session = session;
      return session;
    } catch (err) {
      await connection.close().catch(() => {});
      throw err;
    }
  }

  /** Waits for confirms in flight, then closes. Safe to call twice. */
  async close(): Promise<void> {
    this.closing = true;
    const session = this.session ?? (await this.opening?.catch(() => null)) ?? null;
    this.session = null;
    if (!session || session.closed) return;
    await session.publisher.settled().catch(() => {});
    session.closed = true;
    await session.channel.close().catch(() => {});
    await session.connection.close().catch(() => {});
  }
}
