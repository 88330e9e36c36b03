import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { describeEndpoints } from '../config/config.js';
import { UsageError } from '../errors.js';
import { executeReset, planReset, type ResetResult } from '../reset/reset.js';
import { contextFor, type CommandContext } from './context.js';
import { plural, toJson } from './format.js';

export interface ResetOptions {
  /** Confirmed on the command line: no question asked. */
  readonly yes: boolean;
  readonly json: boolean;
}

export interface ResetIo {
  /** Stdin and stdout are a terminal: a question can be asked. */
  readonly interactive: boolean;
  /** Shows what will be removed and asks yes/no; true for yes. Only called when `interactive`. */
  readonly confirm: (question: string) => Promise<boolean>;
}

/** What `reset` did: removed, or left everything because the question was answered no. */
export type ResetOutcome =
  { readonly removed: true; readonly result: ResetResult } | { readonly removed: false; readonly plan: ResetResult };

/**
 * Deletes the namespace's queues, exchanges and database after a confirmation (--yes, or a yes on
 * a terminal). Without either it is a usage error, before anything is contacted.
 */
export async function handleReset(ctx: CommandContext, options: ResetOptions, io: ResetIo): Promise<ResetOutcome> {
  const { config } = ctx;
  if (!options.yes && !io.interactive) {
    throw new UsageError(
      `reset deletes every queue, exchange and the database of namespace ${config.namespace}: add --yes to confirm (stdin is not a terminal, so it cannot ask)`,
    );
  }
  // undici is loaded only by the commands that make HTTP requests: the worker's process never needs it.
  const { ManagementApiClient, vhostOf } = await import('../watch/queue-depths.js');
  const target = {
    namespace: config.namespace,
    topology: topologyOf(config),
    databaseUrl: config.databaseUrl,
    databaseName: config.databaseName,
    vhost: vhostOf(config.amqpUrl),
  };
  const connection = await connectOnce(config.amqpUrl, ctx.log, 'txsim reset');
  const api = new ManagementApiClient(config.rabbitmqApiUrl, target.vhost);
  try {
    const plan = await planReset({ connection, api }, target);
    if (!options.yes) {
      const question = `${describeResult(plan, 'will remove', describeEndpoints(config).database)}\nDelete all of this in namespace ${config.namespace}? [y/N] `;
      if (isEmpty(plan) || !(await io.confirm(question))) {
        ctx.out(
          options.json
            ? toJson({ namespace: plan.namespace, removed: false, queues: [], exchanges: [], database: null, apiError: plan.apiError })
            : 'nothing removed',
        );
        return { removed: false, plan };
      }
    }
    const result = await executeReset({ connection }, target, plan);
    ctx.out(options.json ? toJson({ ...result, removed: true }) : describeResult(result, 'removed', describeEndpoints(config).database));
    return { removed: true, result };
  } finally {
    await api.close();
    await connection.close().catch(() => {});
  }
}

function isEmpty(r: ResetResult): boolean {
  return r.queues.length === 0 && r.exchanges.length === 0 && r.database === null;
}

/** The plan or the result as text: each queue with its messages, each exchange, the database. */
export function describeResult(r: ResetResult, verb: 'removed' | 'will remove', databaseEndpoint: string): string {
  if (isEmpty(r)) return `namespace ${r.namespace}: nothing to remove (no queues, exchanges or database)`;
  const lines = [
    `namespace ${r.namespace}: ${verb} ${plural(r.queues.length, 'queue')}, ${plural(r.exchanges.length, 'exchange')} and ${r.database ? 'the database' : 'no database'}`,
  ];
  for (const q of r.queues)
    lines.push(
      `  queue     ${q.name} (${plural(q.messages, 'message')}${q.consumers > 0 ? `, ${plural(q.consumers, 'consumer')} attached` : ''})`,
    );
  for (const name of r.exchanges) lines.push(`  exchange  ${name}`);
  if (r.database) lines.push(`  database  ${databaseEndpoint}`);
  const consumers = r.queues.reduce((n, q) => n + q.consumers, 0);
  if (consumers > 0)
    lines.push(
      `note: ${plural(consumers, 'consumer')} attached: a running worker or accounting process re-declares its queues when it reconnects; stop them first`,
    );
  if (r.apiError)
    lines.push(
      `note: the management API could not list the namespace (${r.apiError}); only this config's queues were looked for, retry queues of other --retry-delays may remain`,
    );
  return lines.join('\n');
}

export function registerReset(program: Command): void {
  program
    .command('reset')
    .description('delete the namespace: its exchanges, queues (with their messages) and database — nothing outside it')
    .option('--yes', 'do not ask (required when stdin is not a terminal)')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      `
Only names of the namespace are touched: exchanges and queues named <namespace>.*, and the
database named after the namespace (a DATABASE_URL naming another database is refused). On a
terminal it lists what it will delete and asks; otherwise --yes is required (exit 2 without it).

Example:
  $ txsim reset --namespace demo2
  $ txsim reset --namespace ci_run_42 --yes --json

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(async (opts: { yes?: boolean; json?: boolean }, command: Command) => {
      const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY);
      await handleReset(contextFor(command), { yes: Boolean(opts.yes), json: Boolean(opts.json) }, { interactive, confirm: askYesNo });
    });
}

/** Asks on the terminal (the question on stderr, so stdout stays for the result). */
async function askYesNo(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}
