import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from '../log.js';
import { decodeSnapshot, type WorkerSnapshot } from '../stats/snapshot.js';

/**
 * The reading end of the stats exchange. Each watcher gets its own exclusive, auto-deleted queue
 * bound to the fanout exchange: it disappears with the watcher, never holds more than a few
 * seconds of snapshots, and never competes with other watchers for messages.
 */

/** Bound on a watcher's queue: a stuck watcher drops the oldest snapshots instead of growing. */
export const WATCH_QUEUE_LENGTH_MAX = 1_000;

/** Snapshots older than this are useless to a watcher (a newer one is behind it). */
export const WATCH_QUEUE_TTL_MS = 5_000;

export interface StatsListener {
  /** A valid snapshot, with the receiver's clock at arrival. */
  readonly onSnapshot: (snapshot: WorkerSnapshot, receivedAtMs: number) => void;
  /** A message on the exchange that is not a valid snapshot. */
  readonly onInvalid?: (error: string) => void;
  /** The broker cancelled the consumer (queue deleted): the caller should resubscribe. */
  readonly onCancelled?: () => void;
}

/**
 * Checks the exchange exists, declares a private server-named queue bound to it, and consumes
 * snapshots without acks (a lost snapshot is fine). Returns the queue name.
 *
 * The exchange is only checked (passive declare), never declared: a watcher is a reader, and the
 * least-privilege `watch` user (scripts/rabbitmq-users.sh) may not configure it. A missing exchange
 * rejects with the broker's 404 (and closes the channel): the namespace was never set up.
 */
export async function subscribeStats(
  channel: Channel,
  exchange: string,
  listener: StatsListener,
  now: () => number = Date.now,
): Promise<string> {
  const queue = await declareStatsQueue(channel, exchange);
  const onSnapshot = snapshotHandler(listener, now);
  await channel.consume(
    queue,
    (msg) => {
      if (msg === null) listener.onCancelled?.();
      else onSnapshot(msg);
    },
    { noAck: true },
  );
  return queue;
}

/**
 * The first half of `subscribeStats`: checks the exchange and declares and binds a new private
 * queue on `channel`. Run again for every subscribe (the queue dies with its channel). Returns its name.
 */
export async function declareStatsQueue(channel: Channel, exchange: string): Promise<string> {
  await channel.checkExchange(exchange);
  const { queue } = await channel.assertQueue('', {
    exclusive: true,
    autoDelete: true,
    durable: false,
    arguments: { 'x-max-length': WATCH_QUEUE_LENGTH_MAX, 'x-message-ttl': WATCH_QUEUE_TTL_MS },
  });
  await channel.bindQueue(queue, exchange, '');
  return queue;
}

/** How often a long-running reader binds its private queue to the stats exchange again. */
export const STATS_REBIND_MS = 2_000;

/** A subscription's private queue, and the channel that declared it (the queue dies with it). */
interface StatsSubscription {
  readonly channel: Channel;
  readonly queue: string;
}

/**
 * The queue source of a long-running stats subscription on a managed channel (`watch`, the
 * dashboard): `queue` declares the private queue on each new channel (`declareStatsQueue`), and every
 * `intervalMs` the current one is bound to the exchange again — a no-op for the broker while the
 * binding exists. Deleting the exchange (`txsim reset` while the reader runs, or bench's reset of its
 * namespace) drops the binding without a word to the consumer: a reader that did not look would
 * listen to nothing from then on, even once the exchange is declared again. Against an exchange
 * declared again the bind restores the flow; against a missing one it fails with a 404, which closes
 * the channel, and the channel's own failure path takes over (the reader's "no <ns>.stats yet", a
 * new subscription every retry delay until the exchange is back). `stop` ends the timer.
 */
export function rebindingStatsQueue(
  stats: { readonly channel: Channel | null },
  exchange: string,
  log: Logger,
  intervalMs: number = STATS_REBIND_MS,
): { queue: (channel: Channel) => Promise<string>; stop: () => void } {
  let subscription: StatsSubscription | null = null;
  let busy = false;
  const timer = setInterval(() => {
    // Only the queue of the channel in use: one of a channel since replaced is gone with it.
    const current = subscription?.channel === stats.channel ? subscription : null;
    if (busy || current === null) return;
    busy = true;
    current.channel
      .bindQueue(current.queue, exchange, '')
      .catch((err: unknown) => {
        // A 404 closes the channel: the managed channel's 'error' and 'close' handlers act on it.
        log.debug({ err: (err as Error).message }, 'stats queue could not be bound again');
      })
      .finally(() => (busy = false));
  }, intervalMs);
  timer.unref();
  return {
    queue: async (channel) => {
      const queue = await declareStatsQueue(channel, exchange);
      subscription = { channel, queue };
      return queue;
    },
    stop: () => clearInterval(timer),
  };
}

/** The second half: decodes one snapshot message (consumed without ack) for the listener. */
export function snapshotHandler(listener: Omit<StatsListener, 'onCancelled'>, now: () => number = Date.now): (msg: ConsumeMessage) => void {
  return (msg) => {
    const decoded = decodeSnapshot(msg.content);
    if (decoded.ok) listener.onSnapshot(decoded.snapshot, now());
    else listener.onInvalid?.(decoded.error);
  };
}
