import type { ChannelModel } from 'amqplib';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import type { AccountingReconciliation } from '../verify/reconcile.js';
import { verifyBooks, type VerifyReport } from '../verify/verify.js';
import { parseIntFlag } from '../config/parse.js';
import { formatMinor } from '../domain/money.js';
import { UsageError, VerificationFailedError } from '../errors.js';
import { withDatabase } from './accounts.js';
import { contextFor, type CommandContext } from './context.js';
import { table, toJson } from './format.js';

export interface VerifyOptions {
  readonly runId: string | null;
  readonly json: boolean;
  /** Keep re-checking for up to this long while a run still has messages in flight. */
  readonly waitS: number;
}

/** Proves the books (and a run, when given). Throws VerificationFailedError on any violation. */
export async function handleVerify(ctx: CommandContext, options: VerifyOptions): Promise<VerifyReport> {
  if (options.runId !== null && !/^[0-9a-f-]{36}$/i.test(options.runId)) throw new UsageError(`--run: "${options.runId}" is not a run id (a UUID printed by gen)`);
  const report = await withDatabase(ctx, async (db) => {
    let connection: ChannelModel | null = null;
    try {
      connection = await connectOnce(ctx.config.amqpUrl, ctx.log, 'txsim verify');
    } catch (err) {
      // The books can still be checked; queued/parked counts need the broker.
      if (options.runId) throw err;
      ctx.log.warn({ err: (err as Error).message }, 'rabbitmq unreachable; checking the database only');
    }
    try {
      const deps = { db, connection, topology: topologyOf(ctx.config) };
      const deadline = Date.now() + options.waitS * 1000;
      for (;;) {
        const r = await verifyBooks(deps, { runId: options.runId?.toLowerCase() ?? null });
        const unsettled = r.run !== null && (r.run.pending > 0 || r.run.queued > 0 || r.run.lost > 0);
        // The accounting side is waited for only while a consumer is there to make progress: without
        // one, its events just stay queued (pending, not a failure) and waiting would change nothing.
        const accountingBusy = r.accounting !== null && !r.accounting.settled && (r.accounting.consumers ?? 0) > 0;
        if (!(unsettled || accountingBusy) || Date.now() >= deadline) return r;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    } finally {
      await connection?.close().catch(() => {});
    }
  });
  if (options.json) ctx.out(toJson(report));
  else printReport(ctx, report);
  if (!report.ok) {
    const failed = report.checks.filter((c) => c.violations > 0).map((c) => c.name);
    const run = report.run;
    const runPart = run && (run.lost > 0 || run.duplicated > 0) ? [`run: ${run.lost} lost, ${run.duplicated} duplicated`] : [];
    const acc = report.accounting;
    const accountingPart = acc && !acc.ok ? [`accounting: ${[...acc.checks.filter((c) => c.violations > 0).map((c) => c.name), ...(acc.lost > 0 ? [`${acc.lost} statement lines lost`] : [])].join(', ')}`] : [];
    throw new VerificationFailedError(`verification failed: ${[...failed, ...runPart, ...accountingPart].join('; ')}`);
  }
  return report;
}

function printReport(ctx: CommandContext, r: VerifyReport): void {
  ctx.out('Ledger invariant');
  ctx.out(table(['check', 'result', 'example'], r.checks.map((c) => [c.description, c.violations === 0 ? 'ok' : `${c.violations} VIOLATIONS`, c.examples[0] ?? ''])));
  ctx.out('');
  ctx.out(`${r.totals.customerAccounts} customer accounts holding ${formatMinor(BigInt(r.totals.customerBalanceMinor))}; ${r.totals.transactions} transactions (${r.totals.applied} applied, ${r.totals.rejected} rejected); ${r.totals.entries} ledger entries`);
  const run = r.run;
  if (run) {
    ctx.out('');
    ctx.out(`Run ${run.runId} (${run.status}): ${run.expected} ids to account for (requested ${run.requested}, published ${run.published}, confirmed ${run.confirmed})`);
    const reasons = Object.entries(run.rejectedByReason).map(([k, v]) => `${k} ${v}`).join(', ');
    ctx.out(
      table(
        ['where', 'count'],
        [
          ['applied', run.applied],
          ['rejected', run.rejected],
          ['parked', run.parked],
          ['returned unroutable', run.returned],
          ['still queued', run.pending],
          ['never published (run cut short)', run.notPublished],
          ['LOST', run.lost],
          ['DUPLICATED', run.duplicated],
        ],
      ),
    );
    if (reasons) ctx.out(`rejected by reason: ${reasons}`);
    if (run.lostExamples.length) ctx.out(`lost, e.g. ${run.lostExamples.join(', ')}`);
    if (run.duplicatedExamples.length) ctx.out(`duplicated, e.g. ${run.duplicatedExamples.join(', ')}`);
  }
  if (r.accounting) printAccounting(ctx, r.accounting);
  ctx.out('');
  ctx.out(r.ok ? 'OK: the books balance and every id is accounted for' : 'FAILED: see the violations above');
}

function printAccounting(ctx: CommandContext, a: AccountingReconciliation): void {
  ctx.out('');
  const state = a.settled ? 'drained' : `not drained: ${a.outboxUnsent} unsent in the outbox, ${a.queued ?? '?'} queued, ${a.consumers ?? '?'} consumers`;
  ctx.out(`Accounting statements (${state})`);
  ctx.out(`${a.outcomes} recorded outcomes, ${a.statements} statement lines; ${a.missing} outcomes without a line (${a.pending} on their way, ${a.lost} LOST)`);
  ctx.out(table(['check', 'result', 'example'], a.checks.map((c) => [c.description, c.violations === 0 ? 'ok' : `${c.violations} VIOLATIONS`, c.examples[0] ?? ''])));
  if (a.lost > 0 && a.missingExamples.length) ctx.out(`without a statement line, e.g. ${a.missingExamples.join(', ')}`);
  if (a.webhooks.pending + a.webhooks.delivered + a.webhooks.failed > 0) ctx.out(`webhooks: ${a.webhooks.delivered} delivered, ${a.webhooks.failed} failed, ${a.webhooks.pending} pending`);
  if (a.invalidEvents > 0) ctx.out(`${a.invalidEvents} deliveries were not accounting events (see accounting_invalid_events)`);
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('prove the books balance and, with --run, that every published id is accounted for exactly once')
    .option('--run <id>', 'run id printed by gen')
    .option('--wait <s>', 'while a run still has messages queued, re-check for up to this many seconds', '0')
    .option('--json', 'JSON output')
    .addHelpText('after', '\nExit code 4 on any violation.\n\nExample:\n  $ txsim verify\n  $ txsim verify --run 5d0c2b8e-6c1f-5a43-9d7e-0f1e2d3c4b5a --wait 60')
    .action(async (opts: { run?: string; wait: string; json?: boolean }, command: Command) => {
      await handleVerify(contextFor(command), { runId: opts.run ?? null, json: Boolean(opts.json), waitS: parseIntFlag('--wait', opts.wait, 0, 0, 86_400) });
    });
}
