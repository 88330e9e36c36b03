import { claimSubmission, findOutcome, markPublished } from '../db/api-submissions.js';
import type { Knex } from '../db/knex.js';
import { beyondSchemaDetail, identityHash, validateTransaction } from '../domain/message-schema.js';
import type { TransactionMessage } from '../domain/transaction.js';
import { ApiError, forbidden, invalid, violationsOf } from './api-error.js';
import { FINAL_STATES, type FeedHub } from './feed-hub.js';
import { mayActFor, type Principal } from './principal.js';
import { readTransactionView, viewOf, type TransactionView } from './transaction-status.js';
import { BrokerUnavailableError, type TransactionPublisher } from './transaction-publisher.js';

export interface SubmitDeps {
  readonly db: Knex;
  readonly publisher: TransactionPublisher;
  readonly hub: FeedHub;
}

export interface Submission {
  readonly message: TransactionMessage;
  readonly source: 'api' | 'webhook';
  readonly destinationAccount: number | null;
  /** `x-txsim-run` for the message, so `verify --run` accounts for a run sent over HTTP. */
  readonly runId: string | null;
}

/** Seconds a client should wait before trying again after a 503. */
export const RETRY_AFTER_S = 5;

/**
 * Accepts one transaction: authorize, deduplicate by id, publish with confirm, record. Answers 202
 * only once the broker confirmed; the same id with the same body answers its current status (200
 * once final, else 202) and publishes nothing new — unless its earlier publish never got confirmed,
 * in which case it is published again (a duplicate is harmless: the workers deduplicate by id). The
 * same id with a different body is a 409, whether the first came through the API or from gen.
 */
export async function submitTransaction(
  deps: SubmitDeps,
  principal: Principal,
  submission: Submission,
): Promise<{ statusCode: 200 | 202; view: TransactionView }> {
  const { message } = submission;
  // The route schema checked the shape; this is the contract's own validator, as the worker runs it.
  if (!validateTransaction(message))
    throw new ApiError(
      400,
      'invalid_request',
      'the transaction does not match contract v1',
      violationsOf(validateTransaction.errors ?? []),
    );
  const beyond = beyondSchemaDetail(message);
  if (beyond !== null) throw invalid(beyond, [{ path: '/expiresAt', message: 'is not a time the ledger can keep' }]);
  if (!mayActFor(principal, message.accountId)) throw forbidden(`this token may not submit transactions for account ${message.accountId}`);
  const bodyHash = identityHash(message);
  // One answer for every conflict, whoever's the existing transaction is: it names neither its
  // account nor what differs. (That the id is taken cannot be hidden — the id is refused — but ids
  // are random or keyed, so only their owner knows them.)
  const conflict = () => new ApiError(409, 'conflict', `transaction ${message.id} exists with a different body`, { id: message.id });

  // Both reads at once: the common case (a new id) then costs one round trip before the publish.
  // When an outcome exists (an id gen sent first), the submission row written beside it is inert:
  // the outcome decides every answer for that id.
  const [outcome, { created, row }] = await Promise.all([
    findOutcome(deps.db, message.id),
    claimSubmission(deps.db, {
      id: message.id,
      bodyHash,
      accountId: message.accountId,
      type: message.type,
      // A card_void carries no amount (it releases what remains of its hold): recorded as 0.
      amountMinor: BigInt(message.amountMinor ?? 0),
      currency: message.currency,
      destinationAccount: submission.destinationAccount,
      source: submission.source,
      tokenId: principal.tokenId,
      acceptedAt: new Date(),
    }),
  ]);
  if (outcome && outcome.bodyHash !== bodyHash) throw conflict();
  // The webhook's destination is no field of contract v1, so not in the hash: compared on its own, with
  // a row of the same body (one of another body is inert when an outcome exists, else a conflict below).
  if (!created && row.bodyHash === bodyHash && row.destinationAccount !== submission.destinationAccount) throw conflict();
  if (outcome) return currentStatus(deps.db, message.id);
  if (!created && row.bodyHash !== bodyHash) throw conflict();
  if (!created && row.publishedAt) return currentStatus(deps.db, message.id);

  try {
    await deps.publisher.publish(message, submission.runId);
  } catch (err) {
    if (!(err instanceof BrokerUnavailableError)) throw err;
    throw new ApiError(
      503,
      'broker_unavailable',
      `${err.message}; not queued — send the same request (same id) again later`,
      { reason: err.reason },
      RETRY_AFTER_S,
    );
  }
  // Subscribers on this server hear of it at once, before a worker can have applied it; the outcome
  // reaches every server through the accounting exchange.
  const confirmedAt = new Date();
  deps.hub.publish({
    event: 'queued',
    transactionId: message.id,
    accountId: message.accountId,
    type: message.type,
    amountMinor: String(message.amountMinor ?? 0),
    currency: message.currency,
    balanceAfterMinor: null,
    reason: null,
    at: confirmedAt.toISOString(),
  });
  await markPublished(deps.db, message.id, confirmedAt);
  // Where it is as of the confirm (a worker may be faster than any read: GET shows what happened since).
  return { statusCode: 202, view: viewOf(message.id, null, { ...row, publishedAt: confirmedAt }) };
}

async function currentStatus(db: Knex, id: string): Promise<{ statusCode: 200 | 202; view: TransactionView }> {
  const view = await readTransactionView(db, id);
  if (!view) throw new Error(`transaction ${id} has a record but no view`);
  return { statusCode: FINAL_STATES.has(view.status) ? 200 : 202, view };
}
