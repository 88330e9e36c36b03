import type { ChannelModel } from 'amqplib';
import { peekQueue } from '../amqp/queue-walk.js';
import type { Topology } from '../amqp/topology.js';

/** What verify asks the broker: messages still on their way, and the ids parked in the dead queue. */

export interface BrokerDeps {
  readonly connection: ChannelModel | null;
  readonly topology: Topology;
}

/** What the queues of transactions hold, and which of the queues the workers consume have no worker. */
export interface QueueCounts {
  /** Messages still to be processed: ready in the process (or partition) queues and waiting in the delay queues. */
  readonly queued: number;
  /**
   * Queues the workers consume (the process queue; in an ordered namespace, the partition queues)
   * with no consumer while something waits for them: the process queue when anything is queued at
   * all (the delay queues empty into it), a partition queue when it holds messages. Waiting for
   * those changes nothing until a worker starts.
   */
  readonly unconsumed: string[];
}

/** Reads every transactions queue once (a passive declare each): nothing is taken off any of them. */
export async function queueCounts(deps: BrokerDeps): Promise<QueueCounts> {
  if (!deps.connection) return { queued: 0, unconsumed: [] };
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {});
  try {
    const { topology } = deps;
    const consumed = topology.ordered?.partitionQueues ?? [topology.processQueue];
    const states = new Map<string, { messageCount: number; consumerCount: number }>();
    for (const name of [topology.processQueue, ...(topology.ordered?.partitionQueues ?? []), ...topology.retryQueues.map((q) => q.name)]) {
      states.set(name, await channel.checkQueue(name));
    }
    const queued = [...states.values()].reduce((total, q) => total + q.messageCount, 0);
    const unconsumed = consumed.filter((name) => {
      const q = states.get(name)!;
      return q.consumerCount === 0 && (topology.ordered ? q.messageCount > 0 : queued > 0);
    });
    return { queued, unconsumed };
  } finally {
    await channel.close().catch(() => {});
  }
}

/**
 * Ids in the parking queue, read without removing anything, changing their order or counting a delivery
 * of any (amqp/queue-walk.ts: holding them and closing the channel, as verify did, shuffled the queue;
 * handing them back counted towards RabbitMQ 4's default delivery limit, past which they are dropped).
 * A read cut part-way throws WalkInterruptedError (exit 3).
 */
export async function peekDeadIds(deps: BrokerDeps, limit: number): Promise<Set<string>> {
  const ids = new Set<string>();
  if (!deps.connection) return ids;
  // A confirm channel of its own: the walk copies each message back to the tail once confirmed.
  const channel = await deps.connection.createConfirmChannel();
  channel.on('error', () => {});
  try {
    for (const msg of await peekQueue(channel, deps.topology.deadQueue, limit)) {
      if (msg.properties.messageId) ids.add(String(msg.properties.messageId).toLowerCase());
    }
  } finally {
    await channel.close().catch(() => {});
  }
  return ids;
}

/** Ready messages and consumers of the accounting queue; null without a broker or without the queue. */
export async function accountingQueueState(deps: BrokerDeps): Promise<{ ready: number; consumers: number } | null> {
  if (!deps.connection) return null;
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {});
  try {
    const q = await channel.checkQueue(deps.topology.accountingQueue);
    return { ready: q.messageCount, consumers: q.consumerCount };
  } catch {
    return null;
  } finally {
    await channel.close().catch(() => {});
  }
}
