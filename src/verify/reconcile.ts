import { ACCOUNTING_PREFETCH_MAX } from '../accounting/statements-consumer.js';
import type { Knex } from '../db/knex.js';
import {
  invalidEventCount,
  missingStatementCount,
  missingStatementIds,
  outcomesWithEventCount,
  REPEATED_STATEMENTS,
  STATEMENT_BALANCES_OFF_LEDGER,
  statementLineCount,
  statementSequenceBreaks,
  STATEMENTS_OFF_OUTCOME,
  STATEMENTS_WITHOUT_OUTCOME,
  unsentOutboxCount,
  webhookCounts,
} from '../db/reconcile-queries.js';
import { accountingQueueState, type BrokerDeps } from './broker-counts.js';
import { databaseReader, defineCheck, EXAMPLES, runChecks, type AnyCheck, type CheckResult } from './checks.js';

/**
 * Reconciliation of the accounting side against the ledger, for `txsim verify`: every recorded
 * outcome has exactly one statement line, each line says what the ledger says, every account's
 * sequence numbers are 1..n without repeats, and the balance on a complete statement equals the
 * ledger's. An outcome without a line is only a loss once nothing is left on the way to the
 * accounting side: unsent in the outbox, ready in the queue, or held by a connected consumer.
 */
export interface AccountingReconciliation {
  /** No violation and nothing lost (events still on their way are not violations). */
  readonly ok: boolean;
  /** Drained and complete: nothing unsent, nothing queued, no outcome without its line. */
  readonly settled: boolean;
  /**
   * Statement lines the recorded outcomes should have: one per transaction except openings, and a
   * second (`transfer_in`, on the destination's statement) for each applied transfer.
   */
  readonly outcomes: number;
  readonly statements: number;
  /** Outbox events not yet published. */
  readonly outboxUnsent: number;
  /** Events ready in the accounting queue; null when the broker could not be asked. */
  readonly queued: number | null;
  /** Consumers on the accounting queue; null when the broker could not be asked. */
  readonly consumers: number | null;
  /** Expected statement lines not stored … */
  readonly missing: number;
  /** … of which may still be on their way … */
  readonly pending: number;
  /** … and of which cannot be anywhere any more. */
  readonly lost: number;
  readonly missingExamples: string[];
  readonly checks: CheckResult[];
  readonly webhooks: { readonly pending: number; readonly delivered: number; readonly failed: number };
  /** Deliveries that were not accounting events (kept in accounting_invalid_events). */
  readonly invalidEvents: number;
}

const ER_NO_SUCH_TABLE = 1146;

/**
 * Reconciles the accounting tables with the ledger. Returns null when the accounting tables do not
 * exist (a database set up before accounting existed; `txsim setup` adds them).
 */
export async function reconcileAccounting(deps: BrokerDeps & { db: Knex }): Promise<AccountingReconciliation | null> {
  try {
    return await reconcile(deps);
  } catch (err) {
    if ((err as { errno?: number }).errno === ER_NO_SUCH_TABLE) return null;
    throw err;
  }
}

/**
 * The statements' invariants. Sequence numbers are never repeated, never beyond the account's
 * counter, and — once everything has arrived (`settled`) — exactly 1..event_seq.
 */
export function reconciliationChecks(settled: boolean): readonly AnyCheck[] {
  return [
    defineCheck({
      name: 'statement_once_per_outcome',
      description: 'no outcome has more than one statement line of a type (a transfer has one per account)',
      query: REPEATED_STATEMENTS,
      example: (r) => `${r.transaction_id} has ${r.c} lines`,
    }),
    defineCheck({
      name: 'statement_has_outcome',
      description: 'every statement line belongs to a recorded outcome',
      query: STATEMENTS_WITHOUT_OUTCOME,
      example: (r) => `event ${r.event_id}: no transaction ${r.transaction_id}`,
    }),
    defineCheck({
      name: 'statement_matches_outcome',
      description: 'each statement line says what the ledger recorded (outcome, reason, amount, balance after)',
      query: STATEMENTS_OFF_OUTCOME,
      example: (r) =>
        `${r.transaction_id}: statement ${r.outcome} ${r.balance_after_minor ?? '-'}, ledger ${r.status} ${r.ledger_balance ?? '-'}`,
    }),
    defineCheck({
      name: 'statement_sequence',
      description: settled
        ? "each account's statement numbers run 1..n without gaps or repeats"
        : "no account's statement repeats or skips ahead of a number",
      query: statementSequenceBreaks(settled),
      example: (r) =>
        `account ${r.account_id}: ${r.c} lines, ${r.d} distinct numbers, highest #${r.m}, account counter ${r.event_seq ?? 'none'}`,
    }),
    defineCheck({
      name: 'statement_balance_equals_ledger',
      description: "a complete statement's last balance equals the account's ledger balance",
      query: STATEMENT_BALANCES_OFF_LEDGER,
      example: (r) => `account ${r.id}: statement ${r.balance_after_minor}, ledger ${r.ledger}`,
    }),
  ];
}

/** How far the events have got: what is stored, what is still on its way. */
interface Progress {
  readonly queue: { ready: number; consumers: number } | null;
  readonly outboxUnsent: number;
  readonly outcomes: number;
  readonly statements: number;
  readonly missing: number;
  readonly missingExamples: string[];
}

async function readProgress(deps: BrokerDeps & { db: Knex }): Promise<Progress> {
  const { db } = deps;
  // The queue first, the tables after: an event the consumer stores in between is then seen as
  // stored rather than as neither queued nor stored.
  const queue = await accountingQueueState(deps);
  const outboxUnsent = await unsentOutboxCount(db);
  const outcomes = await outcomesWithEventCount(db);
  const statements = await statementLineCount(db);
  const missing = await missingStatementCount(db);
  const missingExamples = await missingStatementIds(db, EXAMPLES);
  return { queue, outboxUnsent, outcomes, statements, missing, missingExamples };
}

/**
 * Missing lines that may still be on their way: unsent in the outbox, ready in the queue, or held
 * by a connected consumer (up to its prefetch; checkQueue counts only ready ones). Without the
 * broker, every missing line may be. Settled: nothing missing, nothing unsent, nothing queued.
 */
export function pendingOf(p: Pick<Progress, 'queue' | 'outboxUnsent' | 'missing'>): { pending: number; settled: boolean } {
  const heldBound = p.queue ? p.queue.consumers * ACCOUNTING_PREFETCH_MAX : 0;
  const pending = p.queue === null ? p.missing : Math.min(p.missing, p.outboxUnsent + p.queue.ready + heldBound);
  const settled = p.missing === 0 && p.outboxUnsent === 0 && p.queue !== null && p.queue.ready === 0;
  return { pending, settled };
}

/** Reads of a settled accounting side that a new event overtook before they are given up as settled. */
const SETTLED_READS_MAX = 3;

async function reconcile(deps: BrokerDeps & { db: Knex }): Promise<AccountingReconciliation> {
  const { db } = deps;
  let progress = await readProgress(deps);
  let { pending, settled } = pendingOf(progress);
  let checks: CheckResult[] = await runChecks(databaseReader(db), reconciliationChecks(settled));
  // Settled means every account's statement runs 1..its counter, but events can still be made after the
  // run: a worker's sweep expiring a hold bumps the counter and writes an event in the background. One
  // made between the progress read and the checks is not a gap: read again; if events keep coming, check
  // as for a side still receiving (no number repeated or beyond the counter), which they are.
  for (let reads = 1; settled; reads++) {
    const after = await readProgress(deps);
    if (pendingOf(after).settled && after.outcomes === progress.outcomes && after.statements === progress.statements) break;
    progress = after;
    ({ pending, settled } = pendingOf(after));
    if (reads >= SETTLED_READS_MAX) settled = false;
    checks = await runChecks(databaseReader(db), reconciliationChecks(settled));
  }
  const webhooks = await webhookCounts(db);
  const invalidEvents = await invalidEventCount(db);
  const lost = progress.missing - pending;
  return {
    ok: lost === 0 && checks.every((c) => c.violations === 0),
    settled,
    outcomes: progress.outcomes,
    statements: progress.statements,
    outboxUnsent: progress.outboxUnsent,
    queued: progress.queue?.ready ?? null,
    consumers: progress.queue?.consumers ?? null,
    missing: progress.missing,
    pending,
    lost,
    missingExamples: progress.missingExamples,
    checks,
    webhooks,
    invalidEvents,
  };
}
