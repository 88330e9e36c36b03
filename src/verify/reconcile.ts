import { isMissingTable } from '../db/rows.js';
import { ACCOUNTING_PREFETCH_MAX } from '../accounting/statements-consumer.js';
import { ACCOUNTING_EVENTS_PER_MESSAGE_MAX } from '../domain/accounting-event.js';
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

/**
 * Reconciles the accounting tables with the ledger. Returns null when the accounting tables do not
 * exist (a database set up before accounting existed; `txsim setup` adds them).
 */
export async function reconcileAccounting(deps: BrokerDeps & { db: Knex }): Promise<AccountingReconciliation | null> {
  try {
    return await reconcile(deps);
  } catch (err) {
    if (isMissingTable(err)) return null;
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
 * by a connected consumer (up to its prefetch; checkQueue counts only ready ones). The queue counts
 * messages, and a message may carry up to ACCOUNTING_EVENTS_PER_MESSAGE_MAX events. Without the
 * broker, every missing line may be. Settled: nothing missing, nothing unsent, nothing queued.
 */
export function pendingOf(p: Pick<Progress, 'queue' | 'outboxUnsent' | 'missing'>): { pending: number; settled: boolean } {
  const messagesBound = p.queue ? p.queue.ready + p.queue.consumers * ACCOUNTING_PREFETCH_MAX : 0;
  const pending = p.queue === null ? p.missing : Math.min(p.missing, p.outboxUnsent + messagesBound * ACCOUNTING_EVENTS_PER_MESSAGE_MAX);
  const settled = p.missing === 0 && p.outboxUnsent === 0 && p.queue !== null && p.queue.ready === 0;
  return { pending, settled };
}

/** How many times reconcile reads the accounting side before it settles for the least it found wrong. */
const RECONCILE_READS_MAX = 5;
const RECONCILE_READ_PAUSE_MS = 400;

/** One read of the accounting side, with the checks run against it. */
interface Reading {
  readonly progress: Progress;
  readonly pending: number;
  readonly settled: boolean;
  readonly checks: CheckResult[];
  /** Missing lines that cannot be on their way (by this read's counts). */
  readonly lost: number;
}

function sameProgress(a: Progress, b: Progress): boolean {
  return (
    a.outcomes === b.outcomes &&
    a.statements === b.statements &&
    a.missing === b.missing &&
    a.outboxUnsent === b.outboxUnsent &&
    a.queue?.ready === b.queue?.ready &&
    a.queue?.consumers === b.queue?.consumers
  );
}

/**
 * Events can still be made while verify reads: after a run, a worker's sweep expires holds, each with
 * an event, and the relay sends them on. One made between two of the reads (the queue, the outbox, the
 * tables) is counted nowhere, so it reads as lost, or as a gap in a settled statement. A line really
 * lost, or a real gap, is there in every read; one in motion is not. So the accounting side is read
 * again (bounded) until a read is clean and nothing moved while it was checked, and otherwise the read
 * with the fewest problems is reported, a "settled" one only if nothing moved during its checks.
 */
async function readReconciled(deps: BrokerDeps & { db: Knex }): Promise<Reading> {
  let best: Reading | null = null;
  for (let reads = 1; reads <= RECONCILE_READS_MAX; reads++) {
    const progress = await readProgress(deps);
    const { pending, settled } = pendingOf(progress);
    const checks = await runChecks(databaseReader(deps.db), reconciliationChecks(settled));
    const still = sameProgress(progress, await readProgress(deps));
    const reading: Reading = { progress, pending, settled, checks, lost: progress.missing - pending };
    const problems = (r: Reading) => r.lost + r.checks.reduce((n, c) => n + c.violations, 0);
    if (still || !settled) {
      if (problems(reading) === 0 && still) return reading;
      if (!best || problems(reading) < problems(best)) best = reading;
    }
    await new Promise((resolve) => setTimeout(resolve, RECONCILE_READ_PAUSE_MS));
  }
  if (best) return best;
  // Settled by every read's counts, yet events kept coming during each one's checks: check it as a side still receiving.
  const progress = await readProgress(deps);
  const { pending } = pendingOf(progress);
  const checks = await runChecks(databaseReader(deps.db), reconciliationChecks(false));
  return { progress, pending, settled: false, checks, lost: progress.missing - pending };
}

async function reconcile(deps: BrokerDeps & { db: Knex }): Promise<AccountingReconciliation> {
  const { db } = deps;
  const { progress, pending, settled, checks, lost } = await readReconciled(deps);
  const webhooks = await webhookCounts(db);
  const invalidEvents = await invalidEventCount(db);
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
