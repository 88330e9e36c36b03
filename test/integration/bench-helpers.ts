import amqp from 'amqplib';
import { deleteTopology, topologyOf } from '../../src/amqp/topology.js';
import { ceilingQueueOf } from '../../src/bench/ceiling.js';
import { benchConfig } from '../../src/commands/bench.js';
import { dropDatabase } from '../../src/db/schema.js';
import type { TestNamespace } from '../helpers/namespace.js';

/**
 * Removes what `txsim bench` made beside a test namespace — its own namespace `<namespace>_bench`
 * (exchanges, queues, the ceiling's queue, the database) — and then the test namespace itself.
 */
export async function removeBenchNamespace(ns: TestNamespace): Promise<void> {
  const config = benchConfig(ns.config);
  const connection = await amqp.connect(config.amqpUrl);
  try {
    const channel = await connection.createChannel();
    await deleteTopology(channel, topologyOf(config)).catch(() => {});
    await channel.deleteQueue(ceilingQueueOf(config.namespace)).catch(() => {});
  } finally {
    await connection.close().catch(() => {});
  }
  await dropDatabase(config.databaseUrl, config.databaseName).catch(() => {});
  await ns.cleanup();
}
