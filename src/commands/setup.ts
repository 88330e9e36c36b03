import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { assertTopology, queueDeclarations, topologyOf } from '../amqp/topology.js';
import { describeEndpoints } from '../config/config.js';
import { parseCurrencyFlag } from '../config/parse.js';
import { ensureSystemAccounts } from '../db/accounts.js';
import { createDatabase } from '../db/knex.js';
import { ensureSchema } from '../db/schema.js';
import { contextFor, type CommandContext } from './context.js';

export interface SetupOptions {
  readonly currency: string;
}

/** Creates the database and tables, the system accounts, and declares the RabbitMQ topology. Idempotent. */
export async function handleSetup(ctx: CommandContext, options: SetupOptions): Promise<void> {
  const { config, log } = ctx;
  const endpoints = describeEndpoints(config);
  await ensureSchema(config.databaseUrl, config.databaseName);
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 1 });
  try {
    await ensureSystemAccounts(db, options.currency);
  } finally {
    await db.destroy();
  }
  log.debug({ database: endpoints.database }, 'schema applied');
  const connection = await connectOnce(config.amqpUrl, log, 'txsim setup');
  const topology = topologyOf(config);
  try {
    const channel = await connection.createChannel();
    await assertTopology(channel, topology);
    await channel.close();
  } finally {
    await connection.close().catch(() => {});
  }
  ctx.out(`database ${endpoints.database}: schema ready, system accounts for ${options.currency}`);
  ctx.out(`rabbitmq ${endpoints.amqp}: exchanges ${topology.transactionsExchange}, ${topology.accountingExchange}, ${topology.statsExchange}`);
  ctx.out(`  queues ${queueDeclarations(topology).map((q) => q.name).join(', ')}`);
}

export function registerSetup(program: Command): void {
  program
    .command('setup')
    .description('create the database, tables and system accounts, and declare the RabbitMQ topology (idempotent)')
    .option('--currency <code>', 'currency of the system accounts to create', 'EUR')
    .addHelpText('after', '\nExample:\n  $ txsim setup\n  $ txsim setup --namespace demo2 --retry-delays 100,1000')
    .action(async (opts: { currency: string }, command: Command) => {
      await handleSetup(contextFor(command), { currency: parseCurrencyFlag('--currency', opts.currency, 'EUR') });
    });
}
