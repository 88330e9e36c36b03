import { isMissingTable } from './rows.js';
import type { Knex } from './knex.js';

/**
 * Storage of failed attempts (`transaction_failures`, sql/004-transaction-failures.sql): the worker
 * appends one row per retried or parked attempt, `txsim replay-dead` one per parked message it put
 * back (`replayed`, sql/011), and the status reads (`GET /v1/transactions/{id}`, `txsim tx show`)
 * read them back as the timeline of a transaction that has no outcome yet, or had retries before
 * it got one.
 */

/** `replayed`: put back from the parking queue by `txsim replay-dead` (its attempt is the one it was parked after). */
export type FailureState = 'retrying' | 'parked' | 'replayed';

export interface FailureRecord {
  readonly transactionId: string;
  readonly state: FailureState;
  readonly accountId: number | null;
  readonly attempt: number;
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly workerId: string;
  readonly failedAt: Date;
}

interface RawFailure {
  transaction_id: string;
  state: FailureState;
  account_id: string | null;
  attempt: number;
  error_code: string;
  error_message: string;
  worker_id: string;
  failed_at: Date;
}

/** Where a record leaves a message that has no outcome: in a delay queue, parked, or queued again after a replay. */
export function stateAfter(record: FailureRecord): 'retrying' | 'parked' | 'queued' {
  return record.state === 'replayed' ? 'queued' : record.state;
}

/** The failed attempts a message has behind it after a record: none after a replay, which starts the count again. */
export function attemptsAfter(record: FailureRecord): number | null {
  return record.state === 'replayed' ? null : record.attempt;
}

/** The latest record of an attempt that failed (a replay is not one); undefined when none failed. */
export function lastFailedAttempt(records: readonly FailureRecord[]): FailureRecord | undefined {
  for (let i = records.length - 1; i >= 0; i--) if (records[i]!.state !== 'replayed') return records[i];
  return undefined;
}

/** Most failures one read returns (the newest): attempts are bounded, replays by an operator are not. */
export const FAILURES_READ_MAX = 100;

/** Appends failed attempts in one multi-row INSERT (the worker batches what failed meanwhile). */
export async function insertFailures(db: Knex, records: readonly FailureRecord[]): Promise<void> {
  if (records.length === 0) return;
  await db('transaction_failures').insert(
    records.map((r) => ({
      transaction_id: r.transactionId,
      state: r.state,
      account_id: r.accountId,
      attempt: r.attempt,
      error_code: r.errorCode,
      error_message: r.errorMessage,
      worker_id: r.workerId,
      failed_at: r.failedAt,
    })),
  );
}

/**
 * The failed attempts of one transaction, oldest first (at most the newest FAILURES_READ_MAX). A
 * database set up before this table existed has none to show: that reads as no failures, not as an
 * error of every status read (`txsim setup` adds the table).
 */
export async function findFailures(db: Knex, transactionId: string): Promise<FailureRecord[]> {
  let rows: RawFailure[];
  try {
    rows = await db('transaction_failures')
      .where('transaction_id', transactionId)
      .orderBy('seq', 'desc')
      .limit(FAILURES_READ_MAX)
      .select<RawFailure[]>('transaction_id', 'state', 'account_id', 'attempt', 'error_code', 'error_message', 'worker_id', 'failed_at');
  } catch (err) {
    if (isMissingTable(err)) return [];
    throw err;
  }
  return rows.reverse().map((r) => ({
    transactionId: r.transaction_id,
    state: r.state,
    accountId: r.account_id === null ? null : Number(r.account_id),
    attempt: Number(r.attempt),
    errorCode: r.error_code,
    errorMessage: r.error_message,
    workerId: r.worker_id,
    failedAt: r.failed_at,
  }));
}
