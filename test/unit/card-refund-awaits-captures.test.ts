import { describe, expect, it } from 'vitest';
import { authorizeCard, refundAwaitsCaptures, type Hold } from '../../src/domain/holds.js';
import type { TransactionMessage } from '../../src/domain/transaction.js';

// A refund by authorizationId above what its hold has captured so far waits (is deferred) while the
// hold can still take captures: a capture sent before it may be in a delay queue.

const now = new Date('2026-12-06T10:00:00.000Z');
const account = { id: 7, currency: 'EUR', balanceMinor: 10_000n, heldMinor: 1_000n };
const hold: Hold = {
  id: '00000000-0000-4000-8000-0000000000aa',
  accountId: 7,
  currency: 'EUR',
  merchant: 'Hotel',
  state: 'open',
  authorizedMinor: 1_000n,
  capturedMinor: 0n,
  refundedMinor: 0n,
  expiresAt: new Date('2026-12-13T10:00:00.000Z'),
  createdAt: now,
};
const message = (over: Partial<TransactionMessage>): TransactionMessage => ({
  id: '00000000-0000-4000-8000-000000000001',
  type: 'card_refund',
  accountId: 7,
  amountMinor: 100,
  currency: 'EUR',
  authorizationId: hold.id,
  createdAt: now.toISOString(),
  ...over,
});

describe('a refund by authorizationId awaiting captures (refundAwaitsCaptures)', () => {
  it('waits on an open hold with nothing captured yet, and applies once the capture sent before it is in', () => {
    const refund = message({});
    expect(authorizeCard(refund, account, hold, now)).toMatchObject({ ok: false, reason: 'refund_exceeds_capture' });
    expect(refundAwaitsCaptures(refund, hold, now)).toBe(true);
    const captured = authorizeCard(message({ type: 'card_capture', amountMinor: 300 }), account, hold, now);
    if (!captured.ok) throw new Error(captured.detail);
    expect(authorizeCard(refund, { ...account, balanceMinor: 9_700n, heldMinor: 700n }, captured.hold, now)).toMatchObject({
      ok: true,
      balanceAfterMinor: 9_800n,
      hold: { state: 'partially_captured', capturedMinor: 300n, refundedMinor: 100n },
    });
  });

  it('a refund that fits what was captured does not wait: it is applied', () => {
    const partly: Hold = { ...hold, state: 'partially_captured', capturedMinor: 300n };
    expect(refundAwaitsCaptures(message({ amountMinor: 300 }), partly, now)).toBe(false);
  });

  it('of two refunds that together exceed the capture, the second waits while the hold is open and is final once it is not', () => {
    // 300 captured, the first refund of 200 applied: the second 200 does not fit the 100 left.
    const partly: Hold = { ...hold, state: 'partially_captured', capturedMinor: 300n, refundedMinor: 200n };
    const second = message({ id: '00000000-0000-4000-8000-000000000002', amountMinor: 200 });
    expect(authorizeCard(second, account, partly, now)).toMatchObject({ ok: false, reason: 'refund_exceeds_capture' });
    expect(refundAwaitsCaptures(second, partly, now)).toBe(true);
    expect(refundAwaitsCaptures(second, { ...partly, state: 'captured' }, now)).toBe(false);
  });

  it('is final when the hold can no longer take captures: captured in full or finally, voided, expired, or past expiresAt', () => {
    const refund = message({ amountMinor: 400 });
    const partly: Hold = { ...hold, state: 'partially_captured', capturedMinor: 300n };
    expect(refundAwaitsCaptures(refund, partly, now)).toBe(true);
    for (const state of ['captured', 'voided', 'expired'] as const)
      expect(refundAwaitsCaptures(refund, { ...partly, state }, now), state).toBe(false);
    expect(refundAwaitsCaptures(refund, partly, partly.expiresAt)).toBe(false);
  });

  it('is final when it could not fit even were the whole hold captured', () => {
    expect(refundAwaitsCaptures(message({ amountMinor: 1_000 }), hold, now)).toBe(true);
    expect(refundAwaitsCaptures(message({ amountMinor: 1_001 }), hold, now)).toBe(false);
    // 200 refunded already: at most 800 more, whatever is captured.
    const partly: Hold = { ...hold, state: 'partially_captured', capturedMinor: 300n, refundedMinor: 200n };
    expect(refundAwaitsCaptures(message({ amountMinor: 801 }), partly, now)).toBe(false);
  });

  it('concerns refunds by authorizationId only: a refund by captureId waits for its capture by id, a capture never', () => {
    expect(refundAwaitsCaptures(message({ authorizationId: undefined, captureId: 'c1' }), hold, now)).toBe(false);
    expect(refundAwaitsCaptures(message({ type: 'card_capture', amountMinor: 2_000 }), hold, now)).toBe(false);
  });
});
