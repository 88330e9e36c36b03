import { describe, expect, it } from 'vitest';
import { authorize, openingPostings, systemAccountId } from '../../src/domain/ledger.js';
import type { TransactionMessage } from '../../src/domain/transaction.js';

const message = (over: Partial<TransactionMessage>): TransactionMessage => ({
  id: '00000000-0000-4000-8000-000000000001',
  type: 'withdrawal',
  accountId: 7,
  amountMinor: 500,
  currency: 'EUR',
  createdAt: '2026-01-01T00:00:00.000Z',
  ...over,
});
const account = { id: 7, currency: 'EUR', balanceMinor: 1_000n };

describe('authorize', () => {
  it('applies a withdrawal within the balance and posts a pair that sums to zero', () => {
    const result = authorize(message({}), account);
    expect(result).toMatchObject({ ok: true, balanceAfterMinor: 500n });
    if (!result.ok) throw new Error('unreachable');
    expect(result.postings.reduce((sum, p) => sum + p.amountMinor, 0n)).toBe(0n);
    expect(result.postings).toContainEqual({ accountId: systemAccountId('cash_out', 'EUR'), amountMinor: 500n });
  });

  it('allows spending the balance down to exactly zero, not one cent more', () => {
    expect(authorize(message({ amountMinor: 1_000 }), account)).toMatchObject({ ok: true, balanceAfterMinor: 0n });
    expect(authorize(message({ amountMinor: 1_001 }), account)).toMatchObject({ ok: false, reason: 'insufficient_funds' });
    expect(authorize(message({ type: 'card_payment', merchant: 'x', amountMinor: 1_001 }), account)).toMatchObject({
      ok: false,
      reason: 'insufficient_funds',
    });
  });

  it('credits deposits from cash-in and debits card payments to card settlement', () => {
    const deposit = authorize(message({ type: 'deposit', amountMinor: 250 }), account);
    expect(deposit).toMatchObject({ ok: true, balanceAfterMinor: 1_250n });
    if (deposit.ok) expect(deposit.postings).toContainEqual({ accountId: systemAccountId('cash_in', 'EUR'), amountMinor: -250n });
    const card = authorize(message({ type: 'card_payment', merchant: 'Cafe', amountMinor: 250 }), account);
    if (card.ok) expect(card.postings).toContainEqual({ accountId: systemAccountId('card_settlement', 'EUR'), amountMinor: 250n });
  });

  it('rejects unknown accounts and currency mismatches', () => {
    expect(authorize(message({}), undefined)).toMatchObject({ ok: false, reason: 'unknown_account' });
    expect(authorize(message({ currency: 'USD' }), account)).toMatchObject({ ok: false, reason: 'currency_mismatch' });
  });

  it('gives every system account a distinct negative id per currency', () => {
    const ids = ['EUR', 'USD', 'GBP'].flatMap((c) =>
      (['opening_equity', 'cash_in', 'cash_out', 'card_settlement'] as const).map((k) => systemAccountId(k, c)),
    );
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.every((id) => id < 0)).toBe(true);
    expect(openingPostings(3, 'EUR', 900n).reduce((s, p) => s + p.amountMinor, 0n)).toBe(0n);
  });

  describe('a transfer', () => {
    const transfer = (over: Partial<TransactionMessage> = {}) => message({ type: 'transfer', toAccountId: 8, ...over });
    const destination = { id: 8, currency: 'EUR', balanceMinor: 50n };

    it('debits the source and credits the destination, touching no system account', () => {
      const result = authorize(transfer({ amountMinor: 400 }), account, destination);
      expect(result).toEqual({
        ok: true,
        balanceAfterMinor: 600n,
        toBalanceAfterMinor: 450n,
        postings: [
          { accountId: 7, amountMinor: -400n },
          { accountId: 8, amountMinor: 400n },
        ],
      });
    });

    it('may spend the source down to zero, not one cent more', () => {
      expect(authorize(transfer({ amountMinor: 1_000 }), account, destination)).toMatchObject({ ok: true, balanceAfterMinor: 0n });
      expect(authorize(transfer({ amountMinor: 1_001 }), account, destination)).toMatchObject({
        ok: false,
        reason: 'insufficient_funds',
      });
    });

    it('rejects a transfer to the same account, even one that does not exist', () => {
      expect(authorize(transfer({ toAccountId: 7 }), account, account)).toMatchObject({ ok: false, reason: 'same_account' });
      expect(authorize(transfer({ toAccountId: 7 }), undefined, undefined)).toMatchObject({ ok: false, reason: 'same_account' });
    });

    it('rejects an unknown source or destination, and either in another currency', () => {
      expect(authorize(transfer(), undefined, destination)).toMatchObject({
        ok: false,
        reason: 'unknown_account',
        detail: 'account 7 does not exist',
      });
      expect(authorize(transfer(), account, undefined)).toMatchObject({
        ok: false,
        reason: 'unknown_account',
        detail: 'account 8 does not exist',
      });
      expect(authorize(transfer(), account, { ...destination, currency: 'USD' })).toMatchObject({
        ok: false,
        reason: 'currency_mismatch',
        detail: 'account 8 holds USD, message is in EUR',
      });
      expect(authorize(transfer({ currency: 'USD' }), account, destination)).toMatchObject({ ok: false, reason: 'currency_mismatch' });
    });
  });
});
