import type { Channel, ConsumeMessage } from 'amqplib';
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

/** The second half: decodes one snapshot message (consumed without ack) for the listener. */
export function snapshotHandler(listener: Omit<StatsListener, 'onCancelled'>, now: () => number = Date.now): (msg: ConsumeMessage) => void {
  return (msg) => {
    const decoded = decodeSnapshot(msg.content);
    if (decoded.ok) listener.onSnapshot(decoded.snapshot, now());
    else listener.onInvalid?.(decoded.error);
  };
}
