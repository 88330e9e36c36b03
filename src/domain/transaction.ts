/**
 * The kinds of customer transaction the message contract carries: the three of v1, then those v1.1
 * added (appended, never inserted: gen's seeded stream picks a type by its position).
 */
export const TRANSACTION_TYPES = ['deposit', 'withdrawal', 'card_payment', 'transfer'] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];

/** The types of contract v1 (before v1.1 added the rest). */
export const V1_TRANSACTION_TYPES: readonly TransactionType[] = ['deposit', 'withdrawal', 'card_payment'];

/** A validated message of contract v1.1. `amountMinor` is a safe integer ≤ 10^12 (the schema bounds it). */
export interface TransactionMessage {
  readonly id: string;
  readonly type: TransactionType;
  /** The customer account; for a transfer, the one debited. */
  readonly accountId: number;
  readonly amountMinor: number;
  readonly currency: string;
  readonly merchant?: string;
  /** v1.1, transfers only: the customer account credited (the schema requires it there and forbids it elsewhere). */
  readonly toAccountId?: number;
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
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Largest amount a single message may carry, in minor units (contract v1). */
export const MAX_AMOUNT_MINOR = 1_000_000_000_000;

/** Routing key of a transaction type on the transactions exchange. */
export function routingKeyFor(type: string): string {
  return `tx.${type}`;
}
