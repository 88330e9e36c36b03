import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { inspectQueue, SCAN_MAX, type InspectOptions, type InspectReport } from '../dead-letters/inspect-errors.js';
import { parseIntFlag } from '../config/parse.js';
import { formatMinor } from '../domain/money.js';
import { UsageError } from '../errors.js';
import { contextFor, type CommandContext } from './context.js';
import { table, toJson } from './format.js';

/** Shows (and with --ack removes) messages of the errors or dead queue. */
export async function handleInspectErrors(ctx: CommandContext, options: InspectOptions & { json: boolean }): Promise<InspectReport> {
  const connection = await connectOnce(ctx.config.amqpUrl, ctx.log, 'txsim inspect-errors');
  let report: InspectReport;
  try {
    report = await inspectQueue({ connection, topology: topologyOf(ctx.config) }, options);
  } finally {
    await connection.close().catch(() => {});
  }
  if (options.json) {
    ctx.out(toJson(report));
    return report;
  }
  ctx.out(
    table(
      ['id', 'type', 'account', 'amount', 'currency', 'reason', 'worker', 'when', 'attempts'],
      report.messages.map((m) => [
        m.id ?? '?',
        m.type ?? '',
        m.accountId ?? '',
        // Amounts of poison messages can be anything; only whole minor units are formatted as money.
        m.amountMinor !== null && Number.isSafeInteger(m.amountMinor) ? formatMinor(m.amountMinor) : '',
        m.currency ?? '',
        m.reason,
        m.workerId ?? '',
        m.at ? m.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '',
        m.attempts ?? '',
      ]),
    ),
  );
  ctx.out('');
  const reasons = Object.entries(report.byReason).sort((a, b) => b[1] - a[1]);
  ctx.out(`${report.queue}: ${report.depth} messages; scanned ${report.scanned}${report.partial ? ` (stopped at ${SCAN_MAX}: counts are partial)` : ''}, showing ${report.messages.length}${options.reason ? ` with reason ${options.reason}` : ''}`);
  ctx.out(reasons.length > 0 ? table(['reason', 'count'], reasons) : 'no messages');
  if (options.ack) ctx.out(`removed the ${report.removed} messages shown from ${report.queue}`);
  else if (report.messages.length > 0) ctx.out(`nothing removed (add --ack to remove exactly the messages shown${options.queue === 'dead' ? ', or txsim replay-dead to retry them' : ''})`);
  return report;
}

export function registerInspectErrors(program: Command): void {
  program
    .command('inspect-errors')
    .description(`show rejected messages (the errors queue) or parked ones (--dead) without removing them`)
    .option('--dead', 'read the dead (parking) queue instead of the errors queue')
    .option('--limit <n>', 'most messages shown', '50')
    .option('--reason <reason>', 'only this reason (errors: insufficient_funds, unknown_account, …; dead: an error code or delivery_limit)')
    .option('--ack', 'remove exactly the messages shown')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      `
Messages are fetched and left unacknowledged, then handed back when the command ends: the queue is
unchanged (their redelivered flag is set). --ack removes the messages shown and nothing else.

Example:
  $ txsim inspect-errors
  $ txsim inspect-errors --reason insufficient_funds --limit 10 --ack
  $ txsim inspect-errors --dead --json`,
    )
    .action(async (opts: { dead?: boolean; limit: string; reason?: string; ack?: boolean; json?: boolean }, command: Command) => {
      if (opts.reason !== undefined && !/^[A-Za-z0-9_.:-]{1,64}$/.test(opts.reason)) throw new UsageError(`--reason: "${opts.reason}" is not a reason name`);
      await handleInspectErrors(contextFor(command), {
        queue: opts.dead ? 'dead' : 'errors',
        limit: parseIntFlag('--limit', opts.limit, 50, 1, SCAN_MAX),
        reason: opts.reason ?? null,
        ack: Boolean(opts.ack),
        json: Boolean(opts.json),
      });
    });
}
