import { findOutcome, findSubmission, type Outcome, type Submission } from '../db/api-submissions.js';
import type { Knex } from '../db/knex.js';
import { attemptsAfter, findFailures, lastFailedAttempt, stateAfter, type FailureRecord } from '../db/transaction-failures.js';
import type { FeedEvent, FeedState } from './feed-hub.js';

/** A failed attempt as the status shows it: which attempt, and the worker's error code and first line. */
export interface AttemptError {
  readonly attempt: number;
  readonly code: string;
  readonly message: string;
  readonly at: string;
}

/** One step of a transaction's timeline; failed attempts carry their attempt number and error. */
export interface TimelineEntry {
  readonly state: FeedState;
  readonly at: string;
  readonly attempt?: number;
  readonly error?: { readonly code: string; readonly message: string };
}

/** Where a transaction is, with the timeline of what is known, as `GET /v1/transactions/{id}` shows it. */
export interface TransactionView {
  readonly id: string;
  readonly status: FeedState;
  readonly accountId: number | null;
  readonly type: string | null;
  readonly amountMinor: string | null;
  readonly currency: string | null;
  readonly balanceAfterMinor: string | null;
  readonly reason: string | null;
  readonly detail: string | null;
  /** The attempt that decided the outcome; while retrying or parked, the attempts that failed so far; null while queued. */
  readonly attempts: number | null;
  /** The latest failed attempt, if any failed (kept after a later success: the timeline has them all). */
  readonly lastError: AttemptError | null;
  readonly destinationAccount: number | null;
  readonly timeline: readonly TimelineEntry[];
}

/**
 * Reads what the database knows of a transaction: the worker's outcome, the failed attempts the
 * workers recorded, and the API's submission. All three are durable, so any server — and one
 * restarted since — answers the same.
 */
export async function readTransactionView(db: Knex, id: string): Promise<TransactionView | null> {
  const [outcome, submission, failures] = await Promise.all([findOutcome(db, id), findSubmission(db, id), findFailures(db, id)]);
  if (!outcome && !submission && failures.length === 0) return null;
  return viewOf(id, outcome ?? null, submission ?? null, failures);
}

/**
 * The view of what is known. The timeline is in the order things happen to a message — accepted,
 * queued, each failed attempt in the order recorded (a replay from the parking queue as `queued`
 * again), the outcome — rather than by timestamp: the times come from different machines' clocks.
 * Without an outcome, the latest record says where the message is (`retrying`, `parked`, or
 * `queued` after a replay).
 */
export function viewOf(
  id: string,
  outcome: Outcome | null,
  submission: Submission | null,
  failures: readonly FailureRecord[] = [],
): TransactionView {
  const timeline: TimelineEntry[] = [];
  if (submission) timeline.push({ state: 'accepted', at: submission.acceptedAt.toISOString() });
  if (submission?.publishedAt) timeline.push({ state: 'queued', at: submission.publishedAt.toISOString() });
  for (const f of failures)
    timeline.push(
      f.state === 'replayed'
        ? { state: 'queued', at: f.failedAt.toISOString() }
        : { state: f.state, at: f.failedAt.toISOString(), attempt: f.attempt, error: { code: f.errorCode, message: f.errorMessage } },
    );
  if (outcome) timeline.push({ state: outcome.status, at: outcome.processedAt.toISOString() });
  const lastRecord = failures.at(-1);
  const lastFailure = lastFailedAttempt(failures);
  // Without an outcome, the latest record says where the message is: a replay put it back in the queue.
  const recorded = lastRecord ? stateAfter(lastRecord) : null;
  const status: FeedState = outcome?.status ?? recorded ?? (submission?.publishedAt ? 'queued' : 'accepted');
  return {
    id,
    status,
    accountId: outcome?.accountId ?? submission?.accountId ?? lastRecord?.accountId ?? null,
    type: outcome?.type ?? submission?.type ?? null,
    amountMinor: (outcome?.amountMinor ?? submission?.amountMinor)?.toString() ?? null,
    currency: outcome?.currency ?? submission?.currency ?? null,
    balanceAfterMinor: outcome?.balanceAfterMinor?.toString() ?? null,
    reason: outcome?.reason ?? null,
    detail: outcome?.detail ?? null,
    attempts: outcome?.attempts ?? (lastRecord ? attemptsAfter(lastRecord) : null),
    lastError: lastFailure
      ? {
          attempt: lastFailure.attempt,
          code: lastFailure.errorCode,
          message: lastFailure.errorMessage,
          at: lastFailure.failedAt.toISOString(),
        }
      : null,
    destinationAccount: submission?.destinationAccount ?? null,
    timeline,
  };
}

/** The feed event of a view's current state (sent at once to a new transaction subscriber). */
export function feedEventOfView(view: TransactionView): FeedEvent {
  const failing = (view.status === 'retrying' || view.status === 'parked') && view.lastError !== null;
  return {
    event: view.status,
    transactionId: view.id,
    accountId: view.accountId,
    type: view.type,
    amountMinor: view.amountMinor,
    currency: view.currency,
    balanceAfterMinor: view.balanceAfterMinor,
    reason: view.reason,
    at: view.timeline.at(-1)?.at ?? new Date().toISOString(),
    ...(failing ? { attempt: view.lastError.attempt, lastError: { code: view.lastError.code, message: view.lastError.message } } : {}),
  };
}
