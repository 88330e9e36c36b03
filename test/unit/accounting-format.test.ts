import { describe, expect, it } from 'vitest';
import { formatStatementLine, outcomeText, signedAmountText, whatHappened } from '../../src/accounting/statement-text.js';
import { APPLIED_CARD_PAYMENT as base } from './accounting-fixtures.js';

describe('statement lines', () => {
  it('an applied payment: time, account and number, what, signed amount with currency, balance after', () => {
    const line = formatStatementLine(base);
    expect(line).toMatch(/^2025-05-01 12:00:00\.123 {2}account 42 #17 +card payment +-12\.34 EUR {2}balance 987\.66 EUR$/);
  });

  it('money in is +, money out is −', () => {
    expect(signedAmountText({ ...base, type: 'deposit' })).toBe('+12.34 EUR');
    expect(signedAmountText({ ...base, type: 'withdrawal' })).toBe('-12.34 EUR');
    // A transfer's two lines: out of the source, into the destination.
    expect(signedAmountText({ ...base, type: 'transfer' })).toBe('-12.34 EUR');
    expect(signedAmountText({ ...base, type: 'transfer_in' })).toBe('+12.34 EUR');
    expect(whatHappened({ type: 'transfer_in' })).toBe('transfer in');
    expect(signedAmountText({ ...base, amountMinor: 123_456_789n })).toBe('-1,234,567.89 EUR');
  });

  it('a hold expired by a worker releases money without posting it: unsigned, "card hold expired"', () => {
    expect(signedAmountText({ ...base, type: 'hold_expired' })).toBe('12.34 EUR');
    expect(whatHappened({ type: 'hold_expired' })).toBe('card hold expired');
  });

  it('a reject shows the unsigned amount and its reason instead of a balance', () => {
    const reject = { ...base, type: 'withdrawal', outcome: 'rejected' as const, reason: 'insufficient_funds', balanceAfterMinor: null };
    expect(signedAmountText(reject)).toBe('12.34 EUR');
    expect(outcomeText(reject)).toBe('REJECTED: insufficient funds');
    expect(formatStatementLine(reject)).toMatch(/withdrawal +12\.34 EUR {2}REJECTED: insufficient funds$/);
  });

  it('an unreadable message has no account: the line names the transaction instead', () => {
    const invalid = {
      ...base,
      accountId: null,
      accountSeq: null,
      type: null,
      outcome: 'rejected' as const,
      reason: 'invalid_message',
      amountMinor: null,
      currency: null,
      balanceAfterMinor: null,
    };
    expect(whatHappened(invalid)).toBe('transaction');
    expect(formatStatementLine(invalid)).toMatch(
      /no account .* - {2}REJECTED: invalid message \(transaction 9a8b7c6d-5e4f-5a3b-9c2d-1e0f9a8b7c6d\)$/,
    );
  });
});
