import { storableDate } from '../domain/dates.js';
import { sqlList, sqlTuple } from './sql-literal.js';
import type { StatementResult } from './with-transaction.js';

/**
 * The SQL of the worker's batch (worker/apply-batch.ts decides; this writes it down). A batch is one
 * pipelined transaction of two round trips: the reads go with START TRANSACTION, the writes with
 * COMMIT. The SQL is built here as text rather than by knex: per-statement round trips and query
 * building were most of a worker's CPU. Every value goes through sql-literal.ts's escaping.
 */

/** A locked customer account as the batch reads it (BIGINTs as strings). */
export type LockedAccountRow = { id: string; currency: string; balance_minor: string; held_minor: string; event_seq: string };
/** A hold (v1.1 card authorizations) as the batch reads it. */
export type HoldRow = {
  id: string;
  account_id: string;
  currency: string;
  merchant: string;
  state: 'open' | 'partially_captured' | 'captured' | 'voided' | 'expired';
  authorized_minor: string;
  captured_minor: string;
  refunded_minor: string;
  expires_at: Date;
  created_at: Date;
};
/** An applied capture named by a refund's `captureId`, with what was refunded against it so far. */
export type CaptureRow = { id: string; authorization_id: string; amount_minor: string; refunded_minor: string };
/** An outcome already recorded for one of the batch's ids. */
export type RecordedOutcomeRow = { id: string; body_hash: string; status: 'applied' | 'rejected'; reason: string | null };

const HOLD_COLUMNS = 'id, account_id, currency, merchant, state, authorized_minor, captured_minor, refunded_minor, expires_at, created_at';

/**
 * The batch's reads: its customer accounts locked in ascending id order (`accountIds` sorted by the
 * caller: the one lock order every worker uses), the holds its captures, voids and refunds name
 * (read after the account locks: a hold only changes under its account's lock), then the outcomes
 * already recorded for its ids. Each is left out when its list is empty, so a batch of the older
 * types reads exactly what it always did. Refunds by capture (`captureIds`) add their captures'
 * holds to the holds read and the captures themselves (with what was refunded against each).
 */
export function batchReadStatements(
  accountIds: readonly number[],
  ids: readonly string[],
  holdIds: readonly string[] = [],
  captureIds: readonly string[] = [],
): string[] {
  const reads: string[] = [];
  if (accountIds.length > 0)
    reads.push(
      `SELECT id, currency, balance_minor, held_minor, event_seq FROM accounts WHERE id IN (${sqlList(accountIds)}) AND kind = 'customer' ORDER BY id FOR UPDATE`,
    );
  if (holdIds.length > 0 || captureIds.length > 0) {
    const where = [
      ...(holdIds.length > 0 ? [`id IN (${sqlList(holdIds)})`] : []),
      ...(captureIds.length > 0 ? [`id IN (SELECT authorization_id FROM transactions WHERE id IN (${sqlList(captureIds)}))`] : []),
    ];
    reads.push(`SELECT ${HOLD_COLUMNS} FROM holds WHERE ${where.join(' OR ')}`);
  }
  if (captureIds.length > 0)
    reads.push(
      `SELECT c.id, c.authorization_id, c.amount_minor, COALESCE(r.refunded_minor, 0) AS refunded_minor FROM transactions c ` +
        `LEFT JOIN capture_refunds r ON r.capture_id = c.id WHERE c.id IN (${sqlList(captureIds)}) AND c.type = 'card_capture' AND c.status = 'applied'`,
    );
  if (ids.length > 0) reads.push(`SELECT id, body_hash, status, reason FROM transactions WHERE id IN (${sqlList(ids)})`);
  return reads;
}

/** The rows of `batchReadStatements(accountIds, ids, holdIds, captureIds)`'s results, by statement. */
export function batchReadRows(
  results: readonly StatementResult[],
  accountIds: readonly number[],
  ids: readonly string[],
  holdIds: readonly string[] = [],
  captureIds: readonly string[] = [],
): { locked: LockedAccountRow[]; holds: HoldRow[]; captures: CaptureRow[]; recorded: RecordedOutcomeRow[] } {
  const holdsAt = accountIds.length > 0 ? 1 : 0;
  const readsHolds = holdIds.length > 0 || captureIds.length > 0;
  return {
    locked: (accountIds.length > 0 ? results[0] : []) as LockedAccountRow[],
    holds: (readsHolds ? results[holdsAt] : []) as HoldRow[],
    captures: (captureIds.length > 0 ? results[holdsAt + 1] : []) as CaptureRow[],
    recorded: (ids.length > 0 ? results[results.length - 1] : []) as RecordedOutcomeRow[],
  };
}

/** What was refunded against one capture, as written back after a refund by `captureId`. */
export interface CaptureRefundRecord {
  readonly captureId: string;
  readonly authorizationId: string;
  readonly capturedMinor: bigint;
  readonly refundedMinor: bigint;
  readonly updatedAt: Date;
}

/** A hold as written back: new (an authorization) or changed (a capture, void or refund). */
export interface HoldRecord {
  readonly id: string;
  readonly accountId: number;
  readonly currency: string;
  readonly merchant: string;
  readonly state: HoldRow['state'];
  readonly authorizedMinor: bigint;
  readonly capturedMinor: bigint;
  readonly refundedMinor: bigint;
  readonly expiresAt: Date;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** One outcome row of `transactions`. */
export interface OutcomeRecord {
  readonly id: string;
  readonly runId: string | null;
  readonly type: string | null;
  readonly accountId: number | null;
  readonly amountMinor: bigint | null;
  readonly currency: string | null;
  readonly merchant: string | null;
  /** A transfer's destination (v1.1); null for the other types. */
  readonly toAccountId: number | null;
  /** An applied transfer's destination balance after the credit; null otherwise. */
  readonly toBalanceAfterMinor: bigint | null;
  /** The authorization a capture, void or refund acts on (v1.1); null otherwise. */
  readonly authorizationId: string | null;
  /** The capture a refund by `captureId` refunds; null otherwise. */
  readonly captureId?: string | null;
  readonly bodyHash: string;
  readonly status: 'applied' | 'rejected';
  readonly reason: string | null;
  /** Cut to the column's 255 characters. */
  readonly detail: string | null;
  readonly balanceAfterMinor: bigint | null;
  readonly workerId: string;
  readonly attempts: number;
  /** The message's ISO creation time; kept as NULL when DATETIME(3) cannot hold it. */
  readonly createdAtIso: string | null;
  readonly processedAt: Date;
  /** gen's per-account sequence number and its gen instance (sql/008-ordering.sql); absent = NULL. */
  readonly accountSeq?: number | null;
  readonly seqStream?: number | null;
}

/** One accounting event of `outbox_events`. */
export interface OutboxRecord {
  readonly eventId: string;
  readonly transactionId: string;
  readonly accountId: number | null;
  readonly accountSeq: bigint | null;
  readonly type: string | null;
  readonly amountMinor: bigint | null;
  readonly currency: string | null;
  readonly outcome: 'applied' | 'rejected';
  readonly reason: string | null;
  readonly balanceAfterMinor: bigint | null;
  readonly createdAt: Date;
}

/** The new balance and event counter of one touched (locked) account. */
export interface AccountUpdate {
  readonly id: number;
  readonly balanceMinor: bigint;
  /** Held by open authorizations (v1.1). */
  readonly heldMinor: bigint;
  readonly eventSeq: bigint;
}

const TRANSACTION_COLUMNS =
  'id, run_id, type, account_id, amount_minor, currency, merchant, to_account_id, to_balance_after_minor, authorization_id, capture_id, body_hash, status, reason, detail, balance_after_minor, worker_id, attempts, created_at, processed_at, account_seq, seq_stream';
const ENTRY_COLUMNS = 'transaction_id, account_id, amount_minor, created_at';
const OUTBOX_COLUMNS =
  'event_id, transaction_id, account_id, account_seq, type, amount_minor, currency, outcome, reason, balance_after_minor, created_at';

/** The batch's writes, collected row by row (each row escaped as it comes) and sent as one multi-row INSERT per table. */
export class BatchWrites {
  private readonly transactionRows: string[] = [];
  private readonly entryRows: string[] = [];
  private readonly outboxRows: string[] = [];
  /** Holds by id: a later change in the batch replaces an earlier one (the last state is written). */
  private readonly holdRows = new Map<string, string>();
  /** Refunded-per-capture rows by capture id: the last state is written. */
  private readonly captureRefundRows = new Map<string, string>();

  addCaptureRefund(r: CaptureRefundRecord): void {
    this.captureRefundRows.set(r.captureId, sqlTuple([r.captureId, r.authorizationId, r.capturedMinor, r.refundedMinor, r.updatedAt]));
  }

  addOutcome(r: OutcomeRecord): void {
    this.transactionRows.push(
      sqlTuple([
        r.id,
        r.runId,
        r.type,
        r.accountId,
        r.amountMinor,
        r.currency,
        r.merchant,
        r.toAccountId,
        r.toBalanceAfterMinor,
        r.authorizationId,
        r.captureId ?? null,
        r.bodyHash,
        r.status,
        r.reason,
        r.detail?.slice(0, 255) ?? null,
        r.balanceAfterMinor,
        r.workerId,
        r.attempts,
        r.createdAtIso === null ? null : storableDate(r.createdAtIso),
        r.processedAt,
        r.accountSeq ?? null,
        r.seqStream ?? null,
      ]),
    );
  }

  addEntry(transactionId: string, accountId: number, amountMinor: bigint, createdAt: Date): void {
    this.entryRows.push(sqlTuple([transactionId, accountId, amountMinor, createdAt]));
  }

  addOutboxEvent(r: OutboxRecord): void {
    this.outboxRows.push(
      sqlTuple([
        r.eventId,
        r.transactionId,
        r.accountId,
        r.accountSeq,
        r.type,
        r.amountMinor,
        r.currency,
        r.outcome,
        r.reason,
        r.balanceAfterMinor,
        r.createdAt,
      ]),
    );
  }

  addHold(h: HoldRecord): void {
    this.holdRows.set(
      h.id,
      sqlTuple([
        h.id,
        h.accountId,
        h.currency,
        h.merchant,
        h.state,
        h.authorizedMinor,
        h.capturedMinor,
        h.refundedMinor,
        h.expiresAt,
        h.createdAt,
        h.updatedAt,
      ]),
    );
  }

  /**
   * The statements to send with COMMIT: the inserts, then one UPDATE for every touched account
   * (`accounts` in ascending id order). The rows are locked, so these values are exact; the CHECK
   * constraint is a last guard against an overdraft bug.
   */
  statements(accounts: readonly AccountUpdate[]): string[] {
    const writes: string[] = [];
    if (this.transactionRows.length > 0)
      writes.push(`INSERT INTO transactions (${TRANSACTION_COLUMNS}) VALUES ${this.transactionRows.join(', ')}`);
    if (this.entryRows.length > 0) writes.push(`INSERT INTO ledger_entries (${ENTRY_COLUMNS}) VALUES ${this.entryRows.join(', ')}`);
    if (this.outboxRows.length > 0) writes.push(`INSERT INTO outbox_events (${OUTBOX_COLUMNS}) VALUES ${this.outboxRows.join(', ')}`);
    if (this.holdRows.size > 0)
      writes.push(
        `INSERT INTO holds (${HOLD_COLUMNS}, updated_at) VALUES ${[...this.holdRows.values()].join(', ')} ` +
          'ON DUPLICATE KEY UPDATE state = VALUES(state), captured_minor = VALUES(captured_minor), refunded_minor = VALUES(refunded_minor), updated_at = VALUES(updated_at)',
      );
    if (this.captureRefundRows.size > 0)
      writes.push(
        `INSERT INTO capture_refunds (capture_id, authorization_id, captured_minor, refunded_minor, updated_at) VALUES ${[...this.captureRefundRows.values()].join(', ')} ` +
          'ON DUPLICATE KEY UPDATE refunded_minor = VALUES(refunded_minor), updated_at = VALUES(updated_at)',
      );
    if (accounts.length > 0) {
      const balanceCase = accounts.map((a) => `WHEN ${a.id} THEN ${a.balanceMinor}`).join(' ');
      const seqCase = accounts.map((a) => `WHEN ${a.id} THEN ${a.eventSeq}`).join(' ');
      const heldCase = accounts.map((a) => `WHEN ${a.id} THEN ${a.heldMinor}`).join(' ');
      writes.push(
        `UPDATE accounts SET balance_minor = CASE id ${balanceCase} END, held_minor = CASE id ${heldCase} END, event_seq = CASE id ${seqCase} END WHERE id IN (${sqlList(accounts.map((a) => a.id))})`,
      );
    }
    return writes;
  }
}
