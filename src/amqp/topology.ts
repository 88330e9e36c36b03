import type { Channel, Options } from 'amqplib';

/**
 * The RabbitMQ topology as data: one place names every exchange and queue, and `assertTopology`
 * declares them all on every (re)connect. The names are a public contract (see README).
 */
export interface Topology {
  readonly namespace: string;
  /** Topic exchange gen publishes to, routing key `tx.<type>`. */
  readonly transactionsExchange: string;
  /** Quorum queue the workers consume. */
  readonly processQueue: string;
  /** Business rejects, with the reason in headers and body. */
  readonly errorsQueue: string;
  /** Messages that kept failing with system errors (and the crash-loop guard's dead letters). */
  readonly deadQueue: string;
  /** Delay queues, one per retry step: per-message TTL only expires at the head, so each delay needs its own queue. */
  readonly retryQueues: readonly { readonly name: string; readonly delayMs: number }[];
  /** Topic exchange of accounting events (outbox relay → accounting). */
  readonly accountingExchange: string;
  /** Queue of the user-facing accounting system. */
  readonly accountingQueue: string;
  /** Fanout exchange of worker stats snapshots (transient). */
  readonly statsExchange: string;
  /**
   * Topic exchange of the workers' attempt events (`retrying`, `parked`; routing key
   * `<state>.<accountId>`), transient: the live feed of `txsim serve` binds it. Kept apart from the
   * accounting exchange so the accounting consumer, which binds `#` there, never sees them.
   */
  readonly feedExchange: string;
}

/** Declaration of the feed exchange: every declarer (workers, serve) must use the same options. */
export const FEED_EXCHANGE_OPTIONS: Options.AssertExchange = { durable: false };

/**
 * Deliveries of one message to the process queue before RabbitMQ dead-letters it to the parking
 * queue. Far above the worker's own attempt limit: it only fires when a message crashes workers.
 */
export const PROCESS_QUEUE_DELIVERY_LIMIT = 20;

/** The topology of a config: its namespace and retry steps (retry delays clear a deadlock in ms, a failover in s). */
export function topologyOf(config: { namespace: string; retryDelaysMs: readonly number[] }): Topology {
  return topologyFor(config.namespace, config.retryDelaysMs);
}

export function topologyFor(namespace: string, retryDelaysMs: readonly number[]): Topology {
  return {
    namespace,
    transactionsExchange: `${namespace}.transactions`,
    processQueue: `${namespace}.transactions.process`,
    errorsQueue: `${namespace}.errors`,
    deadQueue: `${namespace}.dead`,
    retryQueues: [...new Set(retryDelaysMs)].map((delayMs) => ({ name: `${namespace}.retry.${delayMs}ms`, delayMs })),
    accountingExchange: `${namespace}.accounting`,
    accountingQueue: `${namespace}.accounting.statements`,
    statsExchange: `${namespace}.stats`,
    feedExchange: `${namespace}.feed`,
  };
}

/** Queue arguments of each queue, so re-declaring with the same topology never conflicts. */
export function queueDeclarations(t: Topology): { name: string; options: Options.AssertQueue }[] {
  const quorum = { durable: true, arguments: { 'x-queue-type': 'quorum' } };
  return [
    {
      name: t.processQueue,
      options: {
        durable: true,
        arguments: {
          'x-queue-type': 'quorum',
          'x-delivery-limit': PROCESS_QUEUE_DELIVERY_LIMIT,
          'x-dead-letter-exchange': '',
          'x-dead-letter-routing-key': t.deadQueue,
        },
      },
    },
    { name: t.errorsQueue, options: quorum },
    { name: t.deadQueue, options: quorum },
    ...t.retryQueues.map((q) => ({
      name: q.name,
      options: {
        durable: true,
        arguments: {
          'x-queue-type': 'quorum',
          'x-message-ttl': q.delayMs,
          // Expired messages go straight back to the process queue via the default exchange.
          'x-dead-letter-exchange': '',
          'x-dead-letter-routing-key': t.processQueue,
          // at-least-once dead-lettering keeps a delayed message until the process queue has it.
          'x-dead-letter-strategy': 'at-least-once',
          'x-overflow': 'reject-publish',
        },
      },
    })),
    { name: t.accountingQueue, options: quorum },
  ];
}

/** Declares every exchange, queue and binding. Idempotent; run on every connect. */
export async function assertTopology(channel: Channel, t: Topology): Promise<void> {
  await channel.assertExchange(t.transactionsExchange, 'topic', { durable: true });
  await channel.assertExchange(t.accountingExchange, 'topic', { durable: true });
  await channel.assertExchange(t.statsExchange, 'fanout', { durable: false });
  await channel.assertExchange(t.feedExchange, 'topic', FEED_EXCHANGE_OPTIONS);
  for (const q of queueDeclarations(t)) await channel.assertQueue(q.name, q.options);
  await channel.bindQueue(t.processQueue, t.transactionsExchange, 'tx.*');
  await channel.bindQueue(t.accountingQueue, t.accountingExchange, '#');
}

/** Deletes everything `assertTopology` declares (tests and `bench` reset their namespace with it). */
export async function deleteTopology(channel: Channel, t: Topology): Promise<void> {
  for (const q of queueDeclarations(t)) await channel.deleteQueue(q.name);
  for (const ex of topologyNames(t).exchanges) await channel.deleteExchange(ex);
}

/** Every exchange and queue name of a topology (what `assertTopology` declares), for `txsim reset`. */
export function topologyNames(t: Topology): { exchanges: string[]; queues: string[] } {
  return {
    exchanges: [t.transactionsExchange, t.accountingExchange, t.statsExchange, t.feedExchange],
    queues: queueDeclarations(t).map((q) => q.name),
  };
}

/** Headers txsim sets on messages it moves between queues. */
export const HEADERS = {
  attempts: 'x-txsim-attempts',
  reason: 'x-txsim-reason',
  detail: 'x-txsim-detail',
  workerId: 'x-txsim-worker',
  lastError: 'x-txsim-last-error',
  failedAt: 'x-txsim-failed-at',
  runId: 'x-txsim-run',
  originalRoutingKey: 'x-txsim-routing-key',
  /** When gen (or serve) handed the message to the broker, ms since the epoch: the start of the queue-wait hop. */
  publishedAtMs: 'x-txsim-published-at',
  /** When the outbox relay published an accounting event, ms since the epoch: the start of the statement hop. */
  relayedAtMs: 'x-txsim-relayed-at',
} as const;
