/**
 * The kinds of customer transaction the message contract carries: the three of v1, then those v1.1
 * added (appended, never inserted: gen's seeded stream picks a type by its position).
 */
export const TRANSACTION_TYPES = [
  'deposit',
  'withdrawal',
  'card_payment',
  'transfer',
  'card_authorization',
  'card_capture',
  'card_void',
  'card_refund',
] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];

/** The types of contract v1 (before v1.1 added the rest). */
export const V1_TRANSACTION_TYPES: readonly TransactionType[] = ['deposit', 'withdrawal', 'card_payment'];

/**
 * The types gen draws from `--mix`. Captures, voids and refunds only make sense after their
 * authorization, so they are not drawn on their own.
 */
export const GENERATED_TYPES = ['deposit', 'withdrawal', 'card_payment', 'transfer', 'card_authorization'] as const;
export type GeneratedType = (typeof GENERATED_TYPES)[number];

/** Types that act on a hold named by `authorizationId`. */
export const HOLD_TYPES: readonly TransactionType[] = ['card_capture', 'card_void', 'card_refund'];

/** A validated message of contract v1.1. `amountMinor` is a safe integer ≤ 10^12 (the schema bounds it). */
export interface TransactionMessage {
  readonly id: string;
  readonly type: TransactionType;
  /** The customer account; for a transfer, the one debited. */
  readonly accountId: number;
  /** Every type carries one except card_void (the schema forbids it there: a void releases what remains). */
  readonly amountMinor?: number;
  readonly currency: string;
  readonly merchant?: string;
  /** v1.1, transfers only: the customer account credited (the schema requires it there and forbids it elsewhere). */
  readonly toAccountId?: number;
  /** v1.1, card_capture / card_void / card_refund: the authorization (and hold) acted on. A refund names it or `captureId`. */
  readonly authorizationId?: string;
  /** v1.1, card_refund only (instead of `authorizationId`): the applied card_capture it refunds (at most what that capture took). */
  readonly captureId?: string;
  /** v1.1, card_capture: the last capture; the rest of the hold is released. */
  readonly final?: boolean;
  /** v1.1, card_authorization: when the hold expires (default: DEFAULT_HOLD_MS after it is applied). */
  readonly expiresAt?: string;
  readonly createdAt: string;
}

/** Business reasons a transaction is rejected. Never retried: the same input gives the same answer. */
export const REJECT_REASONS = [
  'invalid_message',
  'unknown_account',
  'currency_mismatch',
  'insufficient_funds',
  'duplicate_conflict',
  // v1.1
  'same_account',
  'unknown_authorization',
  'authorization_expired',
  'authorization_closed',
  'capture_exceeds_hold',
  'refund_exceeds_capture',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/**
 * How long a hold lasts when its authorization names no `expiresAt`: 7 days, as card networks
 * commonly allow. Past its `expiresAt` a hold takes no capture or void (`authorization_expired`),
 * whether or not a worker has expired it yet; the workers release it soon after (see worker/hold-expiry.ts).
 */
export const DEFAULT_HOLD_MS = 7 * 24 * 3600 * 1000;

/** The amount of a message that must carry one (every type but card_void): the schema guarantees it. */
export function amountOf(message: TransactionMessage): number {
  if (message.amountMinor === undefined) throw new TypeError(`${message.type} ${message.id} has no amountMinor`);
  return message.amountMinor;
}

/** Largest amount a single message may carry, in minor units (contract v1). */
export const MAX_AMOUNT_MINOR = 1_000_000_000_000;

/** Routing key of a transaction type on the transactions exchange. */
export function routingKeyFor(type: string): string {
  return `tx.${type}`;
}
