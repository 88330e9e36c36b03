import type { ChannelModel } from 'amqplib';
import type { Command } from 'commander';
import { connectOnce } from '../amqp/connect.js';
import { topologyOf } from '../amqp/topology.js';
import { readPartitionCount } from '../db/partition-leases.js';
import type { AccountingReconciliation } from '../verify/reconcile.js';
import { verifyBooks, type RunAccount, type VerifyReport } from '../verify/verify.js';
import { parseIntFlag } from '../config/parse.js';
import { formatMinor } from '../domain/money.js';
import { describeCause, ExitCode, FatalError, UsageError, VerificationFailedError, VerificationPendingError } from '../errors.js';
import { withDatabase } from './accounts.js';
import { contextFor, type CommandContext } from './context.js';
import { plural, table, toJson } from './format.js';

export interface VerifyOptions {
  readonly runId: string | null;
  readonly json: boolean;
  /** Keep re-checking for up to this long while a run still has messages in flight. */
  readonly waitS: number;
  /**
   * Where the waiting line goes (stderr on a TTY): called with each new line while waiting and with
   * null when the wait is over. Absent: nothing is shown.
   */
  readonly progress?: (line: string | null) => void;
}

/** What is still on its way, in words: `200 ids of the run still queued, 3 statement lines on their way`. */
export function pendingText(pending: VerifyReport['pending']): string {
  const parts = [
    ...(pending.runIds > 0 ? [`${plural(pending.runIds, 'id')} of the run still queued`] : []),
    ...(pending.statementLines > 0 ? [`${plural(pending.statementLines, 'statement line')} on their way`] : []),
    ...(pending.missingInstances.length > 0
      ? [
          `${pending.missingInstances.length === 1 ? 'instance' : 'instances'} ${pending.missingInstances.join(', ')} of the run ${pending.missingInstances.length === 1 ? 'has' : 'have'} not reported (no gen --instance has started ${pending.missingInstances.length === 1 ? 'it' : 'them'})`,
        ]
      : []),
  ];
  return parts.join(', ');
}

/** Queues named at most in one line; a namespace may have up to 64 partition queues. */
const QUEUES_NAMED_MAX = 3;

/**
 * What to do about ids still queued that no worker consumes (`no worker is consuming
 * txsim.transactions.process: start the workers`), or null when there are none or every queue that
 * holds them has a worker.
 */
export function noWorkerText(r: { pending: VerifyReport['pending']; run: Pick<RunAccount, 'unconsumedQueues'> | null }): string | null {
  const queues = r.run?.unconsumedQueues ?? [];
  if (r.pending.runIds === 0 || queues.length === 0) return null;
  const named = queues.slice(0, QUEUES_NAMED_MAX).join(', ');
  const more = queues.length > QUEUES_NAMED_MAX ? ` and ${queues.length - QUEUES_NAMED_MAX} more` : '';
  return `no worker is consuming ${named}${more}: start the workers (txsim worker)`;
}

/** The waiting line on a terminal: what is pending (falling as it arrives) and how long verify will still wait. */
export function waitingLine(r: Pick<VerifyReport, 'pending' | 'run'>, secondsLeft: number): string {
  const what = pendingText(r.pending) || (r.run && r.run.lost > 0 ? `${plural(r.run.lost, 'id')} not found yet` : 'settling');
  return `waiting: ${what} (${Math.max(0, Math.ceil(secondsLeft))} s left)`;
}

/**
 * Proves the books (and a run, when given), prints the report, and throws unless it is OK (see
 * throwUnlessOk). Without the broker and without --run the books are still checked and reported.
 */
export async function handleVerify(ctx: CommandContext, options: VerifyOptions): Promise<VerifyReport> {
  if (options.runId !== null && !/^[0-9a-f-]{36}$/i.test(options.runId))
    throw new UsageError(`--run: "${options.runId}" is not a run id (a UUID printed by gen)`);
  let brokerError: unknown = null;
  const report = await withDatabase(ctx, async (db) => {
    let connection: ChannelModel | null = null;
    try {
      connection = await connectOnce(ctx.config.amqpUrl, ctx.log, 'txsim verify');
    } catch (err) {
      // The books can still be checked; what is queued or parked needs the broker, so a run cannot be
      // accounted for, and a clean report ends `incomplete` (exit 3) rather than OK.
      if (options.runId) throw err;
      brokerError = err;
    }
    try {
      // The ordering check applies, and the partition queues count as queued, in an ordered namespace.
      const deps = { db, connection, topology: topologyOf(ctx.config, await readPartitionCount(db, ctx.config.namespace)) };
      const deadline = Date.now() + options.waitS * 1000;
      try {
        for (;;) {
          const r = await verifyBooks(deps, {
            runId: options.runId?.toLowerCase() ?? null,
            ...(brokerError === null ? {} : { brokerError: describeBrokerError(brokerError) }),
          });
          const unsettled =
            r.run !== null && (r.run.pending > 0 || r.run.queued > 0 || r.run.lost > 0 || r.pending.missingInstances.length > 0);
          // The accounting side is waited for only while a consumer is there to make progress: without
          // one, its events just stay queued (not counted as pending) and waiting would change nothing.
          const accountingBusy = r.accounting !== null && !r.accounting.settled && (r.accounting.consumers ?? 0) > 0;
          if (!(unsettled || accountingBusy) || Date.now() >= deadline) return r;
          options.progress?.(waitingLine(r, (deadline - Date.now()) / 1000));
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      } finally {
        options.progress?.(null);
      }
    } finally {
      await connection?.close().catch(() => {});
    }
  });
  if (options.json) ctx.out(toJson(report));
  else printReport(ctx, report);
  throwUnlessOk(report, options.waitS, brokerError);
  return report;
}

/**
 * Ends a report that is not OK with its exit code: 7 while something is on its way (naming the queues
 * no worker consumes, where waiting longer would not help), 3 when the queues could not be read, 4 on
 * a violation or a loss.
 */
function throwUnlessOk(report: VerifyReport, waitS: number, brokerError: unknown): void {
  if (report.status === 'pending') {
    const noWorker = noWorkerText(report);
    throw new VerificationPendingError(
      `not verified yet: ${pendingText(report.pending)} after waiting ${waitS} s; ${noWorker === null ? 'run verify again once they have arrived (or with a longer --wait)' : `${noWorker}, then run verify again`}`,
    );
  }
  if (report.status === 'incomplete') {
    const message = `${report.broker.error}; the books were checked (no violation), the queues were not`;
    throw new FatalError(message, ExitCode.serviceUnavailable, { cause: brokerError });
  }
  if (!report.ok) {
    const failed = [...report.checks, report.ordering].filter((c) => c.violations > 0).map((c) => c.name);
    const run = report.run;
    const runPart = run && (run.lost > 0 || run.duplicated > 0) ? [`run: ${run.lost} lost, ${run.duplicated} duplicated`] : [];
    const acc = report.accounting;
    const accountingPart =
      acc && !acc.ok
        ? [
            `accounting: ${[...acc.checks.filter((c) => c.violations > 0).map((c) => c.name), ...(acc.lost > 0 ? [`${plural(acc.lost, 'statement line')} lost`] : [])].join(', ')}`,
          ]
        : [];
    throw new VerificationFailedError(`verification failed: ${[...failed, ...runPart, ...accountingPart].join('; ')}`);
  }
}

/** A failed connect in one line: connectOnce's ServiceUnavailableError already names the broker (password redacted). */
function describeBrokerError(err: unknown): string {
  return err instanceof Error ? err.message : `rabbitmq unreachable: ${describeCause(err)}`;
}

/** The report's last line: what was proved, or why not. */
export function verdictLine(
  r: Pick<VerifyReport, 'status' | 'pending' | 'broker'> & { run: Pick<RunAccount, 'unconsumedQueues'> | null },
): string {
  switch (r.status) {
    case 'ok':
      return 'OK: the books balance and every id is accounted for';
    case 'pending': {
      const noWorker = noWorkerText(r);
      return `PENDING: no violation so far, but ${pendingText(r.pending)}: not verified yet${noWorker === null ? '' : `; ${noWorker}`}`;
    }
    case 'incomplete':
      return `INCOMPLETE: the books balance, but the queues could not be read (${r.broker.error ?? 'rabbitmq unreachable'}): what is still queued or parked is not accounted for`;
    case 'failed':
      return r.broker.reachable
        ? 'FAILED: see the violations above'
        : `FAILED: see the violations above (and the queues could not be read: ${r.broker.error ?? 'rabbitmq unreachable'})`;
  }
}

function printReport(ctx: CommandContext, r: VerifyReport): void {
  ctx.out('Ledger invariant');
  ctx.out(
    table(
      ['check', 'result', 'example'],
      r.checks.map((c) => [c.description, resultCell(c.violations), c.examples[0] ?? '']),
    ),
  );
  const o = r.ordering;
  ctx.out(
    o.applicable
      ? `Ordering: ${o.description}: ${resultCell(o.violations)}${o.examples.length > 0 ? ` (e.g. ${o.examples.slice(0, 3).join('; ')})` : ''}`
      : 'Ordering: not applicable (unordered namespace: setup --partitions makes it ordered)',
  );
  ctx.out('');
  // Money of different currencies never adds up: one total per currency.
  const holdings = r.totals.byCurrency
    .map((c) => `${formatMinor(BigInt(c.customerBalanceMinor), c.currency)} in ${plural(c.customerAccounts, `${c.currency} account`)}`)
    .join(', ');
  ctx.out(
    `${plural(r.totals.customerAccounts, 'customer account')}${holdings ? ` holding ${holdings}` : ''}; ${plural(r.totals.transactions, 'transaction')} (${r.totals.applied} applied, ${r.totals.rejected} rejected); ${plural(r.totals.entries, 'ledger entry', 'ledger entries')}`,
  );
  const run = r.run;
  if (run) {
    ctx.out('');
    ctx.out(
      `Run ${run.runId} (${run.status}): ${plural(run.expected, 'id')} to account for (requested ${run.requested}, published ${run.published}, confirmed ${run.confirmed}${run.followUps > 0 ? `; card-flow follow-ups ${run.followUps}` : ''})`,
    );
    const reasons = Object.entries(run.rejectedByReason)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    ctx.out(
      table(
        ['where', 'count'],
        [
          ['applied', run.applied],
          ['rejected', run.rejected],
          ['parked', run.parked],
          ['returned unroutable', run.returned],
          ['dropped late (gen --drop-late)', run.dropped],
          // Only runs sent over HTTP (gen --via) have refusals.
          ...(run.refused > 0 ? [['refused by the API (non-2xx or no answer)', run.refused] as [string, number]] : []),
          ['still queued', run.pending],
          ['never published (run cut short)', run.notPublished],
          ['LOST', run.lost],
          ['DUPLICATED', run.duplicated],
        ],
      ),
    );
    if (reasons) ctx.out(`rejected by reason: ${reasons}`);
    if (run.flows) {
      const p = run.flows.planned;
      const holds = Object.entries(run.flows.holds)
        .map(([state, n]) => `${state} ${n}`)
        .join(', ');
      ctx.out(
        `card flows: ${p ? `planned captured ${p.captured}, voided ${p.voided}, expired ${p.expired} of ${p.authorizations} authorizations; ` : ''}` +
          `holds of the run ${holds || 'none'}; ${run.flows.authorizationsRejected} authorizations rejected (no hold)`,
      );
    }
    if (run.instances) {
      const { count, reported, missing } = run.instances;
      ctx.out(
        `instances: ${reported.length} of ${count} reported${missing.length > 0 ? `; not reported: ${missing.map((k) => `${k}/${count}`).join(', ')} (their ids are not accounted for yet)` : ''}`,
      );
    }
    // Each list is labelled by what its ids are known to be; with ids both queued and lost, a missing id may be either.
    if (run.lostExamples.length) ctx.out(`lost, e.g. ${run.lostExamples.join(', ')}`);
    else if (run.queuedExamples.length) ctx.out(`still queued, e.g. ${run.queuedExamples.join(', ')}`);
    else if (run.missingExamples.length) ctx.out(`still queued or lost, e.g. ${run.missingExamples.join(', ')}`);
    if (run.duplicatedExamples.length) ctx.out(`duplicated, e.g. ${run.duplicatedExamples.join(', ')}`);
  }
  if (r.accounting) printAccounting(ctx, r.accounting);
  ctx.out('');
  ctx.out(verdictLine(r));
}

/** `ok`, `1 violation`, `3 violations`. */
function resultCell(violations: number): string {
  return violations === 0 ? 'ok' : plural(violations, 'violation');
}

function printAccounting(ctx: CommandContext, a: AccountingReconciliation): void {
  ctx.out('');
  const state = a.settled
    ? 'drained'
    : a.queued === null
      ? `${a.outboxUnsent} unsent in the outbox; the accounting queue could not be read`
      : `not drained: ${a.outboxUnsent} unsent in the outbox, ${a.queued} queued, ${plural(a.consumers ?? 0, 'consumer')}`;
  ctx.out(`Accounting statements (${state})`);
  ctx.out(
    `${plural(a.outcomes, 'statement line')} expected, ${a.statements} stored; ${a.missing} missing (${a.pending} on their way, ${a.lost} LOST)`,
  );
  ctx.out(
    table(
      ['check', 'result', 'example'],
      a.checks.map((c) => [c.description, resultCell(c.violations), c.examples[0] ?? '']),
    ),
  );
  if (a.lost > 0 && a.missingExamples.length) ctx.out(`without a statement line, e.g. ${a.missingExamples.join(', ')}`);
  if (a.webhooks.pending + a.webhooks.delivered + a.webhooks.failed > 0)
    ctx.out(`webhooks: ${a.webhooks.delivered} delivered, ${a.webhooks.failed} failed, ${a.webhooks.pending} pending`);
  if (a.invalidEvents > 0)
    ctx.out(`${plural(a.invalidEvents, 'delivery was', 'deliveries were')} not accounting events (see accounting_invalid_events)`);
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('prove the books balance and, with --run, that every published id is accounted for exactly once')
    .option('--run <id>', 'run id printed by gen')
    .option(
      '--wait <s>',
      'while a run still has messages queued (or statement lines on their way), re-check for up to this many seconds; exit 7 if they are still pending then',
      '0',
    )
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      '\nExit code 4 on any violation; 7 when, with no violation, ids or statement lines are still on their way when the wait runs out; 3 when RabbitMQ cannot be reached (without --run, after checking the books).\n\nExample:\n  $ txsim verify\n  $ txsim verify --run 5d0c2b8e-6c1f-5a43-9d7e-0f1e2d3c4b5a --wait 60\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (opts: { run?: string; wait: string; json?: boolean }, command: Command) => {
      await handleVerify(contextFor(command), {
        runId: opts.run ?? null,
        json: Boolean(opts.json),
        waitS: parseIntFlag('--wait', opts.wait, 0, 0, 86_400),
        // On a terminal, one line redrawn in place while waiting (erased after); nothing otherwise.
        ...(process.stderr.isTTY
          ? { progress: (line: string | null) => process.stderr.write(line === null ? '\r\x1b[K' : `\r\x1b[K${line}`) }
          : {}),
      });
    });
}
