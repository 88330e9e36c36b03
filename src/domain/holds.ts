import { systemAccountId, type AccountState, type Posting } from './ledger.js';
import { toMinor } from './money.js';
import { amountOf, DEFAULT_HOLD_MS, type RejectReason, type TransactionMessage } from './transaction.js';

/**
 * Two-phase card payments (contract v1.1): an authorization reserves money on an account as a hold,
 * without posting anything; captures post what the merchant takes (several partial captures until
 * the hold is used up, or a `final` one that releases the rest); a void releases what remains;
 * refunds credit back at most what was captured. Pure, like authorize(): the caller holds the
 * account's row lock, and every change of a hold happens under it.
 */

export type HoldState = 'open' | 'partially_captured' | 'captured' | 'voided' | 'expired';

export interface Hold {
  /** The authorization's transaction id. */
  readonly id: string;
  readonly accountId: number;
  readonly currency: string;
  readonly merchant: string;
  readonly state: HoldState;
  readonly authorizedMinor: bigint;
  readonly capturedMinor: bigint;
  readonly refundedMinor: bigint;
  readonly expiresAt: Date;
  readonly createdAt: Date;
}

/**
 * How long after its `expiresAt` an open hold may still be open: the workers sweep expired holds
 * every second by default (`worker --expire-every`), a few per tick each, so a hold is released
 * within about a second of its expiry unless a backlog builds up. `verify` allows this much (and
 * names it) before it counts an open hold past its expiry as a violation.
 */
export const HOLD_EXPIRY_GRACE_MS = 60_000;

/** A capture as a refund by `captureId` sees it: what it took and what was refunded against it. */
export interface CaptureRef {
  /** The capture's transaction id. */
  readonly id: string;
  /** The hold (authorization id) it captured from. */
  readonly authorizationId: string;
  readonly capturedMinor: bigint;
  readonly refundedMinor: bigint;
}

/** What a hold still reserves: the uncaptured rest while it is open, nothing once closed. */
export function heldBy(hold: Hold): bigint {
  return hold.state === 'open' || hold.state === 'partially_captured' ? hold.authorizedMinor - hold.capturedMinor : 0n;
}

/**
 * Whether a refund by `authorizationId` that does not fit what its hold has captured so far may be
 * waited for rather than rejected `refund_exceeds_capture` at once: a capture sent before it may
 * still be on its way (in a delay queue because its authorization came late, or retried after a
 * deadlock), and refusing the refund then would lose it although the producer sent it in order.
 * Only while the hold can still take captures — open or partially captured and before its
 * `expiresAt` (the rule captures are judged by) — and only if the refund would fit were the rest of
 * the hold captured; a voided, expired or fully (or finally) captured hold never gains captures, so
 * its answer is final. A refund by `captureId` waits for its capture by id instead (the caller).
 * The caller still bounds the wait by the attempt limit and decides again, under the account lock,
 * each time the refund comes back, so two refunds never take more than was captured between them.
 */
export function refundAwaitsCaptures(message: TransactionMessage, hold: Hold, now: Date): boolean {
  if (message.type !== 'card_refund' || message.captureId !== undefined) return false;
  if ((hold.state !== 'open' && hold.state !== 'partially_captured') || hold.expiresAt.getTime() <= now.getTime()) return false;
  const amount = toMinor(amountOf(message));
  return amount > hold.capturedMinor - hold.refundedMinor && amount <= hold.authorizedMinor - hold.refundedMinor;
}

type HoldReason = Exclude<RejectReason, 'invalid_message' | 'duplicate_conflict'>;

export type CardDecision =
  | {
      readonly ok: true;
      /** Posted balance after (unchanged by an authorization or a void). */
      readonly balanceAfterMinor: bigint;
      readonly heldAfterMinor: bigint;
      /** Entries to post: none for an authorization or a void. */
      readonly postings: Posting[];
      /** The hold as this message leaves it (new for an authorization). */
      readonly hold: Hold;
      /** A refund by `captureId`: the capture as it leaves it (its refunded amount grown). */
      readonly capture?: CaptureRef;
    }
  | { readonly ok: false; readonly reason: HoldReason; readonly detail: string };

/** Available money of a customer account: posted balance minus what its open holds reserve. */
export function availableOf(account: AccountState): bigint {
  return account.balanceMinor - (account.heldMinor ?? 0n);
}

/**
 * Decides a card_authorization, card_capture, card_void or card_refund on a locked account and
 * (except for an authorization) its hold. `hold` is undefined when no applied authorization has that
 * id; the caller may retry the message first (the authorization may still be on its way).
 */
export function authorizeCard(
  message: TransactionMessage,
  account: AccountState | undefined,
  hold: Hold | undefined,
  now: Date,
  byCapture?: CaptureRef,
): CardDecision {
  if (!account) return { ok: false, reason: 'unknown_account', detail: `account ${message.accountId} does not exist` };
  if (account.currency !== message.currency)
    return {
      ok: false,
      reason: 'currency_mismatch',
      detail: `account ${account.id} holds ${account.currency}, message is in ${message.currency}`,
    };
  const held = account.heldMinor ?? 0n;
  if (message.type === 'card_authorization') return authorization(message, account, held, now);
  if (!hold || hold.accountId !== account.id)
    return {
      ok: false,
      reason: 'unknown_authorization',
      detail: `no applied authorization ${message.authorizationId ?? '?'} on account ${account.id}`,
    };
  switch (message.type) {
    case 'card_capture':
      return capture(message, account, held, hold, now);
    case 'card_void':
      return (
        closed(hold) ??
        expired(hold, now) ?? {
          ok: true,
          balanceAfterMinor: account.balanceMinor,
          heldAfterMinor: held - heldBy(hold),
          postings: [],
          hold: { ...hold, state: 'voided' },
        }
      );
    case 'card_refund':
      // A refund gives back captured money: it is not bound by the hold's expiry.
      return refund(message, account, held, hold, byCapture);
    case 'deposit':
    case 'withdrawal':
    case 'card_payment':
    case 'transfer':
      throw new TypeError(`${message.type} is not a capture, void or refund`);
  }
}

function authorization(message: TransactionMessage, account: AccountState, held: bigint, now: Date): CardDecision {
  const amount = toMinor(amountOf(message));
  const available = account.balanceMinor - held;
  if (available < amount) return { ok: false, reason: 'insufficient_funds', detail: `available ${available} < amount ${amount}` };
  const expiresAt = message.expiresAt === undefined ? new Date(now.getTime() + DEFAULT_HOLD_MS) : new Date(message.expiresAt);
  if (expiresAt.getTime() <= now.getTime())
    return { ok: false, reason: 'authorization_expired', detail: `expiresAt ${expiresAt.toISOString()} is already past` };
  return {
    ok: true,
    balanceAfterMinor: account.balanceMinor,
    heldAfterMinor: held + amount,
    postings: [],
    hold: {
      id: message.id,
      accountId: account.id,
      currency: account.currency,
      merchant: message.merchant ?? '',
      state: 'open',
      authorizedMinor: amount,
      capturedMinor: 0n,
      refundedMinor: 0n,
      expiresAt,
      createdAt: now,
    },
  };
}

/** A hold captured in full (or finally) or voided takes no capture or void any more. */
function closed(hold: Hold): CardDecision | null {
  if (hold.state === 'captured' || hold.state === 'voided')
    return { ok: false, reason: 'authorization_closed', detail: `authorization ${hold.id} is ${hold.state}` };
  return null;
}

/**
 * One rule for captures and voids: past its `expiresAt` a hold takes neither, whether or not a worker
 * has expired it yet, so the outcome of a capture racing the expiry does not depend on which of the
 * two got the account's lock first.
 */
function expired(hold: Hold, now: Date): CardDecision | null {
  if (hold.state === 'expired' || hold.expiresAt.getTime() <= now.getTime())
    return { ok: false, reason: 'authorization_expired', detail: `authorization ${hold.id} expired at ${hold.expiresAt.toISOString()}` };
  return null;
}

function capture(message: TransactionMessage, account: AccountState, held: bigint, hold: Hold, now: Date): CardDecision {
  const isClosed = closed(hold) ?? expired(hold, now);
  if (isClosed) return isClosed;
  const amount = toMinor(amountOf(message));
  const remaining = heldBy(hold);
  if (amount > remaining)
    return { ok: false, reason: 'capture_exceeds_hold', detail: `capture ${amount} > ${remaining} remaining of authorization ${hold.id}` };
  const captured = hold.capturedMinor + amount;
  const done = message.final === true || captured === hold.authorizedMinor;
  // A final capture releases the rest of the hold too.
  const released = done ? remaining : amount;
  return {
    ok: true,
    balanceAfterMinor: account.balanceMinor - amount,
    heldAfterMinor: held - released,
    postings: [
      { accountId: account.id, amountMinor: -amount },
      { accountId: systemAccountId('card_settlement', account.currency), amountMinor: amount },
    ],
    hold: { ...hold, state: done ? 'captured' : 'partially_captured', capturedMinor: captured },
  };
}

function refund(message: TransactionMessage, account: AccountState, held: bigint, hold: Hold, byCapture?: CaptureRef): CardDecision {
  const amount = toMinor(amountOf(message));
  // By capture: at most what that capture took less what was refunded against it (and, as always,
  // within the hold's captured-and-not-refunded total, which the per-capture bound implies).
  if (byCapture) {
    const refundableOfCapture = byCapture.capturedMinor - byCapture.refundedMinor;
    if (amount > refundableOfCapture)
      return {
        ok: false,
        reason: 'refund_exceeds_capture',
        detail: `refund ${amount} > ${refundableOfCapture} captured and not yet refunded by capture ${byCapture.id}`,
      };
  }
  const refundable = hold.capturedMinor - hold.refundedMinor;
  if (amount > refundable)
    return {
      ok: false,
      reason: 'refund_exceeds_capture',
      detail: `refund ${amount} > ${refundable} captured and not yet refunded on authorization ${hold.id}`,
    };
  return {
    ...(byCapture ? { capture: { ...byCapture, refundedMinor: byCapture.refundedMinor + amount } } : {}),
    ok: true,
    balanceAfterMinor: account.balanceMinor + amount,
    heldAfterMinor: held,
    postings: [
      { accountId: account.id, amountMinor: amount },
      { accountId: systemAccountId('card_settlement', account.currency), amountMinor: -amount },
    ],
    hold: { ...hold, refundedMinor: hold.refundedMinor + amount },
  };
}
