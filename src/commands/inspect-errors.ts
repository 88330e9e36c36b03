import { hostname } from 'node:os';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import {
  inspectQueue,
  SCAN_MAX,
  type InspectedMessage,
  type InspectedQueue,
  type InspectOptions,
  type InspectReport,
} from '../dead-letters/inspect-errors.js';
import { isStageDeclineReason } from '../domain/stage-spec.js';
import { REJECT_REASONS } from '../domain/transaction.js';
import { parseIntFlag } from '../config/parse.js';
import { formatAmount } from '../domain/money.js';
import { ExitCode, FatalError, UsageError } from '../errors.js';
import { contextFor, type CommandContext } from './context.js';
import { plural, table, toJson } from './format.js';

/**
 * Shows (and with --ack removes) messages of the errors or dead queue. A read cut part-way (its channel
 * or connection closed) prints what it showed and removed before, then exits 3.
 */
export async function handleInspectErrors(ctx: CommandContext, options: InspectOptions & { json: boolean }): Promise<InspectReport> {
  const connection = await connectOnce(ctx.config.amqpUrl, ctx.log, `txsim inspect-errors ${hostname()}-${process.pid}`);
  let report: InspectReport;
  try {
    report = await inspectQueue({ connection, topology: topologyOf(ctx.config) }, options);
  } finally {
    await connection.close().catch(() => {});
  }
  ctx.out(options.json ? toJson(report) : formatInspectReport(report, options));
  if (report.interrupted !== undefined)
    throw new FatalError(`${report.interrupted}; what was shown and removed before is listed above`, ExitCode.serviceUnavailable);
  return report;
}

/** Longest detail shown in the table; --json has all of it. */
const DETAIL_CHARS_MAX = 60;

/**
 * The text form of an inspection: one row per message shown (with why it was rejected or parked),
 * then the count by reason and what was removed. A message whose body could not be read says so in
 * its row rather than leaving the transaction cells empty.
 */
export function formatInspectReport(report: InspectReport, options: Pick<InspectOptions, 'queue' | 'reason' | 'ack'>): string {
  const missing = (m: InspectedMessage) => (m.bodyProblem ? '-' : '');
  const lines = [
    table(
      ['id', 'type', 'account', 'amount', 'currency', 'reason', 'worker', 'when', 'attempts', 'detail'],
      report.messages.map((m) => [
        m.id ?? '?',
        m.bodyProblem ? `(unreadable: ${m.bodyProblem})` : (m.type ?? ''),
        m.accountId ?? missing(m),
        // Amounts of poison messages can be anything; only whole minor units (a string then) are formatted as money.
        m.amountMinor !== null ? formatAmount(BigInt(m.amountMinor), m.currency ?? undefined) : missing(m),
        m.currency ?? missing(m),
        m.reason,
        m.workerId ?? '',
        m.at ? m.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '',
        m.attempts ?? '',
        cell(m.detail.replace(/\s+/g, ' '), DETAIL_CHARS_MAX),
      ]),
    ),
    '',
  ];
  const reasons = Object.entries(report.byReason).sort((a, b) => b[1] - a[1]);
  const partial = report.partial ? ` (stopped at ${report.scanned}: counts are partial)` : '';
  lines.push(
    `${report.queue}: ${plural(report.depth, 'message')}; scanned ${report.scanned}${partial}, showing ${report.messages.length}${options.reason ? ` with reason ${options.reason}` : ''}`,
  );
  lines.push(reasons.length > 0 ? table(['reason', 'count'], reasons) : 'no messages');
  if (options.ack) lines.push(`removed the ${plural(report.removed, 'message')} shown from ${report.queue}`);
  else if (report.messages.length > 0)
    lines.push(
      `nothing removed (add --ack to remove exactly the messages shown${options.queue === 'dead' ? ', or txsim replay-dead to retry them' : ''})`,
    );
  return lines.join('\n');
}

/** Text cut to `width` characters, ending in '…' when cut; never padded (it is the last column). */
function cell(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

/**
 * Checks `--reason`. The errors queue holds only the worker's reject reasons, so any other name is
 * a typo that would silently show nothing; the dead queue's reasons are error codes (an open set).
 */
export function parseReasonFlag(value: string | undefined, queue: InspectedQueue): string | null {
  if (value === undefined) return null;
  // A processing stage's decline (`declined_by_<stage>`, worker --stage) is a reject reason too.
  if (queue === 'errors' && !(REJECT_REASONS as readonly string[]).includes(value) && !isStageDeclineReason(value)) {
    throw new UsageError(
      `--reason: "${value}" is not a reject reason; one of ${REJECT_REASONS.join(', ')}, declined_by_<stage> (with --dead: an error code such as ER_LOCK_DEADLOCK, or delivery_limit)`,
    );
  }
  if (!/^[A-Za-z0-9_.: -]{1,64}$/.test(value))
    throw new UsageError(
      `--reason: "${value}" is not a reason name (with --dead: an error code such as ER_LOCK_DEADLOCK, or delivery_limit)`,
    );
  return value;
}

export function registerInspectErrors(program: Command): void {
  program
    .command('inspect-errors')
    .description(`show rejected messages (the errors queue) or parked ones (--dead) without removing them`)
    .option('--dead', 'read the dead (parking) queue instead of the errors queue')
    .option('--limit <n>', 'most messages shown', '50')
    .option('--reason <reason>', `only this reason (errors: ${REJECT_REASONS.join(', ')}; dead: an error code or delivery_limit)`)
    .option('--ack', 'remove exactly the messages shown')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      `
The queue is read 32 messages at a time, each page copied back to its tail in order before the next
is fetched: it ends with the same messages in the same order, having been read round once, and no
message is handed back (a handed-back message counts towards a quorum queue's delivery limit, 20 by
default from RabbitMQ 4.0). --ack removes the messages shown and nothing else. Run one reader
(inspect-errors, replay-dead) at a time: two at once take each other's messages and shift the order.

Example:
  $ txsim inspect-errors
  $ txsim inspect-errors --reason insufficient_funds --limit 10 --ack
  $ txsim inspect-errors --dead --json

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(async (opts: { dead?: boolean; limit: string; reason?: string; ack?: boolean; json?: boolean }, command: Command) => {
      const queue = opts.dead ? 'dead' : 'errors';
      const reason = parseReasonFlag(opts.reason, queue);
      await handleInspectErrors(contextFor(command), {
        queue,
        limit: parseIntFlag('--limit', opts.limit, 50, 1, SCAN_MAX),
        reason,
        ack: Boolean(opts.ack),
        json: Boolean(opts.json),
      });
    });
}
