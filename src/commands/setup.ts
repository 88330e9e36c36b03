import type { ChannelModel } from 'amqplib';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { assertTopology, HEADERS, PARTITIONS_MAX, queueDeclarations, topologyNames, topologyOf, type Topology } from '../amqp/topology.js';
import { describeEndpoints, type Config } from '../config/config.js';
import { parseCurrencyFlag, parseIntFlag } from '../config/parse.js';
import { forgetPartitionCount, readPartitionCount, recordPartitionCount } from '../db/partition-leases.js';
import { ensureSystemAccounts } from '../db/accounts.js';
import { createDatabase } from '../db/knex.js';
import { ensureSchema } from '../db/schema.js';
import { SYSTEM_ACCOUNT_CODES, systemAccountId } from '../domain/ledger.js';
import { describeCause } from '../errors.js';
import { contextFor, type CommandContext } from './context.js';
import { plural, toJson } from './format.js';

export interface SetupOptions {
  readonly currency: string;
  readonly json: boolean;
  /**
   * `--partitions N`: the ordered topology with N partition queues (README "Per-account ordering");
   * 0 switches an ordered namespace back; undefined keeps the namespace's recorded mode (unordered
   * when none was recorded).
   */
  readonly partitions?: number;
}

/** What `setup` made sure exists (its `--json`). */
export interface SetupReport {
  readonly namespace: string;
  readonly database: string;
  readonly currency: string;
  readonly systemAccountIds: readonly number[];
  readonly exchanges: readonly string[];
  readonly queues: readonly string[];
  readonly retryDelaysMs: readonly number[];
  /** Partition queues of the ordered topology; 0 = unordered. */
  readonly partitions: number;
  /** Consumers on the process queue when setup ran: workers running. */
  readonly workersConsuming: number;
  /** Delays of the namespace's retry queues that existed before and are not this setup's; null when they could not be listed. */
  readonly otherRetryDelaysMs: readonly number[] | null;
  readonly warnings: readonly string[];
}

/** Creates the database and tables, the system accounts, and declares the RabbitMQ topology. Idempotent. */
export async function handleSetup(ctx: CommandContext, options: SetupOptions): Promise<SetupReport> {
  const { config, log } = ctx;
  const endpoints = describeEndpoints(config);
  await ensureSchema(config.databaseUrl, config.databaseName);
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 1 });
  let partitions: number;
  let wasPartitions: number;
  try {
    await ensureSystemAccounts(db, options.currency);
    wasPartitions = await readPartitionCount(db, config.namespace);
    partitions = options.partitions ?? wasPartitions;
    if (partitions > 0) await recordPartitionCount(db, config.namespace, partitions);
    else await forgetPartitionCount(db, config.namespace);
  } finally {
    await db.destroy();
  }
  log.debug({ database: endpoints.database, partitions }, 'schema applied');
  const connection = await connectOnce(config.amqpUrl, log, 'txsim setup');
  const topology = topologyOf(config, partitions);
  let running: RunningDelays;
  try {
    // Read before declaring: afterwards this setup's own retry queues exist too.
    running = await runningRetryDelays(connection, topology, config);
    const channel = await connection.createChannel();
    // Back to unordered: the hash exchange (and its binding from the transactions exchange) goes.
    if (partitions === 0 && wasPartitions > 0) await channel.deleteExchange(topologyOf(config, wasPartitions).ordered!.exchange);
    await assertTopology(channel, topology);
    await channel.close();
  } finally {
    await connection.close().catch(() => {});
  }
  const warnings = retryDelayWarnings(running, topology);
  for (const w of warnings) process.stderr.write(`txsim: warning: ${w}\n`);
  const report: SetupReport = {
    namespace: config.namespace,
    database: endpoints.database,
    currency: options.currency,
    systemAccountIds: SYSTEM_ACCOUNT_CODES.map((code) => systemAccountId(code, options.currency)),
    exchanges: topologyNames(topology).exchanges,
    queues: queueDeclarations(topology).map((q) => q.name),
    retryDelaysMs: topology.retryQueues.map((q) => q.delayMs),
    partitions,
    workersConsuming: running.consumers,
    otherRetryDelaysMs: running.otherDelaysMs,
    warnings,
  };
  if (options.json) {
    ctx.out(toJson(report));
    return report;
  }
  ctx.out(`database ${endpoints.database}: schema ready, system accounts for ${options.currency}`);
  ctx.out(`rabbitmq ${endpoints.amqp}: exchanges ${report.exchanges.join(', ')}`);
  ctx.out(`  queues ${report.queues.join(', ')}`);
  if (partitions > 0)
    ctx.out(
      `  ordered: ${plural(partitions, 'partition')} (${topology.ordered!.exchange} hashes ${HEADERS.accountId}); restart running workers, gen and serve`,
    );
  return report;
}

/** Workers on the process queue, and retry delays the namespace already has queues for that this config does not. */
interface RunningDelays {
  readonly consumers: number;
  readonly otherDelaysMs: readonly number[] | null;
  readonly listError: string | null;
}

/**
 * Workers declare their own retry queues (one per delay) and publish retries to them, so retry
 * queues of other delays next to consumers on the process queue mean workers running on other
 * `--retry-delays`: this setup does not change what they do. The names come from the management API
 * (AMQP cannot list queues); without it the delays are unknown (null).
 */
async function runningRetryDelays(connection: ChannelModel, topology: Topology, config: Config): Promise<RunningDelays> {
  const channel = await connection.createChannel();
  channel.on('error', () => {
    // A missing process queue closes the channel with 404: nothing is running there.
  });
  let consumers: number;
  try {
    consumers = (await channel.checkQueue(topology.processQueue)).consumerCount;
  } catch {
    consumers = 0;
  } finally {
    await channel.close().catch(() => {});
  }
  if (consumers === 0) return { consumers, otherDelaysMs: [], listError: null };
  // undici is loaded only by the commands that make HTTP requests: the worker's process never needs it.
  const { ManagementApiClient, vhostOf } = await import('../watch/queue-depths.js');
  const api = new ManagementApiClient(config.rabbitmqApiUrl, vhostOf(config.amqpUrl));
  try {
    const listed = await api.get(`/api/queues/${encodeURIComponent(vhostOf(config.amqpUrl))}`, { columns: 'name' });
    const names = Array.isArray(listed)
      ? listed.map((q) => (q as { name?: unknown }).name).filter((n): n is string => typeof n === 'string')
      : [];
    const mine = new Set(topology.retryQueues.map((q) => q.delayMs));
    const prefix = `${topology.namespace}.retry.`;
    const delays = names
      .filter((n) => n.startsWith(prefix))
      .map((n) => /^(\d+)ms$/.exec(n.slice(prefix.length))?.[1])
      .filter((d): d is string => d !== undefined)
      .map(Number)
      .filter((d) => !mine.has(d))
      .sort((a, b) => a - b);
    return { consumers, otherDelaysMs: delays, listError: null };
  } catch (err) {
    return { consumers, otherDelaysMs: null, listError: describeCause(err) };
  } finally {
    await api.close();
  }
}

/** The warnings of a setup over running workers with other retry delays (none when they agree). */
export function retryDelayWarnings(running: RunningDelays, topology: Topology): string[] {
  if (running.consumers === 0) return [];
  const workers = plural(running.consumers, 'consumer');
  const mine = topology.retryQueues.map((q) => q.delayMs).join(',');
  if (running.otherDelaysMs === null)
    return [
      `${workers} on ${topology.processQueue} (workers running), and the management API could not list the namespace's retry queues (${running.listError ?? 'unknown'}): make sure the workers run with --retry-delays ${mine}`,
    ];
  if (running.otherDelaysMs.length === 0) return [];
  return [
    `${workers} on ${topology.processQueue} (workers running), and the namespace has retry queues for other delays (${running.otherDelaysMs.join(',')} ms) than --retry-delays ${mine}: running workers keep retrying on the delays they started with; restart them with --retry-delays ${mine}`,
  ];
}

export function registerSetup(program: Command): void {
  program
    .command('setup')
    .description('create the database, tables and system accounts, and declare the RabbitMQ topology (idempotent)')
    .option('--currency <code>', 'currency of the system accounts to create', 'EUR')
    .option('--json', 'JSON output')
    .option(
      '--partitions <n>',
      `per-account ordering: N partition queues fed by a consistent-hash exchange on the account (1-${PARTITIONS_MAX}; 0 = back to unordered; default: keep the namespace's mode)`,
    )
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim setup\n  $ txsim setup --namespace demo2 --retry-delays 100,1000\n  $ txsim setup --partitions 8\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (opts: { currency: string; json?: boolean; partitions?: string }, command: Command) => {
      await handleSetup(contextFor(command), {
        currency: parseCurrencyFlag('--currency', opts.currency, 'EUR'),
        json: Boolean(opts.json),
        ...(opts.partitions === undefined ? {} : { partitions: parseIntFlag('--partitions', opts.partitions, 0, 0, PARTITIONS_MAX) }),
      });
    });
}
