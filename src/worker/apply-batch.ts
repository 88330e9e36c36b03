import type { Knex } from '../db/knex.js';
import { sqlList, sqlTuple } from '../db/sql-literal.js';
import { withPipelinedTransaction, type PipelinedTransaction } from '../db/with-transaction.js';
import { uuidV5 } from '../domain/ids.js';
import { authorize, type AccountState } from '../domain/ledger.js';
import { parseMinor, toMinor } from '../domain/money.js';
import type { DecodeResult } from '../domain/message-schema.js';
import type { RejectReason, TransactionMessage } from '../domain/transaction.js';

/** One delivery, decoded, as the apply step sees it (no AMQP types: this layer is broker-agnostic). */
export interface Incoming {
  readonly decoded: DecodeResult;
  /** 1-based attempt number of this processing. */
  readonly attempt: number;
  readonly runId: string | null;
}

/** What happened to one message. `recorded` says whether the outcome is in the database. */
export type Outcome =
  | { readonly kind: 'applied'; readonly id: string; readonly message: TransactionMessage; readonly balanceAfterMinor: bigint }
  | { readonly kind: 'rejected'; readonly id: string | null; readonly reason: RejectReason; readonly detail: string; readonly recorded: boolean; readonly message?: TransactionMessage }
  /** The id already has an outcome from the same body: acknowledged, no second effect. */
  | { readonly kind: 'duplicate'; readonly id: string; readonly previous: 'applied' | 'rejected'; readonly previousReason: string | null };

export interface ApplyContext {
  readonly workerId: string;
  readonly now?: () => Date;
}

interface Existing {
  bodyHash: string;
  status: 'applied' | 'rejected';
  reason: string | null;
}

/**
 * Applies a batch of messages in ONE database transaction: locks the customer accounts involved in
 * ascending id order, decides each message in arrival order against the running balances (a reject
 * or a duplicate affects only that message), writes outcome rows, ledger entries, balances and
 * outbox events, and commits once. Any system error rolls the whole batch back and is thrown; the
 * caller then retries messages one by one so a single bad message cannot hold the others back.
 *
 * The batch costs two round trips whatever its size (reads with START TRANSACTION, writes with
 * COMMIT), with SQL built here rather than by knex: per-statement round trips and query building
 * were most of a worker's CPU. `db` must be created with `multipleStatements`.
 */
export async function applyBatch(db: Knex, items: readonly Incoming[], context: ApplyContext): Promise<Outcome[]> {
  return withPipelinedTransaction(db, (trx) => applyInTransaction(trx, items, context));
}

const TRANSACTION_COLUMNS = 'id, run_id, type, account_id, amount_minor, currency, merchant, body_hash, status, reason, detail, balance_after_minor, worker_id, attempts, created_at, processed_at';
const ENTRY_COLUMNS = 'transaction_id, account_id, amount_minor, created_at';
const OUTBOX_COLUMNS = 'event_id, transaction_id, account_id, account_seq, type, amount_minor, currency, outcome, reason, balance_after_minor, created_at';

type LockedAccount = AccountState & { eventSeq: bigint };

async function applyInTransaction(trx: PipelinedTransaction, items: readonly Incoming[], context: ApplyContext): Promise<Outcome[]> {
  const now = context.now?.() ?? new Date();
  const ids = [...new Set(items.map((i) => (i.decoded.ok ? i.decoded.message.id : i.decoded.id)).filter((id): id is string => id !== null))];
  // Locks first, in ascending id order (the one lock order every worker uses: no lock cycles). The
  // idempotency read comes after them: at READ COMMITTED it then sees the outcome of any batch that
  // held those locks before us, so a redelivery racing its original is found here, not by a key clash.
  const accountIds = [...new Set(items.flatMap((i) => (i.decoded.ok ? [i.decoded.message.accountId] : [])))].sort((a, b) => a - b);
  const reads: string[] = [];
  if (accountIds.length > 0) reads.push(`SELECT id, currency, balance_minor, event_seq FROM accounts WHERE id IN (${sqlList(accountIds)}) AND kind = 'customer' ORDER BY id FOR UPDATE`);
  if (ids.length > 0) reads.push(`SELECT id, body_hash, status, reason FROM transactions WHERE id IN (${sqlList(ids)})`);
  const results = await trx.begin(reads);
  const lockedRows = (accountIds.length > 0 ? results[0] : []) as { id: string; currency: string; balance_minor: string; event_seq: string }[];
  const existingRows = (ids.length > 0 ? results[results.length - 1] : []) as { id: string; body_hash: string; status: 'applied' | 'rejected'; reason: string | null }[];

  const accounts = new Map<number, LockedAccount>();
  for (const r of lockedRows) accounts.set(Number(r.id), { id: Number(r.id), currency: r.currency, balanceMinor: parseMinor(r.balance_minor), eventSeq: parseMinor(r.event_seq) });
  const existing = new Map<string, Existing>();
  for (const r of existingRows) existing.set(r.id, { bodyHash: r.body_hash, status: r.status, reason: r.reason });
  const touched = new Set<number>();

  const txRows: string[] = [];
  const entryRows: string[] = [];
  const outboxRows: string[] = [];
  const outcomes: Outcome[] = [];

  const record = (item: Incoming, id: string, fields: { status: 'applied' | 'rejected'; reason?: RejectReason; detail?: string; balanceAfterMinor?: bigint; message?: TransactionMessage }) => {
    const m = fields.message;
    const amountMinor = m ? toMinor(m.amountMinor) : null;
    const balanceAfterMinor = fields.balanceAfterMinor ?? null;
    txRows.push(
      sqlTuple([
        id, item.runId, m?.type ?? null, m?.accountId ?? null, amountMinor, m?.currency ?? null, m?.merchant ?? null, item.decoded.bodyHash,
        fields.status, fields.reason ?? null, fields.detail?.slice(0, 255) ?? null, balanceAfterMinor, context.workerId, item.attempt,
        m ? storableDate(m.createdAt) : null, now,
      ]),
    );
    existing.set(id, { bodyHash: item.decoded.bodyHash, status: fields.status, reason: fields.reason ?? null });
    // The accounting event of this outcome, in the same transaction: it exists iff the outcome committed.
    const account = m ? accounts.get(m.accountId) : undefined;
    let accountSeq: bigint | null = null;
    if (account) {
      accountSeq = account.eventSeq + 1n;
      accounts.set(account.id, { ...account, eventSeq: accountSeq });
      touched.add(account.id);
    }
    outboxRows.push(
      sqlTuple([uuidV5(id, 'outcome'), id, account ? account.id : null, accountSeq, m?.type ?? null, amountMinor, m?.currency ?? null, fields.status, fields.reason ?? null, balanceAfterMinor, now]),
    );
  };
  for (const item of items) {
    const d = item.decoded;
    const id = d.ok ? d.message.id : d.id;
    const prior = id ? existing.get(id) : undefined;
    if (id && prior) {
      outcomes.push(
        prior.bodyHash === d.bodyHash
          ? { kind: 'duplicate', id, previous: prior.status, previousReason: prior.reason }
          : { kind: 'rejected', id, reason: 'duplicate_conflict', detail: `id ${id} already has an outcome (${prior.status}) for a different body`, recorded: false, ...(d.ok ? { message: d.message } : {}) },
      );
      continue;
    }
    if (!d.ok) {
      if (id) record(item, id, { status: 'rejected', reason: 'invalid_message', detail: d.detail });
      outcomes.push({ kind: 'rejected', id, reason: 'invalid_message', detail: d.detail, recorded: id !== null });
      continue;
    }
    const m = d.message;
    const decision = authorize(m, accounts.get(m.accountId));
    if (!decision.ok) {
      record(item, m.id, { status: 'rejected', reason: decision.reason, detail: decision.detail, message: m });
      outcomes.push({ kind: 'rejected', id: m.id, reason: decision.reason, detail: decision.detail, recorded: true, message: m });
      continue;
    }
    const account = accounts.get(m.accountId)!;
    accounts.set(account.id, { ...account, balanceMinor: decision.balanceAfterMinor });
    touched.add(account.id);
    record(item, m.id, { status: 'applied', balanceAfterMinor: decision.balanceAfterMinor, message: m });
    for (const p of decision.postings) entryRows.push(sqlTuple([m.id, p.accountId, p.amountMinor, now]));
    outcomes.push({ kind: 'applied', id: m.id, message: m, balanceAfterMinor: decision.balanceAfterMinor });
  }

  const writes: string[] = [];
  if (txRows.length > 0) writes.push(`INSERT INTO transactions (${TRANSACTION_COLUMNS}) VALUES ${txRows.join(', ')}`);
  if (entryRows.length > 0) writes.push(`INSERT INTO ledger_entries (${ENTRY_COLUMNS}) VALUES ${entryRows.join(', ')}`);
  if (outboxRows.length > 0) writes.push(`INSERT INTO outbox_events (${OUTBOX_COLUMNS}) VALUES ${outboxRows.join(', ')}`);
  if (touched.size > 0) {
    // One statement for every touched account. The rows are locked, so these values are exact; the
    // CHECK constraint is a last guard against an overdraft bug.
    const touchedIds = [...touched].sort((a, b) => a - b);
    const balanceCase = touchedIds.map((id) => `WHEN ${id} THEN ${accounts.get(id)!.balanceMinor}`).join(' ');
    const seqCase = touchedIds.map((id) => `WHEN ${id} THEN ${accounts.get(id)!.eventSeq}`).join(' ');
    writes.push(`UPDATE accounts SET balance_minor = CASE id ${balanceCase} END, event_seq = CASE id ${seqCase} END WHERE id IN (${sqlList(touchedIds)})`);
  }
  await trx.commit(writes);
  return outcomes;
}

/** DATETIME(3) holds years 1000-9999; a valid ISO date outside that is kept as NULL rather than failing the batch. */
function storableDate(iso: string): Date | null {
  const date = new Date(iso);
  const year = date.getUTCFullYear();
  return Number.isNaN(date.getTime()) || year < 1000 || year > 9999 ? null : date;
}
