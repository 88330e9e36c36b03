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
  /**
   * Ordered mode (`setup --partitions N`): the consistent-hash exchange fed from the transactions
   * exchange, and its N partition queues (single active consumer). Null in the default, unordered
   * topology, where the process queue is bound instead.
   */
  readonly ordered: OrderedTopology | null;
}

/** The ordered part of a topology: see README "Per-account ordering". */
export interface OrderedTopology {
  /** `x-consistent-hash` exchange, bound from the transactions exchange on `tx.*`, hashing HEADERS.accountId. */
  readonly exchange: string;
  /** `<ns>.process.p<k>`, k = 0..N-1. */
  readonly partitionQueues: readonly string[];
}

/** Partitions `setup --partitions` accepts. */
export const PARTITIONS_MAX = 64;

/**
 * Points each partition queue gets on the hash ring (its binding key). One point per queue splits
 * the accounts very unevenly between few queues; 20 evens them out at no cost.
 */
const RING_POINTS_PER_PARTITION = '20';

/** Declaration of the feed exchange: every declarer (workers, serve) must use the same options. */
export const FEED_EXCHANGE_OPTIONS: Options.AssertExchange = { durable: false };

/**
 * Returns of one message to the process queue (unacknowledged: its worker crashed or lost its
 * channel) before RabbitMQ dead-letters it to the parking queue. Far above the worker's own attempt
 * limit: it only fires when a message crashes workers. A worker that gets a message on its last
 * delivery parks it itself, with a record (see `atDeliveryLimit` in the worker).
 */
export const PROCESS_QUEUE_DELIVERY_LIMIT = 20;

/** The topology of a config: its namespace and retry steps (retry delays clear a deadlock in ms, a failover in s). */
export function topologyOf(config: { namespace: string; retryDelaysMs: readonly number[] }, partitions = 0): Topology {
  return topologyFor(config.namespace, config.retryDelaysMs, partitions);
}

/** `partitions` > 0 is the ordered topology of `setup --partitions`; 0 is the default one. */
export function topologyFor(namespace: string, retryDelaysMs: readonly number[], partitions = 0): Topology {
  if (!Number.isSafeInteger(partitions) || partitions < 0 || partitions > PARTITIONS_MAX)
    throw new RangeError(`partitions must be 0..${PARTITIONS_MAX}, got ${partitions}`);
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
    ordered:
      partitions === 0
        ? null
        : {
            exchange: `${namespace}.transactions.ordered`,
            partitionQueues: Array.from({ length: partitions }, (_, k) => `${namespace}.process.p${k}`),
          },
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
    ...(t.ordered?.partitionQueues ?? []).map((name) => ({
      name,
      options: {
        durable: true,
        arguments: {
          'x-queue-type': 'quorum',
          // Two workers never process one partition at once, even during a lease handover.
          'x-single-active-consumer': true,
          'x-delivery-limit': PROCESS_QUEUE_DELIVERY_LIMIT,
          'x-dead-letter-exchange': '',
          'x-dead-letter-routing-key': t.deadQueue,
        },
      },
    })),
  ];
}

/**
 * Declares every exchange, queue and binding. Idempotent; run on every connect. `processRouting:
 * false` leaves the routing of transactions to the process or partition queues alone: clients that
 * never publish or consume transactions (accounting, serve) do not know whether the namespace is
 * ordered, and binding the process queue in an ordered one would give it a copy of every message.
 */
export async function assertTopology(channel: Channel, t: Topology, options: { processRouting?: boolean } = {}): Promise<void> {
  await channel.assertExchange(t.transactionsExchange, 'topic', { durable: true });
  await channel.assertExchange(t.accountingExchange, 'topic', { durable: true });
  await channel.assertExchange(t.statsExchange, 'fanout', { durable: false });
  await channel.assertExchange(t.feedExchange, 'topic', FEED_EXCHANGE_OPTIONS);
  for (const q of queueDeclarations(t)) await channel.assertQueue(q.name, q.options);
  if (options.processRouting === false) {
    // See above.
  } else if (t.ordered) {
    await channel.assertExchange(t.ordered.exchange, 'x-consistent-hash', {
      durable: true,
      arguments: { 'hash-header': HEADERS.accountId },
    });
    await channel.bindExchange(t.ordered.exchange, t.transactionsExchange, 'tx.*');
    for (const q of t.ordered.partitionQueues) await channel.bindQueue(q, t.ordered.exchange, RING_POINTS_PER_PARTITION);
    // A namespace switched to ordered mode: the process queue would get a copy of every message.
    await channel.unbindQueue(t.processQueue, t.transactionsExchange, 'tx.*');
  } else {
    await channel.bindQueue(t.processQueue, t.transactionsExchange, 'tx.*');
  }
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
    exchanges: [t.transactionsExchange, t.accountingExchange, t.statsExchange, t.feedExchange, ...(t.ordered ? [t.ordered.exchange] : [])],
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
  /**
   * The account a message is ordered by (its `accountId`: the debit account of a transfer), as a
   * string; the consistent-hash exchange of the ordered topology hashes it. Set by gen and serve on
   * every message; a body without an account id carries its message id instead.
   */
  accountId: 'x-txsim-account',
  /** gen's per-account sequence number (1, 2, … per debit account, per run and gen instance). */
  accountSeq: 'x-txsim-account-seq',
  /** The gen instance (`--instance k/n`: k; 1 for a whole run) whose sequence `accountSeq` counts. */
  accountSeqStream: 'x-txsim-seq-stream',
} as const;
