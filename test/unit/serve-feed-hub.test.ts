import { describe, expect, it } from 'vitest';
import { CLOSE, FeedHub, type FeedClient, type FeedEvent } from '../../src/serve/feed-hub.js';
import type { Principal } from '../../src/serve/principal.js';

class FakeClient implements FeedClient {
  sent: Record<string, unknown>[] = [];
  closedWith: { code: number; reason: string } | null = null;
  bufferedBytes = 0;
  send(text: string) {
    this.sent.push(JSON.parse(text) as Record<string, unknown>);
  }
  close(code: number, reason: string) {
    this.closedWith = { code, reason };
  }
}

const event = (over: Partial<FeedEvent> = {}): FeedEvent => ({
  event: 'applied',
  transactionId: 't1',
  accountId: 1,
  type: 'deposit',
  amountMinor: '100',
  currency: 'EUR',
  balanceAfterMinor: '1100',
  reason: null,
  at: '2026-01-01T00:00:00.000Z',
  ...over,
});
const alice: Principal = { kind: 'account', tokenId: 'a', accountId: 1 };
const bob: Principal = { kind: 'account', tokenId: 'b', accountId: 2 };
const admin: Principal = { kind: 'admin', tokenId: 'x' };

function hub() {
  return new FeedHub({ sendBufferBytesMax: 1_000, subscriptionsMax: 3 });
}

describe('FeedHub', () => {
  it('a transaction subscriber gets queued then applied, then a normal close; the final state goes out once', () => {
    const h = hub();
    const c = new FakeClient();
    h.add(c, alice);
    h.subscribe(c, { kind: 'transaction', id: 't1' });
    h.publish(event({ event: 'queued', balanceAfterMinor: null }));
    h.publish(event());
    h.publish(event()); // a redelivered outcome
    expect(c.sent.map((e) => e.event)).toEqual(['queued', 'applied']);
    expect(c.closedWith).toEqual({ code: CLOSE.normal, reason: 'final state sent' });
    expect(h.openTransactions()).toEqual([]);
  });

  it('keeps a connection open that follows more than the finished transaction', () => {
    const h = hub();
    const c = new FakeClient();
    h.add(c, alice);
    h.subscribe(c, { kind: 'transaction', id: 't1' });
    h.subscribe(c, { kind: 'account', id: 1 });
    h.publish(event());
    h.publish(event({ transactionId: 't2' }));
    expect(c.closedWith).toBeNull();
    expect(c.sent.map((e) => e.transactionId)).toEqual(['t1', 't2']);
  });

  it('never delivers another account’s events, even to a subscription on its transaction id', () => {
    const h = hub();
    const c = new FakeClient();
    h.add(c, bob);
    h.subscribe(c, { kind: 'transaction', id: 't1' });
    h.publish(event());
    expect(c.sent).toEqual([]);
    const a = new FakeClient();
    h.add(a, admin);
    h.subscribe(a, { kind: 'all' });
    h.publish(event({ transactionId: 't9', accountId: 5 }));
    expect(a.sent).toHaveLength(1);
    expect(c.sent).toEqual([]);
  });

  it('tells and disconnects a client whose send buffer is over the bound, without affecting others', () => {
    const h = hub();
    const slow = new FakeClient();
    const fast = new FakeClient();
    h.add(slow, alice);
    h.add(fast, alice);
    h.subscribe(slow, { kind: 'account', id: 1 });
    h.subscribe(fast, { kind: 'account', id: 1 });
    slow.bufferedBytes = 5_000;
    h.publish(event());
    h.publish(event({ transactionId: 't2' }));
    expect(slow.sent).toHaveLength(1);
    expect(slow.sent[0]).toMatchObject({ error: { code: 'too_slow' } });
    expect(slow.closedWith?.code).toBe(CLOSE.tooSlow);
    expect(fast.sent).toHaveLength(2);
    expect(h.clientCount).toBe(1);
  });

  it('bounds subscriptions per client and forgets removed clients', () => {
    const h = hub();
    const c = new FakeClient();
    h.add(c, admin);
    expect([1, 2, 3, 4].map((id) => h.subscribe(c, { kind: 'account', id }))).toEqual(['ok', 'ok', 'ok', 'too_many']);
    h.remove(c);
    h.publish(event());
    expect(c.sent).toEqual([]);
  });
});
