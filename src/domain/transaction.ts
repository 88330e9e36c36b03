/** The three kinds of customer transaction the message contract carries. */
export const TRANSACTION_TYPES = ['deposit', 'withdrawal', 'card_payment'] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];

/** A validated message of contract v1. `amountMinor` is a safe integer ≤ 10^12 (the schema bounds it). */
export interface TransactionMessage {
  readonly id: string;
  readonly type: TransactionType;
  readonly accountId: number;
  readonly amountMinor: number;
  readonly currency: string;
  readonly merchant?: string;
  readonly createdAt: string;
}

/** Business reasons a transaction is rejected. Never retried: the same input gives the same answer. */
export const REJECT_REASONS = [
  'invalid_message',
  'unknown_account',
  'currency_mismatch',
  'insufficient_funds',
  'duplicate_conflict',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Largest amount a single message may carry, in minor units (contract v1). */
export const MAX_AMOUNT_MINOR = 1_000_000_000_000;

/** Routing key of a transaction type on the transactions exchange. */
export function routingKeyFor(type: string): string {
  return `tx.${type}`;
}
