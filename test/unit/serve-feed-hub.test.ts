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

  it('a subscribe-time read answers the current state; re-subscribing a finished transaction answers it again and leaves nothing behind', () => {
    const h = new FeedHub({ sendBufferBytesMax: 1_000, subscriptionsMax: 3 });
    const c = new FakeClient();
    h.add(c, alice);
    h.subscribe(c, { kind: 'account', id: 1 }); // keeps the connection open past the final state
    for (let round = 0; round < 5; round++) {
      expect(h.subscribe(c, { kind: 'transaction', id: 't1' })).toBe('ok');
      h.answerSubscribe(c, 't1', event());
    }
    expect(c.sent.map((e) => e.event)).toEqual(['applied', 'applied', 'applied', 'applied', 'applied']);
    expect(h.openTransactions()).toEqual([]);
    // Nothing counts against the bound any more: two more transactions still fit beside the account.
    expect(h.subscribe(c, { kind: 'transaction', id: 't2' })).toBe('ok');
    expect(h.subscribe(c, { kind: 'transaction', id: 't3' })).toBe('ok');
  });

  it('the final state goes out once when the live event comes while the read runs, and the watch is then forgotten', () => {
    const h = hub();
    const c = new FakeClient();
    h.add(c, alice);
    h.subscribe(c, { kind: 'account', id: 1 });
    h.subscribe(c, { kind: 'transaction', id: 't1' });
    h.publish(event()); // live, before the read answered
    h.answerSubscribe(c, 't1', event()); // the read saw the outcome too
    expect(c.sent.map((e) => e.event)).toEqual(['applied']);
    expect(h.subscribe(c, { kind: 'transaction', id: 't1' })).toBe('ok'); // a new watch, not "already"
  });

  it('a transaction subscribed already is "already" (no second read) and does not grow toward the bound', () => {
    const h = hub();
    const c = new FakeClient();
    h.add(c, alice);
    expect(h.subscribe(c, { kind: 'transaction', id: 't1' })).toBe('ok');
    for (let i = 0; i < 10; i++) expect(h.subscribe(c, { kind: 'transaction', id: 't1' })).toBe('already');
    expect(h.subscribe(c, { kind: 'account', id: 1 })).toBe('ok');
    expect(h.subscribe(c, { kind: 'account', id: 1 })).toBe('already');
    expect(h.subscribe(c, { kind: 'transaction', id: 't2' })).toBe('ok');
    expect(h.subscribe(c, { kind: 'transaction', id: 't3' })).toBe('too_many');
  });

  it('an unknown id and another account’s id are answered alike, and neither delivers anything', () => {
    const h = hub();
    const c = new FakeClient();
    h.add(c, bob);
    h.subscribe(c, { kind: 'transaction', id: 't1' }); // alice's, exists: the route passes null
    h.answerSubscribe(c, 't1', null);
    h.subscribe(c, { kind: 'transaction', id: 't9' }); // never seen
    h.answerSubscribe(c, 't9', null);
    expect(c.sent).toEqual([
      { subscribed: { kind: 'transaction', id: 't1' }, status: 'unknown' },
      { subscribed: { kind: 'transaction', id: 't9' }, status: 'unknown' },
    ]);
    h.publish(event());
    expect(c.sent).toHaveLength(2);
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
