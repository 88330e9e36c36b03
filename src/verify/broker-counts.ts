import type { ChannelModel } from 'amqplib';
import { browseQueue } from '../amqp/browse.js';
import type { Topology } from '../amqp/topology.js';

/** What verify asks the broker: messages still on their way, and the ids parked in the dead queue. */

export interface BrokerDeps {
  readonly connection: ChannelModel | null;
  readonly topology: Topology;
}

/** Messages still to be processed: ready in the process (or partition) queues and waiting in the delay queues. */
export async function queuedCount(deps: BrokerDeps): Promise<number> {
  if (!deps.connection) return 0;
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {});
  try {
    let total = 0;
    for (const name of [
      deps.topology.processQueue,
      ...(deps.topology.ordered?.partitionQueues ?? []),
      ...deps.topology.retryQueues.map((q) => q.name),
    ]) {
      total += (await channel.checkQueue(name)).messageCount;
    }
    return total;
  } finally {
    await channel.close().catch(() => {});
  }
}

/**
 * Ids in the parking queue, read without removing anything: messages are fetched unacknowledged
 * and the channel is then closed, which hands them all back to the queue.
 */
export async function peekDeadIds(deps: BrokerDeps, limit: number): Promise<Set<string>> {
  const ids = new Set<string>();
  if (!deps.connection) return ids;
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {});
  try {
    for await (const msg of browseQueue(channel, deps.topology.deadQueue, limit)) {
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
