import { describe, expect, it } from 'vitest';
import { authorizeCard, heldBy, type Hold } from '../../src/domain/holds.js';
import { systemAccountId } from '../../src/domain/ledger.js';
import type { TransactionMessage } from '../../src/domain/transaction.js';

const now = new Date('2026-12-06T10:00:00.000Z');
const account = { id: 7, currency: 'EUR', balanceMinor: 10_000n, heldMinor: 3_000n };
const hold: Hold = {
  id: '00000000-0000-4000-8000-0000000000aa',
  accountId: 7,
  currency: 'EUR',
  merchant: 'Hotel',
  state: 'open',
  authorizedMinor: 3_000n,
  capturedMinor: 0n,
  refundedMinor: 0n,
  expiresAt: new Date('2026-12-13T10:00:00.000Z'),
  createdAt: now,
};
const message = (over: Partial<TransactionMessage>): TransactionMessage => ({
  id: '00000000-0000-4000-8000-000000000001',
  type: 'card_capture',
  accountId: 7,
  amountMinor: 1_000,
  currency: 'EUR',
  authorizationId: hold.id,
  createdAt: now.toISOString(),
  ...over,
});

describe('two-phase card payments (authorizeCard)', () => {
  it('an authorization holds against available money and posts nothing; the default hold time is 7 days', () => {
    const auth = authorizeCard(
      message({ type: 'card_authorization', merchant: 'Cafe', amountMinor: 7_000, authorizationId: undefined }),
      account,
      undefined,
      now,
    );
    expect(auth).toMatchObject({ ok: true, balanceAfterMinor: 10_000n, heldAfterMinor: 10_000n, postings: [] });
    if (auth.ok) expect(auth.hold.expiresAt.toISOString()).toBe('2026-12-13T10:00:00.000Z');
    expect(
      authorizeCard(message({ type: 'card_authorization', merchant: 'Cafe', amountMinor: 7_001 }), account, undefined, now),
    ).toMatchObject({
      ok: false,
      reason: 'insufficient_funds',
    });
  });

  it('a partial capture posts and keeps the rest held; a final one releases the rest', () => {
    const partial = authorizeCard(message({}), account, hold, now);
    expect(partial).toMatchObject({
      ok: true,
      balanceAfterMinor: 9_000n,
      heldAfterMinor: 2_000n,
      hold: { state: 'partially_captured', capturedMinor: 1_000n },
    });
    if (partial.ok)
      expect(partial.postings).toEqual([
        { accountId: 7, amountMinor: -1_000n },
        { accountId: systemAccountId('card_settlement', 'EUR'), amountMinor: 1_000n },
      ]);
    const final = authorizeCard(message({ final: true }), account, hold, now);
    expect(final).toMatchObject({ ok: true, balanceAfterMinor: 9_000n, heldAfterMinor: 0n, hold: { state: 'captured' } });
    if (final.ok) expect(heldBy(final.hold)).toBe(0n);
  });

  it('rejects captures beyond the hold, of closed, expired or unknown holds', () => {
    expect(authorizeCard(message({ amountMinor: 3_001 }), account, hold, now)).toMatchObject({ ok: false, reason: 'capture_exceeds_hold' });
    expect(authorizeCard(message({}), account, { ...hold, state: 'voided' }, now)).toMatchObject({
      ok: false,
      reason: 'authorization_closed',
    });
    expect(authorizeCard(message({}), account, { ...hold, state: 'expired' }, now)).toMatchObject({
      ok: false,
      reason: 'authorization_expired',
    });
    expect(authorizeCard(message({}), account, { ...hold, expiresAt: now }, now)).toMatchObject({
      ok: false,
      reason: 'authorization_expired',
    });
    expect(authorizeCard(message({}), account, undefined, now)).toMatchObject({ ok: false, reason: 'unknown_authorization' });
    expect(authorizeCard(message({}), account, { ...hold, accountId: 8 }, now)).toMatchObject({
      ok: false,
      reason: 'unknown_authorization',
    });
  });

  it('a void releases what remains; refunds credit back at most what was captured', () => {
    const partly = { ...hold, state: 'partially_captured' as const, capturedMinor: 1_000n };
    const v = authorizeCard(message({ type: 'card_void', amountMinor: undefined }), { ...account, heldMinor: 2_000n }, partly, now);
    expect(v).toMatchObject({
      ok: true,
      balanceAfterMinor: 10_000n,
      heldAfterMinor: 0n,
      postings: [],
      hold: { state: 'voided', capturedMinor: 1_000n },
    });
    const voided = { ...partly, state: 'voided' as const };
    expect(authorizeCard(message({ type: 'card_refund', amountMinor: 1_000 }), account, voided, now)).toMatchObject({
      ok: true,
      balanceAfterMinor: 11_000n,
      hold: { refundedMinor: 1_000n },
    });
    expect(authorizeCard(message({ type: 'card_refund', amountMinor: 1_001 }), account, voided, now)).toMatchObject({
      ok: false,
      reason: 'refund_exceeds_capture',
    });
  });

  it('past expiresAt a void is rejected like a capture, swept or not; a refund of what was captured still goes through', () => {
    const late = new Date(hold.expiresAt.getTime() + 1);
    const voidMessage = message({ type: 'card_void', amountMinor: undefined });
    expect(authorizeCard(voidMessage, account, hold, late)).toMatchObject({ ok: false, reason: 'authorization_expired' });
    expect(authorizeCard(voidMessage, account, { ...hold, state: 'expired' }, now)).toMatchObject({
      ok: false,
      reason: 'authorization_expired',
    });
    const expiredPartly = { ...hold, state: 'expired' as const, capturedMinor: 1_000n };
    expect(authorizeCard(message({ type: 'card_refund', amountMinor: 1_000 }), account, expiredPartly, late)).toMatchObject({
      ok: true,
      hold: { state: 'expired', refundedMinor: 1_000n },
    });
  });

  it('a refund by capture is bound by what that capture took less what was refunded against it', () => {
    const partly = { ...hold, state: 'partially_captured' as const, capturedMinor: 2_500n };
    const capture = { id: 'c1', authorizationId: hold.id, capturedMinor: 1_000n, refundedMinor: 400n };
    const refund = (amountMinor: number) => message({ type: 'card_refund', amountMinor, authorizationId: undefined, captureId: 'c1' });
    expect(authorizeCard(refund(600), account, partly, now, capture)).toMatchObject({
      ok: true,
      balanceAfterMinor: 10_600n,
      hold: { refundedMinor: 600n },
      capture: { id: 'c1', refundedMinor: 1_000n },
    });
    // The hold has 2,500 captured, but this capture only 600 left to refund.
    expect(authorizeCard(refund(601), account, partly, now, capture)).toMatchObject({ ok: false, reason: 'refund_exceeds_capture' });
  });
});
