import { findOutcome, findSubmission, type Outcome, type Submission } from '../db/api-submissions.js';
import type { Knex } from '../db/knex.js';
import type { FeedEvent, FeedState } from './feed-hub.js';

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
  readonly attempts: number | null;
  readonly destinationAccount: number | null;
  readonly timeline: readonly { readonly state: FeedState; readonly at: string }[];
}

/** Reads what the database knows of a transaction: the worker's outcome, else the API's submission. */
export async function readTransactionView(db: Knex, id: string): Promise<TransactionView | null> {
  const [outcome, submission] = await Promise.all([findOutcome(db, id), findSubmission(db, id)]);
  if (!outcome && !submission) return null;
  return viewOf(id, outcome ?? null, submission ?? null);
}

export function viewOf(id: string, outcome: Outcome | null, submission: Submission | null): TransactionView {
  const timeline: { state: FeedState; at: string }[] = [];
  if (submission) timeline.push({ state: 'accepted', at: submission.acceptedAt.toISOString() });
  if (submission?.publishedAt) timeline.push({ state: 'queued', at: submission.publishedAt.toISOString() });
  if (outcome) timeline.push({ state: outcome.status, at: outcome.processedAt.toISOString() });
  const status: FeedState = outcome ? outcome.status : submission?.publishedAt ? 'queued' : 'accepted';
  return {
    id,
    status,
    accountId: outcome?.accountId ?? submission?.accountId ?? null,
    type: outcome?.type ?? submission?.type ?? null,
    amountMinor: (outcome?.amountMinor ?? submission?.amountMinor)?.toString() ?? null,
    currency: outcome?.currency ?? submission?.currency ?? null,
    balanceAfterMinor: outcome?.balanceAfterMinor?.toString() ?? null,
    reason: outcome?.reason ?? null,
    detail: outcome?.detail ?? null,
    attempts: outcome?.attempts ?? null,
    destinationAccount: submission?.destinationAccount ?? null,
    timeline,
  };
}

/** The feed event of a view's current state (sent at once to a new transaction subscriber). */
export function feedEventOfView(view: TransactionView): FeedEvent {
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
  };
}
