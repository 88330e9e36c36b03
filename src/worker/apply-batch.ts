import type { Knex } from '../db/knex.js';
import {
  BatchWrites,
  batchReadRows,
  batchReadStatements,
  type AccountUpdate,
  type CaptureRow,
  type HoldRow,
  type LockedAccountRow,
  type RecordedOutcomeRow,
} from '../db/apply-batch-sql.js';
import { withPipelinedTransaction, type PipelinedTransaction } from '../db/with-transaction.js';
import { uuidV5 } from '../domain/ids.js';
import { authorizeCard, refundAwaitsCaptures, type CaptureRef, type Hold } from '../domain/holds.js';
import { authorize, type AccountState } from '../domain/ledger.js';
import { parseMinor, toMinor } from '../domain/money.js';
import type { DecodeResult } from '../domain/message-schema.js';
import type { StageDeclineReason } from '../domain/stage-spec.js';
import { amountOf, type RejectReason, type TransactionMessage } from '../domain/transaction.js';

/** One delivery, decoded, as the apply step sees it (no AMQP types: this layer is broker-agnostic). */
export interface Incoming {
  readonly decoded: DecodeResult;
  /** 1-based attempt number of this processing. */
  readonly attempt: number;
  readonly runId: string | null;
  /** gen's per-account sequence number and the gen instance it counts for (ordering check); absent/null without one. */
  readonly accountSeq?: { readonly seq: number; readonly stream: number } | null;
  /**
   * A simulated processing stage declined this attempt (src/worker/stages.ts): it is recorded as a
   * reject with the stage's reason — unless the id already has an outcome, which stands (a decline
   * never gives an applied transaction a second outcome).
   */
  readonly stageDecline?: { readonly reason: StageDeclineReason; readonly detail: string };
}

/** What happened to one message. `recorded` says whether the outcome is in the database. */
export type Outcome =
  | { readonly kind: 'applied'; readonly id: string; readonly message: TransactionMessage; readonly balanceAfterMinor: bigint }
  | {
      readonly kind: 'rejected';
      readonly id: string | null;
      readonly reason: RejectReason | StageDeclineReason;
      readonly detail: string;
      readonly recorded: boolean;
      readonly message?: TransactionMessage;
    }
  /**
   * A capture, void or refund whose authorization has no hold (yet), or a refund by `authorizationId`
   * above what its still-open hold has captured so far: not recorded, retried through the delay
   * queues while attempts remain (the authorization or a capture may still be on its way); on the
   * last attempt it is decided as it stands (`unknown_authorization`, `refund_exceeds_capture`).
   */
  | { readonly kind: 'deferred'; readonly id: string; readonly detail: string }
  /** The id already has an outcome from the same body: acknowledged, no second effect. */
  | { readonly kind: 'duplicate'; readonly id: string; readonly previous: 'applied' | 'rejected'; readonly previousReason: string | null }
  /**
   * Ordered mode: behind a deferred message in its batch, so not decided (nothing written): the
   * worker applies it after the deferred one, as its partition's order says.
   */
  | { readonly kind: 'held'; readonly id: string | null };

export interface ApplyContext {
  readonly workerId: string;
  /**
   * The worker's attempt limit: a capture, void or refund without its hold (or a refund by
   * `authorizationId` awaiting captures) is deferred (retried) before this attempt and decided as it
   * stands on it. Absent: decided at once.
   */
  readonly attemptsMax?: number;
  readonly now?: () => Date;
  /** Ordered mode: what follows a deferred message in the batch is held (`held`), not decided before it. */
  readonly holdBehindDeferred?: boolean;
}

/** Name of a transfer's destination event in its id (uuidV5(transaction id, this)): the same on every copy. */
export const TRANSFER_CREDIT_EVENT = 'transfer-in';

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
 * COMMIT), with SQL built as text in db/apply-batch-sql.ts rather than by knex: per-statement round
 * trips and query building were most of a worker's CPU. `db` must be created with `multipleStatements`.
 */
export async function applyBatch(db: Knex, items: readonly Incoming[], context: ApplyContext): Promise<Outcome[]> {
  return withPipelinedTransaction(db, (trx) => applyInTransaction(trx, items, context));
}

type LockedAccount = AccountState & { eventSeq: bigint };

const CARD_TYPES: ReadonlySet<string> = new Set(['card_authorization', 'card_capture', 'card_void', 'card_refund']);

function holdOfRow(r: HoldRow): Hold {
  return {
    id: r.id,
    accountId: Number(r.account_id),
    currency: r.currency,
    merchant: r.merchant,
    state: r.state,
    authorizedMinor: parseMinor(r.authorized_minor),
    capturedMinor: parseMinor(r.captured_minor),
    refundedMinor: parseMinor(r.refunded_minor),
    expiresAt: new Date(r.expires_at),
    createdAt: new Date(r.created_at),
  };
}

/** The customer accounts a message touches: its own, and a transfer's destination. */
function accountsOf(m: TransactionMessage): number[] {
  return m.toAccountId === undefined ? [m.accountId] : [m.accountId, m.toAccountId];
}

async function applyInTransaction(trx: PipelinedTransaction, items: readonly Incoming[], context: ApplyContext): Promise<Outcome[]> {
  const ids = [
    ...new Set(items.map((i) => (i.decoded.ok ? i.decoded.message.id : i.decoded.id)).filter((id): id is string => id !== null)),
  ];
  // Locks first, in ascending id order (the one lock order every worker uses: no lock cycles). The
  // idempotency read comes after them: at READ COMMITTED it then sees the outcome of any batch that
  // held those locks before us, so a redelivery racing its original is found here, not by a key clash.
  // A transfer's two accounts join the batch's one ascending lock order like every other account,
  // so transfers A→B and B→A in concurrent batches wait for each other instead of deadlocking.
  const accountIds = [...new Set(items.flatMap((i) => (i.decoded.ok ? accountsOf(i.decoded.message) : [])))].sort((a, b) => a - b);
  // Holds named by captures, voids and refunds; their authorizations' ids join the idempotency read,
  // so a capture of an authorization that was rejected is rejected at once instead of retried.
  const holdIds = [
    ...new Set(
      items.flatMap((i) => (i.decoded.ok && i.decoded.message.authorizationId ? [i.decoded.message.authorizationId.toLowerCase()] : [])),
    ),
  ];
  // Captures named by refunds (`captureId`): read with their holds, and joined to the idempotency
  // read like the authorizations (a refund of a capture that was rejected is rejected at once).
  const captureIds = [
    ...new Set(items.flatMap((i) => (i.decoded.ok && i.decoded.message.captureId ? [i.decoded.message.captureId.toLowerCase()] : []))),
  ];
  const readIds = holdIds.length > 0 || captureIds.length > 0 ? [...new Set([...ids, ...holdIds, ...captureIds])] : ids;
  const results = await trx.begin(batchReadStatements(accountIds, readIds, holdIds, captureIds));
  // The batch's time is read once its locks are held, not before the wait for them: a capture that
  // waited behind another batch is judged against its hold's expiry as it is applied, and the times
  // recorded on an account run in the order of its sequence numbers.
  const now = context.now?.() ?? new Date();
  const batch = new BatchDecisions(batchReadRows(results, accountIds, readIds, holdIds, captureIds), context, now);
  for (const item of items) batch.decide(item);
  await trx.commit(batch.writes.statements(batch.touchedAccounts()));
  return batch.outcomes;
}

/**
 * The decisions of one batch, in arrival order, against the running state of its locked accounts:
 * each message's outcome, and the rows that record it (collected in `writes`).
 */
class BatchDecisions {
  readonly outcomes: Outcome[] = [];
  readonly writes = new BatchWrites();
  /** The locked customer accounts, with the balance and event counter as this batch leaves them so far. */
  private readonly accounts = new Map<number, LockedAccount>();
  /** Outcomes recorded before this batch, and those this batch records. */
  private readonly existing = new Map<string, Existing>();
  private readonly touched = new Set<number>();
  /** Holds read for this batch, and those it creates or changes (as it leaves them so far). */
  private readonly holds = new Map<string, Hold>();
  /** Applied captures refunds may name (read, or applied earlier in this batch), as this batch leaves them. */
  private readonly captures = new Map<string, CaptureRef>();
  private readonly workerId: string;
  /** Ordered mode, after a deferred message: the rest of the batch is held for after it. */
  private holding = false;

  constructor(
    rows: {
      locked: readonly LockedAccountRow[];
      holds: readonly HoldRow[];
      captures: readonly CaptureRow[];
      recorded: readonly RecordedOutcomeRow[];
    },
    private readonly context: ApplyContext,
    private readonly now: Date,
  ) {
    this.workerId = context.workerId;
    for (const r of rows.locked)
      this.accounts.set(Number(r.id), {
        id: Number(r.id),
        currency: r.currency,
        balanceMinor: parseMinor(r.balance_minor),
        heldMinor: parseMinor(r.held_minor),
        eventSeq: parseMinor(r.event_seq),
      });
    for (const h of rows.holds) this.holds.set(h.id, holdOfRow(h));
    for (const c of rows.captures)
      this.captures.set(c.id, {
        id: c.id,
        authorizationId: c.authorization_id,
        capturedMinor: parseMinor(c.amount_minor),
        refundedMinor: parseMinor(c.refunded_minor),
      });
    for (const r of rows.recorded) this.existing.set(r.id, { bodyHash: r.body_hash, status: r.status, reason: r.reason });
  }

  /** One message: a duplicate (or a conflicting one), a poison message, a reject, or applied. */
  decide(item: Incoming): void {
    const d = item.decoded;
    const id = d.ok ? d.message.id : d.id;
    if (this.holding) {
      this.outcomes.push({ kind: 'held', id });
      return;
    }
    const prior = id ? this.existing.get(id) : undefined;
    if (id && prior) {
      this.outcomes.push(
        prior.bodyHash === d.bodyHash
          ? { kind: 'duplicate', id, previous: prior.status, previousReason: prior.reason }
          : {
              kind: 'rejected',
              id,
              reason: 'duplicate_conflict',
              detail: `id ${id} already has an outcome (${prior.status}) for a different body`,
              recorded: false,
              ...(d.ok ? { message: d.message } : {}),
            },
      );
      return;
    }
    if (!d.ok) {
      if (id) this.record(item, id, { status: 'rejected', reason: 'invalid_message', detail: d.detail });
      this.outcomes.push({ kind: 'rejected', id, reason: 'invalid_message', detail: d.detail, recorded: id !== null });
      return;
    }
    const m = d.message;
    // After the duplicate check: an id that already has an outcome keeps it, whatever a stage drew.
    if (item.stageDecline) {
      const { reason, detail } = item.stageDecline;
      this.record(item, m.id, { status: 'rejected', reason, detail, message: m });
      this.outcomes.push({ kind: 'rejected', id: m.id, reason, detail, recorded: true, message: m });
      return;
    }
    if (CARD_TYPES.has(m.type)) return this.decideCard(item, m);
    const decision = authorize(
      m,
      this.accounts.get(m.accountId),
      m.toAccountId === undefined ? undefined : this.accounts.get(m.toAccountId),
    );
    if (!decision.ok) {
      this.record(item, m.id, { status: 'rejected', reason: decision.reason, detail: decision.detail, message: m });
      this.outcomes.push({ kind: 'rejected', id: m.id, reason: decision.reason, detail: decision.detail, recorded: true, message: m });
      return;
    }
    this.setBalance(m.accountId, decision.balanceAfterMinor);
    const toBalanceAfterMinor = decision.toBalanceAfterMinor ?? null;
    if (m.toAccountId !== undefined && toBalanceAfterMinor !== null) this.setBalance(m.toAccountId, toBalanceAfterMinor);
    this.record(item, m.id, { status: 'applied', balanceAfterMinor: decision.balanceAfterMinor, toBalanceAfterMinor, message: m });
    if (m.toAccountId !== undefined && toBalanceAfterMinor !== null) this.recordTransferCredit(m, m.toAccountId, toBalanceAfterMinor);
    for (const p of decision.postings) this.writes.addEntry(m.id, p.accountId, p.amountMinor, this.now);
    this.outcomes.push({ kind: 'applied', id: m.id, message: m, balanceAfterMinor: decision.balanceAfterMinor });
  }

  /**
   * A card authorization, capture, void or refund: decided against the locked account and its hold.
   * A hold that does not exist (yet) defers the message while attempts remain — unless its
   * authorization already has an outcome (then it was rejected and never will have a hold). So does
   * a refund by `authorizationId` above what its hold has captured so far while the hold can still
   * take captures (refundAwaitsCaptures): a capture sent before it may be in a delay queue.
   */
  private decideCard(item: Incoming, m: TransactionMessage): void {
    const captureId = m.captureId?.toLowerCase();
    const byCapture = captureId === undefined ? undefined : this.captures.get(captureId);
    // A refund by capture acts on that capture's hold.
    const authorizationId = byCapture?.authorizationId ?? m.authorizationId?.toLowerCase();
    const hold = authorizationId === undefined ? undefined : this.holds.get(authorizationId);
    // What the message waits for: its authorization's hold, or its capture. Neither recorded yet (no
    // outcome at all, so it may still be on its way): deferred while attempts remain.
    const awaited = captureId ?? authorizationId;
    const missing = captureId !== undefined ? byCapture === undefined : hold === undefined;
    if (m.type !== 'card_authorization' && missing && awaited !== undefined && !this.existing.has(awaited) && this.mayDefer(item)) {
      const what = captureId !== undefined ? 'capture' : 'authorization';
      return this.defer(m.id, `${what} ${awaited} not applied yet (attempt ${item.attempt})`);
    }
    const decision =
      captureId !== undefined && byCapture === undefined
        ? ({
            ok: false,
            reason: 'unknown_authorization',
            detail: `no applied capture ${captureId} on account ${m.accountId}`,
          } as const)
        : authorizeCard(m, this.accounts.get(m.accountId), hold, this.now, byCapture);
    // Decided against the hold as this batch leaves it, under the account's lock, so a refund that
    // waits is judged again each time it comes back: two refunds never take more than was captured.
    // Not in ordered mode: there a capture sent before the refund was decided before it (retried in
    // place, holding its partition), so the answer is already final and waiting would stall the partition.
    if (
      this.context.holdBehindDeferred !== true &&
      !decision.ok &&
      decision.reason === 'refund_exceeds_capture' &&
      hold &&
      refundAwaitsCaptures(m, hold, this.now) &&
      this.mayDefer(item)
    )
      return this.defer(m.id, `${decision.detail}; the hold may still take captures (attempt ${item.attempt})`);
    if (!decision.ok) {
      this.record(item, m.id, {
        status: 'rejected',
        reason: decision.reason,
        detail: decision.detail,
        message: m,
        ...(authorizationId === undefined ? {} : { authorizationId }),
      });
      this.outcomes.push({ kind: 'rejected', id: m.id, reason: decision.reason, detail: decision.detail, recorded: true, message: m });
      return;
    }
    const account = this.accounts.get(m.accountId)!;
    this.accounts.set(account.id, { ...account, balanceMinor: decision.balanceAfterMinor, heldMinor: decision.heldAfterMinor });
    this.touched.add(account.id);
    this.holds.set(decision.hold.id, decision.hold);
    this.writes.addHold({ ...decision.hold, updatedAt: this.now });
    if (decision.capture) {
      this.captures.set(decision.capture.id, decision.capture);
      this.writes.addCaptureRefund({
        captureId: decision.capture.id,
        authorizationId: decision.capture.authorizationId,
        capturedMinor: decision.capture.capturedMinor,
        refundedMinor: decision.capture.refundedMinor,
        updatedAt: this.now,
      });
    }
    // A capture applied here may be refunded by id later in this same batch.
    if (m.type === 'card_capture')
      this.captures.set(m.id, { id: m.id, authorizationId: decision.hold.id, capturedMinor: toMinor(amountOf(m)), refundedMinor: 0n });
    this.record(item, m.id, {
      status: 'applied',
      balanceAfterMinor: decision.balanceAfterMinor,
      message: m,
      ...(authorizationId === undefined ? {} : { authorizationId }),
    });
    for (const p of decision.postings) this.writes.addEntry(m.id, p.accountId, p.amountMinor, this.now);
    this.outcomes.push({ kind: 'applied', id: m.id, message: m, balanceAfterMinor: decision.balanceAfterMinor });
  }

  /** Whether a message may still wait: attempts remain (and the worker has a limit at all). */
  private mayDefer(item: Incoming): boolean {
    const attemptsMax = this.context.attemptsMax;
    return attemptsMax !== undefined && item.attempt < attemptsMax;
  }

  /** Not decided now: nothing recorded, the worker retries it through the delay queues. */
  private defer(id: string, detail: string): void {
    this.outcomes.push({ kind: 'deferred', id, detail });
    this.holding = this.context.holdBehindDeferred === true;
  }

  private setBalance(accountId: number, balanceMinor: bigint): void {
    const account = this.accounts.get(accountId)!;
    this.accounts.set(accountId, { ...account, balanceMinor });
    this.touched.add(accountId);
  }

  /**
   * The destination's accounting event of an applied transfer: a `transfer_in` line on its own
   * statement, numbered in its own sequence, with its balance after. The source's line is the
   * outcome's event (`record`); each account's statement thus shows its side of the transfer.
   */
  private recordTransferCredit(m: TransactionMessage, toAccountId: number, toBalanceAfterMinor: bigint): void {
    const account = this.nextEventSeq(toAccountId)!;
    this.writes.addOutboxEvent({
      eventId: uuidV5(m.id, TRANSFER_CREDIT_EVENT),
      transactionId: m.id,
      accountId: account.id,
      accountSeq: account.eventSeq,
      type: 'transfer_in',
      amountMinor: toMinor(amountOf(m)),
      currency: m.currency,
      outcome: 'applied',
      reason: null,
      balanceAfterMinor: toBalanceAfterMinor,
      createdAt: this.now,
    });
  }

  /** Gives the locked account its next event sequence number; undefined when the account is not locked here. */
  private nextEventSeq(accountId: number): LockedAccount | undefined {
    const account = this.accounts.get(accountId);
    if (!account) return undefined;
    const next = { ...account, eventSeq: account.eventSeq + 1n };
    this.accounts.set(accountId, next);
    this.touched.add(accountId);
    return next;
  }

  /** The touched accounts' new balances and counters, in ascending id order. */
  touchedAccounts(): AccountUpdate[] {
    return [...this.touched]
      .sort((a, b) => a - b)
      .map((id) => {
        const account = this.accounts.get(id)!;
        return { id, balanceMinor: account.balanceMinor, heldMinor: account.heldMinor ?? 0n, eventSeq: account.eventSeq };
      });
  }

  /** The outcome row of a message and, in the same transaction, its accounting event: it exists iff the outcome committed. */
  private record(
    item: Incoming,
    id: string,
    fields: {
      status: 'applied' | 'rejected';
      reason?: RejectReason | StageDeclineReason;
      detail?: string;
      balanceAfterMinor?: bigint;
      toBalanceAfterMinor?: bigint | null;
      message?: TransactionMessage;
      /** The hold acted on, when it is not the message's own `authorizationId` (a refund by capture). */
      authorizationId?: string;
    },
  ): void {
    const m = fields.message;
    const amountMinor = m?.amountMinor === undefined ? null : toMinor(m.amountMinor);
    const balanceAfterMinor = fields.balanceAfterMinor ?? null;
    const reason = fields.reason ?? null;
    this.writes.addOutcome({
      id,
      runId: item.runId,
      accountSeq: item.accountSeq?.seq ?? null,
      seqStream: item.accountSeq?.stream ?? null,
      type: m?.type ?? null,
      accountId: m?.accountId ?? null,
      amountMinor,
      currency: m?.currency ?? null,
      merchant: m?.merchant ?? null,
      toAccountId: m?.toAccountId ?? null,
      toBalanceAfterMinor: fields.toBalanceAfterMinor ?? null,
      authorizationId: fields.authorizationId ?? m?.authorizationId?.toLowerCase() ?? null,
      captureId: m?.captureId?.toLowerCase() ?? null,
      bodyHash: item.decoded.bodyHash,
      status: fields.status,
      reason,
      detail: fields.detail ?? null,
      balanceAfterMinor,
      workerId: this.workerId,
      attempts: item.attempt,
      createdAtIso: m ? m.createdAt : null,
      processedAt: this.now,
    });
    this.existing.set(id, { bodyHash: item.decoded.bodyHash, status: fields.status, reason });
    const account = m ? this.nextEventSeq(m.accountId) : undefined;
    this.writes.addOutboxEvent({
      eventId: uuidV5(id, 'outcome'),
      transactionId: id,
      accountId: account ? account.id : null,
      accountSeq: account ? account.eventSeq : null,
      type: m?.type ?? null,
      amountMinor,
      currency: m?.currency ?? null,
      outcome: fields.status,
      reason,
      balanceAfterMinor,
      createdAt: this.now,
    });
  }
}
