import type { Knex } from './knex.js';

/** Storage of what the API accepted (`api_submissions`) and the outcome reads behind transaction status. */

export interface Submission {
  readonly id: string;
  readonly bodyHash: string;
  readonly accountId: number;
  readonly type: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly destinationAccount: number | null;
  readonly source: 'api' | 'webhook';
  readonly tokenId: string | null;
  readonly acceptedAt: Date;
  readonly publishedAt: Date | null;
}

interface RawSubmission {
  id: string;
  body_hash: string;
  account_id: string;
  type: string;
  amount_minor: string;
  currency: string;
  destination_account: string | null;
  source: 'api' | 'webhook';
  token_id: string | null;
  accepted_at: Date;
  published_at: Date | null;
}

function submissionOfRow(r: RawSubmission): Submission {
  return {
    id: r.id,
    bodyHash: r.body_hash,
    accountId: Number(r.account_id),
    type: r.type,
    amountMinor: BigInt(r.amount_minor),
    currency: r.currency,
    destinationAccount: r.destination_account === null ? null : Number(r.destination_account),
    source: r.source,
    tokenId: r.token_id,
    acceptedAt: r.accepted_at,
    publishedAt: r.published_at,
  };
}

/**
 * Records a submission unless its id is already known. Returns the stored row and whether this call
 * created it: a caller that finds an existing row compares body hashes (same → current status,
 * different → conflict). INSERT IGNORE makes two concurrent identical requests safe: one inserts,
 * both read the same row.
 */
export async function claimSubmission(
  db: Knex,
  submission: Omit<Submission, 'publishedAt'>,
): Promise<{ created: boolean; row: Submission }> {
  const [result] = (await db.raw(
    `INSERT IGNORE INTO api_submissions (id, body_hash, account_id, type, amount_minor, currency, destination_account, source, token_id, accepted_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      submission.id,
      submission.bodyHash,
      submission.accountId,
      submission.type,
      submission.amountMinor.toString(),
      submission.currency,
      submission.destinationAccount,
      submission.source,
      submission.tokenId,
      submission.acceptedAt,
    ],
  )) as [{ affectedRows: number }];
  // Inserted: the row is what was given (one round trip saved on the hot path). Ignored: read the original.
  if (result.affectedRows === 1) return { created: true, row: { ...submission, publishedAt: null } };
  const row = await findSubmission(db, submission.id);
  if (!row) throw new Error(`submission ${submission.id} vanished after insert`);
  return { created: false, row };
}

export async function findSubmission(db: Knex, id: string): Promise<Submission | undefined> {
  const row = (await db('api_submissions').where('id', id).first()) as RawSubmission | undefined;
  return row ? submissionOfRow(row) : undefined;
}

/** The account of each of `ids` that has a submission (one primary-key read per id, in one query). */
export async function findSubmissionAccounts(db: Knex, ids: readonly string[]): Promise<Map<string, number>> {
  const rows = await db('api_submissions').whereIn('id', ids).select<{ id: string; account_id: string | number }[]>('id', 'account_id');
  return new Map(rows.map((r) => [r.id, Number(r.account_id)]));
}

/** Marks a submission published: the broker confirmed its message. Only the first confirm's time is kept. */
export async function markPublished(db: Knex, id: string, now: Date = new Date()): Promise<void> {
  await db('api_submissions').where('id', id).whereNull('published_at').update({ published_at: now });
}

/** The worker's outcome of a transaction (`transactions`), as the API shows it. */
export interface Outcome {
  readonly id: string;
  readonly status: 'applied' | 'rejected';
  readonly type: string | null;
  readonly accountId: number | null;
  readonly amountMinor: bigint | null;
  readonly currency: string | null;
  readonly bodyHash: string;
  readonly reason: string | null;
  readonly detail: string | null;
  readonly balanceAfterMinor: bigint | null;
  readonly attempts: number;
  readonly workerId: string;
  readonly createdAt: Date | null;
  readonly processedAt: Date;
}

export interface RawOutcome {
  id: string;
  status: 'applied' | 'rejected';
  type: string | null;
  account_id: string | null;
  amount_minor: string | null;
  currency: string | null;
  body_hash: string;
  reason: string | null;
  detail: string | null;
  balance_after_minor: string | null;
  attempts: number;
  worker_id: string;
  created_at: Date | null;
  processed_at: Date;
}

export const OUTCOME_COLUMNS = [
  'id',
  'status',
  'type',
  'account_id',
  'amount_minor',
  'currency',
  'body_hash',
  'reason',
  'detail',
  'balance_after_minor',
  'attempts',
  'worker_id',
  'created_at',
  'processed_at',
];

export function outcomeOfRow(r: RawOutcome): Outcome {
  return {
    id: r.id,
    status: r.status,
    type: r.type,
    accountId: r.account_id === null ? null : Number(r.account_id),
    amountMinor: r.amount_minor === null ? null : BigInt(r.amount_minor),
    currency: r.currency,
    bodyHash: r.body_hash,
    reason: r.reason,
    detail: r.detail,
    balanceAfterMinor: r.balance_after_minor === null ? null : BigInt(r.balance_after_minor),
    attempts: Number(r.attempts),
    workerId: r.worker_id,
    createdAt: r.created_at,
    processedAt: r.processed_at,
  };
}

export async function findOutcome(db: Knex, id: string): Promise<Outcome | undefined> {
  const row = await db('transactions').where('id', id).first<RawOutcome | undefined>(OUTCOME_COLUMNS);
  return row ? outcomeOfRow(row) : undefined;
}
