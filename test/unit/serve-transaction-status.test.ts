import { describe, expect, it } from 'vitest';
import type { Outcome, Submission } from '../../src/db/api-submissions.js';
import type { FailureRecord } from '../../src/db/transaction-failures.js';
import { decodeAttemptEvent, encodeAttemptEvent, type AttemptEvent } from '../../src/domain/attempt-event.js';
import { CLOSE, FeedHub, feedEventOfAttempt, type FeedClient } from '../../src/serve/feed-hub.js';
import { feedEventOfView, viewOf } from '../../src/serve/transaction-status.js';

const ID = '5f0c0000-0000-4000-8000-000000000001';
const at = (s: number) => new Date(Date.UTC(2026, 11, 6, 0, 0, s));

const submission: Submission = {
  id: ID,
  bodyHash: 'h',
  accountId: 42,
  type: 'deposit',
  amountMinor: 1299n,
  currency: 'EUR',
  destinationAccount: null,
  source: 'api',
  tokenId: null,
  acceptedAt: at(0),
  publishedAt: at(1),
};

function failure(attempt: number, state: FailureRecord['state'], second: number): FailureRecord {
  return {
    transactionId: ID,
    state,
    accountId: 42,
    attempt,
    errorCode: 'ER_LOCK_WAIT_TIMEOUT',
    errorMessage: `Lock wait timeout exceeded (attempt ${attempt})`,
    workerId: 'w1',
    failedAt: at(second),
  };
}

const applied: Outcome = {
  id: ID,
  status: 'applied',
  type: 'deposit',
  accountId: 42,
  amountMinor: 1299n,
  currency: 'EUR',
  bodyHash: 'h',
  reason: null,
  detail: null,
  balanceAfterMinor: 98701n,
  attempts: 3,
  workerId: 'w1',
  createdAt: at(0),
  processedAt: at(9),
};

describe('transaction status view', () => {
  it('queued without failures: no attempts, no last error', () => {
    const view = viewOf(ID, null, submission);
    expect(view).toMatchObject({ status: 'queued', attempts: null, lastError: null });
    expect(view.timeline.map((t) => t.state)).toEqual(['accepted', 'queued']);
  });

  it('retrying: the latest failed attempt and its error, each failure in the timeline', () => {
    const view = viewOf(ID, null, submission, [failure(1, 'retrying', 2), failure(2, 'retrying', 4)]);
    expect(view).toMatchObject({
      status: 'retrying',
      attempts: 2,
      lastError: { attempt: 2, code: 'ER_LOCK_WAIT_TIMEOUT', message: 'Lock wait timeout exceeded (attempt 2)', at: at(4).toISOString() },
    });
    expect(view.timeline).toEqual([
      { state: 'accepted', at: at(0).toISOString() },
      { state: 'queued', at: at(1).toISOString() },
      {
        state: 'retrying',
        at: at(2).toISOString(),
        attempt: 1,
        error: { code: 'ER_LOCK_WAIT_TIMEOUT', message: 'Lock wait timeout exceeded (attempt 1)' },
      },
      {
        state: 'retrying',
        at: at(4).toISOString(),
        attempt: 2,
        error: { code: 'ER_LOCK_WAIT_TIMEOUT', message: 'Lock wait timeout exceeded (attempt 2)' },
      },
    ]);
    expect(feedEventOfView(view)).toMatchObject({
      event: 'retrying',
      attempt: 2,
      lastError: { code: 'ER_LOCK_WAIT_TIMEOUT', message: 'Lock wait timeout exceeded (attempt 2)' },
      at: at(4).toISOString(),
    });
  });

  it('parked: the last failure decides, in the order recorded, not by clock', () => {
    // A worker with a slow clock: its parked record carries an earlier time than the retry before it.
    const view = viewOf(ID, null, submission, [failure(1, 'retrying', 5), failure(2, 'parked', 3)]);
    expect(view).toMatchObject({ status: 'parked', attempts: 2, lastError: { attempt: 2 } });
    expect(view.timeline.map((t) => t.state)).toEqual(['accepted', 'queued', 'retrying', 'parked']);
  });

  it('applied after retries: the outcome decides, the retries stay in the timeline', () => {
    const view = viewOf(ID, applied, submission, [failure(1, 'retrying', 2), failure(2, 'retrying', 4)]);
    expect(view).toMatchObject({ status: 'applied', attempts: 3, balanceAfterMinor: '98701', lastError: { attempt: 2 } });
    expect(view.timeline.map((t) => [t.state, t.attempt ?? null])).toEqual([
      ['accepted', null],
      ['queued', null],
      ['retrying', 1],
      ['retrying', 2],
      ['applied', null],
    ]);
    const event = feedEventOfView(view);
    expect(event).toMatchObject({ event: 'applied', balanceAfterMinor: '98701' });
    expect(event).not.toHaveProperty('attempt');
  });

  it('replayed from the parking queue: queued again, nothing failed since; the next record decides again', () => {
    const records = [failure(1, 'retrying', 2), failure(2, 'parked', 4), failure(2, 'replayed', 6)];
    const view = viewOf(ID, null, submission, records);
    expect(view).toMatchObject({ status: 'queued', attempts: null, lastError: { attempt: 2, at: at(4).toISOString() } });
    expect(view.timeline.map((t) => [t.state, t.attempt ?? null])).toEqual([
      ['accepted', null],
      ['queued', null],
      ['retrying', 1],
      ['parked', 2],
      ['queued', null],
    ]);
    expect(view.timeline.at(-1)).toEqual({ state: 'queued', at: at(6).toISOString() });
    const event = feedEventOfView(view);
    expect(event).toMatchObject({ event: 'queued', at: at(6).toISOString() });
    expect(event).not.toHaveProperty('lastError');
    // A replay restarts the count: its first failure is attempt 1 again.
    expect(viewOf(ID, null, submission, [...records, failure(1, 'retrying', 8)])).toMatchObject({ status: 'retrying', attempts: 1 });
    // A message sent by gen: its account from the replay's record.
    expect(viewOf(ID, null, null, [failure(3, 'replayed', 6)])).toMatchObject({ status: 'queued', accountId: 42, lastError: null });
    expect(viewOf(ID, applied, submission, records)).toMatchObject({ status: 'applied', attempts: 3 });
  });

  it('a message sent by gen (no submission) that is failing: its account comes from the failure record', () => {
    const view = viewOf(ID, null, null, [failure(1, 'retrying', 2)]);
    expect(view).toMatchObject({ status: 'retrying', accountId: 42, type: null, attempts: 1 });
    expect(view.timeline.map((t) => t.state)).toEqual(['retrying']);
  });
});

const event: AttemptEvent = {
  transactionId: ID,
  state: 'retrying',
  attempt: 2,
  accountId: 42,
  type: 'deposit',
  amountMinor: '1299',
  currency: 'EUR',
  errorCode: 'ER_LOCK_DEADLOCK',
  errorMessage: 'Deadlock found when trying to get lock',
  workerId: 'w1',
  at: at(3).toISOString(),
};

describe('attempt event', () => {
  it('round-trips and becomes a feed event with the attempt and the error', () => {
    const decoded = decodeAttemptEvent(encodeAttemptEvent(event));
    expect(decoded).toEqual({ ok: true, event });
    expect(feedEventOfAttempt(event)).toEqual({
      event: 'retrying',
      transactionId: ID,
      accountId: 42,
      type: 'deposit',
      amountMinor: '1299',
      currency: 'EUR',
      balanceAfterMinor: null,
      reason: null,
      at: at(3).toISOString(),
      attempt: 2,
      lastError: { code: 'ER_LOCK_DEADLOCK', message: 'Deadlock found when trying to get lock' },
    });
  });

  it("a replay (replay-dead's event, attempt 0 when RabbitMQ parked it) round-trips and becomes a queued feed event without attempt or error", () => {
    const replayed: AttemptEvent = {
      ...event,
      state: 'replayed',
      attempt: 0,
      type: null,
      amountMinor: null,
      currency: null,
      errorCode: 'replayed',
    };
    expect(decodeAttemptEvent(encodeAttemptEvent(replayed))).toEqual({ ok: true, event: replayed });
    expect(feedEventOfAttempt(replayed)).toEqual({
      event: 'queued',
      transactionId: ID,
      accountId: 42,
      type: null,
      amountMinor: null,
      currency: null,
      balanceAfterMinor: null,
      reason: null,
      at: at(3).toISOString(),
    });
    const negative = Buffer.from(JSON.stringify({ ...JSON.parse(encodeAttemptEvent(replayed).toString()), attempt: -1 }));
    expect(decodeAttemptEvent(negative)).toEqual({ ok: false, detail: 'attempt must be a whole number' });
  });

  it.each([
    ['not JSON', Buffer.from('{')],
    ['another version', Buffer.from(JSON.stringify({ ...JSON.parse(encodeAttemptEvent(event).toString()), version: 2 }))],
    ['an outcome state', Buffer.from(JSON.stringify({ ...JSON.parse(encodeAttemptEvent(event).toString()), state: 'applied' }))],
    ['attempt 0', Buffer.from(JSON.stringify({ ...JSON.parse(encodeAttemptEvent(event).toString()), attempt: 0 }))],
    [
      'an upper-case id',
      Buffer.from(JSON.stringify({ ...JSON.parse(encodeAttemptEvent(event).toString()), transactionId: ID.toUpperCase() })),
    ],
    ['a numeric amount', Buffer.from(JSON.stringify({ ...JSON.parse(encodeAttemptEvent(event).toString()), amountMinor: 1299 }))],
    ['a long message', Buffer.from(JSON.stringify({ ...JSON.parse(encodeAttemptEvent(event).toString()), errorMessage: 'x'.repeat(301) }))],
  ])('refuses %s', (_what, body) => {
    expect(decodeAttemptEvent(body).ok).toBe(false);
  });
});

describe('feed hub with retrying and parked', () => {
  function client() {
    const sent: Record<string, unknown>[] = [];
    let closed: number | null = null;
    const c: FeedClient = {
      send: (text) => sent.push(JSON.parse(text) as Record<string, unknown>),
      bufferedBytes: 0,
      close: (code) => (closed = code),
    };
    return { c, sent, closed: () => closed };
  }

  it('a transaction subscription gets retrying and parked and stays open; applied then closes it', () => {
    const hub = new FeedHub({ sendBufferBytesMax: 1024, subscriptionsMax: 10 });
    const { c, sent, closed } = client();
    hub.add(c, { kind: 'account', accountId: 42, tokenId: 't' });
    hub.subscribe(c, { kind: 'transaction', id: ID });
    hub.publish(feedEventOfAttempt(event));
    hub.publish(feedEventOfAttempt({ ...event, state: 'parked', attempt: 3 }));
    expect(sent.map((e) => [e.event, e.attempt])).toEqual([
      ['retrying', 2],
      ['parked', 3],
    ]);
    expect(closed()).toBeNull();
    // Replayed by an operator and applied: now it is final.
    hub.publish({ ...feedEventOfAttempt(event), event: 'applied', balanceAfterMinor: '98701' });
    expect(closed()).toBe(CLOSE.normal);
  });
});
