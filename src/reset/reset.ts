import type { Channel, ChannelModel } from 'amqplib';
import { topologyNames, type Topology } from '../amqp/topology.js';
import { databaseExists, dropDatabaseIfExists } from '../db/reset.js';
import { describeCause, UsageError } from '../errors.js';

/**
 * `txsim reset`: deletes one namespace's exchanges, queues and database, and nothing else. What
 * belongs to a namespace is decided by name alone — `<namespace>.` in front of every exchange and
 * queue (a namespace cannot contain a dot, so `a` never matches `a_b.errors`), and the database
 * named after the namespace. The reset is planned first (read only: what exists, how many messages
 * each queue holds), shown or confirmed, then carried out on exactly the planned names.
 */

/** What a reset works on: the namespace, its topology, and where its database lives. */
export interface ResetTarget {
  readonly namespace: string;
  readonly topology: Topology;
  readonly databaseUrl: string;
  readonly databaseName: string;
  /** The vhost of the AMQP URL, as the management API names it. */
  readonly vhost: string;
}

/** Lists names through the RabbitMQ management API (ManagementApiClient fits). */
export interface NameLister {
  get(path: string, query?: Record<string, string>): Promise<unknown>;
}

export interface ResetQueue {
  readonly name: string;
  /** Ready messages when planned (lost with the queue). */
  readonly messages: number;
  /** Consumers attached when planned: a running worker or accounting process. */
  readonly consumers: number;
}

/** What exists in the namespace (the plan), or what was removed (the report): same shape. */
export interface ResetResult {
  readonly namespace: string;
  readonly queues: readonly ResetQueue[];
  readonly exchanges: readonly string[];
  /** The namespace's database when it exists; null when there is none. */
  readonly database: string | null;
  /**
   * Why the management API could not list the namespace's names (null: it did). Without it only
   * the names of this config's topology are known: retry queues of other `--retry-delays` stay.
   */
  readonly apiError: string | null;
}

/** True when an exchange or queue name belongs to the namespace. */
export function inNamespace(name: string, namespace: string): boolean {
  return name.startsWith(`${namespace}.`);
}

/**
 * Finds what of the namespace exists, without changing anything. Refuses (UsageError) when the
 * database is not the namespace's own: DATABASE_URL may name a database others use.
 */
export async function planReset(deps: { connection: ChannelModel; api: NameLister | null }, target: ResetTarget): Promise<ResetResult> {
  if (target.databaseName !== target.namespace) {
    throw new UsageError(
      `DATABASE_URL names the database "${target.databaseName}", not the namespace's own ("${target.namespace}"): reset only drops a database named after its namespace (drop it yourself, or leave the database out of DATABASE_URL)`,
    );
  }
  const known = topologyNames(target.topology);
  const listed = deps.api ? await listByApi(deps.api, target) : { exchanges: [], queues: [], error: 'no management API' };
  const queueNames = unique([...known.queues, ...listed.queues]).filter((n) => inNamespace(n, target.namespace));
  const exchangeNames = unique([...known.exchanges, ...listed.exchanges]).filter((n) => inNamespace(n, target.namespace));
  const queues: ResetQueue[] = [];
  const exchanges: string[] = [];
  const probe = new Prober(deps.connection);
  try {
    for (const name of queueNames) {
      const state = await probe.run((ch) => ch.checkQueue(name));
      if (state) queues.push({ name, messages: state.messageCount, consumers: state.consumerCount });
    }
    for (const name of exchangeNames) if (await probe.run((ch) => ch.checkExchange(name))) exchanges.push(name);
  } finally {
    await probe.close();
  }
  const database = (await databaseExists(target.databaseUrl, target.databaseName)) ? target.databaseName : null;
  return { namespace: target.namespace, queues, exchanges, database, apiError: listed.error };
}

/** Deletes exactly what the plan found; returns what was removed (a name gone meanwhile is skipped). */
export async function executeReset(deps: { connection: ChannelModel }, target: ResetTarget, plan: ResetResult): Promise<ResetResult> {
  const outside = [...plan.queues.map((q) => q.name), ...plan.exchanges].filter((n) => !inNamespace(n, target.namespace));
  // A plan is built from namespace names only; anything else here is a bug, and nothing is touched.
  if (outside.length > 0 || (plan.database !== null && plan.database !== target.namespace)) {
    throw new Error(`reset plan names things outside namespace ${target.namespace}: ${[...outside, plan.database].join(', ')}`);
  }
  const queues: ResetQueue[] = [];
  const exchanges: string[] = [];
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {
    // A failed delete closes the channel; the rejected promise below reports it.
  });
  try {
    // Queues first: the bindings go with them, then the exchanges have nothing bound.
    for (const q of plan.queues) {
      const { messageCount } = await channel.deleteQueue(q.name);
      queues.push({ ...q, messages: messageCount });
    }
    for (const name of plan.exchanges) {
      await channel.deleteExchange(name);
      exchanges.push(name);
    }
  } finally {
    await channel.close().catch(() => {});
  }
  const database = plan.database !== null && (await dropDatabaseIfExists(target.databaseUrl, plan.database)) ? plan.database : null;
  return { namespace: target.namespace, queues, exchanges, database, apiError: plan.apiError };
}

/** Names of the namespace's queues and exchanges the management API knows. Never throws. */
async function listByApi(api: NameLister, target: ResetTarget): Promise<{ exchanges: string[]; queues: string[]; error: string | null }> {
  const vhost = encodeURIComponent(target.vhost);
  const names = (data: unknown) =>
    Array.isArray(data) ? data.map((d) => (d as { name?: unknown }).name).filter((n): n is string => typeof n === 'string') : [];
  try {
    const queues = names(await api.get(`/api/queues/${vhost}`, { columns: 'name' }));
    const exchanges = names(await api.get(`/api/exchanges/${vhost}`, { columns: 'name' }));
    return { queues, exchanges, error: null };
  } catch (err) {
    return { queues: [], exchanges: [], error: describeCause(err) };
  }
}

/**
 * Runs passive checks on a channel that is replaced after each 404 (a missing queue or exchange
 * closes the channel). Resolves null for "does not exist".
 */
class Prober {
  private channel: Channel | null = null;

  constructor(private readonly connection: ChannelModel) {}

  async run<T>(check: (channel: Channel) => Promise<T>): Promise<T | null> {
    this.channel ??= await this.open();
    try {
      return await check(this.channel);
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      this.channel = null;
      return null;
    }
  }

  async close(): Promise<void> {
    await this.channel?.close().catch(() => {});
  }

  private async open(): Promise<Channel> {
    const channel = await this.connection.createChannel();
    channel.on('error', () => {
      // 404 on a passive check: the check's rejection reports it.
    });
    return channel;
  }
}

function unique(names: readonly string[]): string[] {
  return [...new Set(names)];
}
