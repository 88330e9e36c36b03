import { hostname } from 'node:os';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { SCAN_MAX } from '../dead-letters/inspect-errors.js';
import { publishReplayEvents, replayDead, replayEvents, type ReplayOptions, type ReplayReport } from '../dead-letters/replay-dead.js';
import { insertFailures } from '../db/transaction-failures.js';
import { parseIntFlag } from '../config/parse.js';
import { ExitCode, FatalError, NotFoundError, PublishIncompleteError, UsageError } from '../errors.js';
import { withDatabase } from './accounts.js';
import { collect, contextFor, type CommandContext } from './context.js';
import { plural, table, toJson } from './format.js';
import { UUID_PATTERN } from '../domain/ids.js';

/**
 * Republishes parked messages; exit 6 when some could not be republished (or their replay recorded),
 * 5 when an --id was not parked. The database is opened first: a message leaves the dead queue only
 * once its replay is recorded, so with no database nothing is replayed (exit 3). A read of the dead
 * queue cut part-way (its channel or connection closed) prints what was replayed and recorded before,
 * then exits 3.
 */
export async function handleReplayDead(ctx: CommandContext, options: ReplayOptions & { json: boolean }): Promise<ReplayReport> {
  const report = await withDatabase(ctx, async (db) => {
    const connection = await connectOnce(ctx.config.amqpUrl, ctx.log, `txsim replay-dead ${hostname()}-${process.pid}`);
    const topology = topologyOf(ctx.config);
    try {
      const done = await replayDead({ connection, topology, record: (records) => insertFailures(db, records) }, options);
      // After the records: a live view that re-reads the status on this event finds it queued.
      if (!(await publishReplayEvents(connection, topology.feedExchange, replayEvents(done)).catch(() => false)))
        ctx.log.warn({ exchange: topology.feedExchange }, 'replayed and recorded, but the live feed event could not be published');
      return done;
    } finally {
      await connection.close().catch(() => {});
    }
  });
  ctx.out(options.json ? toJson(report) : formatReplayReport(report));
  if (report.interrupted !== undefined)
    throw new FatalError(
      `${report.interrupted}; replayed and recorded before: ${report.replayed.length} (listed above), the rest is still parked`,
      ExitCode.serviceUnavailable,
    );
  if (report.failed.length > 0) {
    throw new PublishIncompleteError(
      `${plural(report.failed.length, 'parked message')} could not be replayed; ${report.failed.length === 1 ? 'it is' : 'they are'} still in ${report.queue}`,
    );
  }
  if (report.notFound.length > 0)
    throw new NotFoundError(
      `${report.notFound.length} of the requested ids ${report.notFound.length === 1 ? 'is' : 'are'} not parked in ${report.queue}`,
    );
  return report;
}

/** The text form of a replay: what went back, what stayed and why, which ids were not parked. */
export function formatReplayReport(report: ReplayReport): string {
  const lines = [
    `replayed ${plural(report.replayed.length, 'message')} from ${report.queue} to ${report.exchange} (scanned ${report.scanned})`,
  ];
  if (report.replayed.length > 0)
    lines.push(
      table(
        ['id', 'routing key'],
        report.replayed.map((r) => [r.id ?? '?', r.routingKey]),
      ),
    );
  if (report.failed.length > 0)
    lines.push(
      '',
      'left in the dead queue:',
      table(
        ['id', 'error'],
        report.failed.map((f) => [f.id ?? '?', f.error]),
      ),
    );
  if (report.notFound.length > 0) lines.push(`not in ${report.queue}: ${report.notFound.join(', ')}`);
  return lines.join('\n');
}

export function registerReplayDead(program: Command): void {
  program
    .command('replay-dead')
    .description(
      'republish parked messages to the transactions exchange for another try (removed from the dead queue only once confirmed and recorded)',
    )
    .option('--id <id>', 'only this transaction id (repeatable)', collect)
    .option('--limit <n>', 'most messages replayed', '100')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      `
Each message goes back under its original routing key with its attempt count reset. It is removed
from the dead queue only after the broker confirmed the republish and the replay is recorded in the
database; one that cannot be republished or recorded stays parked (exit code 6). What stays keeps its
order: the dead queue is read 32 messages at a time, what stays copied back to its tail in order
(never handed back, so no read counts towards a delivery limit). A read cut part-way (the connection
closed) prints what was replayed and recorded before it, and exits 3; the rest stays parked.

Example:
  $ txsim inspect-errors --dead
  $ txsim replay-dead --id 3f0b6c1e-2a4d-5e8f-9a0b-1c2d3e4f5a6b
  $ txsim replay-dead --limit 1000

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(async (opts: { id?: string[]; limit: string; json?: boolean }, command: Command) => {
      const ids = opts.id?.map((id) => {
        if (!UUID_PATTERN.test(id)) throw new UsageError(`--id: "${id}" is not a UUID`);
        return id.toLowerCase();
      });
      await handleReplayDead(contextFor(command), {
        ids: ids && ids.length > 0 ? [...new Set(ids)] : null,
        limit: parseIntFlag('--limit', opts.limit, 100, 1, SCAN_MAX),
        json: Boolean(opts.json),
      });
    });
}
