import type { AccountingEvent } from '../../src/domain/accounting-event.js';

/** An applied card payment as an accounting event: the shared starting point of the accounting unit tests. */
export const APPLIED_CARD_PAYMENT: AccountingEvent = {
  eventId: '0b7f3c6e-1d2a-5b4c-8e9f-0a1b2c3d4e5f',
  transactionId: '9a8b7c6d-5e4f-5a3b-9c2d-1e0f9a8b7c6d',
  accountId: 42,
  accountSeq: 17,
  type: 'card_payment',
  outcome: 'applied',
  reason: null,
  amountMinor: 1_234n,
  currency: 'EUR',
  balanceAfterMinor: 98_766n,
  occurredAt: '2025-05-01T12:00:00.123Z',
};
