import { randomBytes } from 'node:crypto';
import amqp, { type ChannelModel } from 'amqplib';
import { deleteTopology, topologyFor, type Topology } from '../../src/amqp/topology.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { createDatabase, type Knex } from '../../src/db/knex.js';
import { dropDatabase, ensureSchema } from '../../src/db/schema.js';
import { seedAccounts } from '../../src/db/accounts.js';
import { splitUrlList } from '../../src/config/url-list.js';
import { ensureSystemAccounts } from '../../src/db/accounts.js';

/** Short retry delays so retry/park tests finish in seconds. */
export const TEST_RETRY_DELAYS = '100,300';

/**
 * A private namespace for one test file: its own exchanges, queues and database, so tests never see
 * each other's messages or rows. `cleanup()` deletes all of it.
 */
export interface TestNamespace {
  readonly name: string;
  readonly config: Config;
  readonly topology: Topology;
  readonly db: Knex;
  readonly amqp: ChannelModel;
  /** Environment for child `txsim` processes: points them at this namespace. */
  readonly env: NodeJS.ProcessEnv;
  seed(count: number, options?: { firstId?: number; openingBalanceMinor?: bigint; currency?: string }): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * `envOverrides` point the namespace elsewhere than the default services, e.g. `AMQP_URL` listing the
 * nodes of the test cluster (the shared connection then goes to the first node that answers).
 */
export async function createTestNamespace(prefix = 't', envOverrides: NodeJS.ProcessEnv = {}): Promise<TestNamespace> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const env = {
    ...process.env,
    ...envOverrides,
    TXSIM_NAMESPACE: name,
    TXSIM_RETRY_DELAYS: TEST_RETRY_DELAYS,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
  };
  const config = loadConfig(env, {});
  await ensureSchema(config.databaseUrl, config.databaseName);
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 4 });
  await ensureSystemAccounts(db, 'EUR');
  const connection = await connectFirst(config.amqpUrl);
  const topology = topologyFor(name, config.retryDelaysMs);
  return {
    name,
    config,
    topology,
    db,
    amqp: connection,
    env,
    async seed(count, options = {}) {
      await seedAccounts(db, {
        count,
        firstId: options.firstId ?? 1,
        openingBalanceMinor: options.openingBalanceMinor ?? 100_000n,
        currency: options.currency ?? 'EUR',
      });
    },
    async cleanup() {
      try {
        // The shared connection may be gone (a fault scenario restarted the broker): use a fresh one.
        const cleaner = await connectFirst(config.amqpUrl);
        try {
          const channel = await cleaner.createChannel();
          channel.on('error', () => {});
          await deleteTopology(channel, topology).catch(() => {});
          await channel.close().catch(() => {});
        } finally {
          await cleaner.close().catch(() => {});
        }
      } finally {
        await connection.close().catch(() => {});
        await db.destroy().catch(() => {});
        await dropDatabase(config.databaseUrl, config.databaseName).catch(() => {});
      }
    },
  };
}

/** A connection to the first node of an AMQP_URL list that answers (a list of one: that node). */
async function connectFirst(urlList: string): Promise<ChannelModel> {
  let lastError: unknown = null;
  for (const url of splitUrlList(urlList)) {
    try {
      const connection = await amqp.connect(url);
      connection.on('error', () => {});
      return connection;
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}
