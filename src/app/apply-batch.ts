import { lockCustomerAccounts } from '../db/accounts.js';
import type { Knex } from '../db/knex.js';
import { withTransaction } from '../db/with-transaction.js';
import { uuidV5 } from '../domain/ids.js';
import { authorize, type Posting } from '../domain/ledger.js';
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
 */
export async function applyBatch(db: Knex, items: readonly Incoming[], context: ApplyContext): Promise<Outcome[]> {
  return withTransaction(db, (trx) => applyInTransaction(trx, items, context));
}

async function applyInTransaction(trx: Knex.Transaction, items: readonly Incoming[], context: ApplyContext): Promise<Outcome[]> {
  const now = context.now?.() ?? new Date();
  const ids = [...new Set(items.map((i) => (i.decoded.ok ? i.decoded.message.id : i.decoded.id)).filter((id): id is string => id !== null))];
  const existing = new Map<string, Existing>();
  if (ids.length > 0) {
    const rows: { id: string; body_hash: string; status: 'applied' | 'rejected'; reason: string | null }[] = await trx('transactions').whereIn('id', ids).select('id', 'body_hash', 'status', 'reason');
    for (const r of rows) existing.set(r.id, { bodyHash: r.body_hash, status: r.status, reason: r.reason });
  }
  const accountIds = items.flatMap((i) => (i.decoded.ok && !existing.has(i.decoded.message.id) ? [i.decoded.message.accountId] : []));
  const accounts = await lockCustomerAccounts(trx, accountIds);
  const touched = new Set<number>();

  const txRows: Record<string, unknown>[] = [];
  const entryRows: Record<string, unknown>[] = [];
  const outboxRows: Record<string, unknown>[] = [];
  const outcomes: Outcome[] = [];

  const record = (item: Incoming, id: string, fields: { status: 'applied' | 'rejected'; reason?: RejectReason; detail?: string; balanceAfterMinor?: bigint; message?: TransactionMessage }) => {
    const m = fields.message;
    txRows.push({
      id,
      run_id: item.runId,
      type: m?.type ?? null,
      account_id: m?.accountId ?? null,
      amount_minor: m ? String(m.amountMinor) : null,
      currency: m?.currency ?? null,
      merchant: m?.merchant ?? null,
      body_hash: item.decoded.bodyHash,
      status: fields.status,
      reason: fields.reason ?? null,
      detail: fields.detail?.slice(0, 255) ?? null,
      balance_after_minor: fields.balanceAfterMinor?.toString() ?? null,
      worker_id: context.workerId,
      attempts: item.attempt,
      created_at: m ? storableDate(m.createdAt) : null,
      processed_at: now,
    });
    existing.set(id, { bodyHash: item.decoded.bodyHash, status: fields.status, reason: fields.reason ?? null });
    // The accounting event of this outcome, in the same transaction: it exists iff the outcome committed.
    const account = m ? accounts.get(m.accountId) : undefined;
    let accountSeq: bigint | null = null;
    if (account) {
      accountSeq = account.eventSeq + 1n;
      accounts.set(account.id, { ...account, eventSeq: accountSeq });
      touched.add(account.id);
    }
    outboxRows.push({
      event_id: uuidV5(id, 'outcome'),
      transaction_id: id,
      account_id: account ? account.id : null,
      account_seq: accountSeq?.toString() ?? null,
      type: m?.type ?? null,
      amount_minor: m ? String(m.amountMinor) : null,
      currency: m?.currency ?? null,
      outcome: fields.status,
      reason: fields.reason ?? null,
      balance_after_minor: fields.balanceAfterMinor?.toString() ?? null,
      created_at: now,
    });
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
    entryRows.push(...decision.postings.map((p: Posting) => ({ transaction_id: m.id, account_id: p.accountId, amount_minor: p.amountMinor.toString(), created_at: now })));
    outcomes.push({ kind: 'applied', id: m.id, message: m, balanceAfterMinor: decision.balanceAfterMinor });
  }

  if (txRows.length > 0) await trx('transactions').insert(txRows);
  if (entryRows.length > 0) await trx('ledger_entries').insert(entryRows);
  if (outboxRows.length > 0) await trx('outbox_events').insert(outboxRows);
  if (touched.size > 0) {
    // One statement for every touched account. The rows are locked, so these values are exact; the
    // CHECK constraint is a last guard against an overdraft bug.
    const ids = [...touched].sort((a, b) => a - b);
    const balanceCase = ids.map(() => 'WHEN ? THEN ?').join(' ');
    const seqCase = ids.map(() => 'WHEN ? THEN ?').join(' ');
    const bindings: (string | number)[] = [];
    for (const id of ids) bindings.push(id, accounts.get(id)!.balanceMinor.toString());
    for (const id of ids) bindings.push(id, accounts.get(id)!.eventSeq.toString());
    await trx.raw(
      `UPDATE accounts SET balance_minor = CASE id ${balanceCase} END, event_seq = CASE id ${seqCase} END WHERE id IN (${ids.map(() => '?').join(',')})`,
      [...bindings, ...ids],
    );
  }
  return outcomes;
}

/** DATETIME(3) holds years 1000-9999; a valid ISO date outside that is kept as NULL rather than failing the batch. */
function storableDate(iso: string): Date | null {
  const date = new Date(iso);
  const year = date.getUTCFullYear();
  return Number.isNaN(date.getTime()) || year < 1000 || year > 9999 ? null : date;
}
