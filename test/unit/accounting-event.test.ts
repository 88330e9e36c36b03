import { describe, expect, it } from 'vitest';
import {
  accountingRoutingKey,
  ACCOUNTING_EVENTS_PER_MESSAGE_MAX,
  decodeAccountingMessage,
  encodeAccountingEvent,
  encodeAccountingEvents,
  type DecodedEvent,
  eventFromOutboxRow,
} from '../../src/domain/accounting-event.js';
import { APPLIED_CARD_PAYMENT as applied } from './accounting-fixtures.js';

/** A message of one event, decoded: its one element, or why the message was refused. */
function decodeAccountingEvent(body: Buffer): DecodedEvent {
  const decoded = decodeAccountingMessage(body);
  if (!decoded.ok) return decoded;
  expect(decoded.elements).toHaveLength(1);
  const [element] = decoded.elements;
  return element!.ok ? element! : { ok: false, detail: element!.detail };
}

describe('accounting event wire format', () => {
  it('round-trips, with money as strings on the wire', () => {
    const body = encodeAccountingEvent(applied);
    expect(JSON.parse(body.toString())).toMatchObject({ version: 1, amountMinor: '1234', balanceAfterMinor: '98766', accountSeq: 17 });
    expect(decodeAccountingEvent(body)).toEqual({ ok: true, event: applied });
  });

  it('encodes the same event to the same bytes (signatures and dedup rely on it)', () => {
    expect(encodeAccountingEvent({ ...applied }).equals(encodeAccountingEvent(applied))).toBe(true);
  });

  it('keeps money beyond 2^53 exact', () => {
    const big = { ...applied, balanceAfterMinor: 9_007_199_254_740_993n };
    const decoded = decodeAccountingEvent(encodeAccountingEvent(big));
    expect(decoded.ok && decoded.event.balanceAfterMinor).toBe(9_007_199_254_740_993n);
  });

  it('routes by outcome and account', () => {
    expect(accountingRoutingKey(applied)).toBe('applied.42');
    expect(accountingRoutingKey({ outcome: 'rejected', accountId: null })).toBe('rejected.none');
  });

  it('reads an outbox row as mysql2 returns it (BIGINT as strings)', () => {
    const event = eventFromOutboxRow({
      id: '7',
      event_id: applied.eventId,
      transaction_id: applied.transactionId,
      account_id: '42',
      account_seq: '17',
      type: 'card_payment',
      amount_minor: '1234',
      currency: 'EUR',
      outcome: 'applied',
      reason: null,
      balance_after_minor: '98766',
      created_at: new Date('2025-05-01T12:00:00.123Z'),
    });
    expect(event).toEqual(applied);
  });

  const wire = () => JSON.parse(encodeAccountingEvent(applied).toString()) as Record<string, unknown>;
  it.each([
    ['not JSON', Buffer.from('{')],
    ['an array', Buffer.from('[]')],
    ['another version', Buffer.from(JSON.stringify({ ...wire(), version: 2 }))],
    ['a bad event id', Buffer.from(JSON.stringify({ ...wire(), eventId: 'x' }))],
    ['money as a number', Buffer.from(JSON.stringify({ ...wire(), amountMinor: 1234 }))],
    ['money beyond 64 bits', Buffer.from(JSON.stringify({ ...wire(), amountMinor: '9999999999999999999' }))],
    ['a fractional amount', Buffer.from(JSON.stringify({ ...wire(), amountMinor: '12.5' }))],
    ['an account without a sequence', Buffer.from(JSON.stringify({ ...wire(), accountSeq: null }))],
    ['an unknown outcome', Buffer.from(JSON.stringify({ ...wire(), outcome: 'maybe' }))],
    ['a reason too long to store', Buffer.from(JSON.stringify({ ...wire(), reason: 'r'.repeat(33) }))],
    ['a lowercase currency', Buffer.from(JSON.stringify({ ...wire(), currency: 'eur' }))],
    ['a bad time', Buffer.from(JSON.stringify({ ...wire(), occurredAt: 'yesterday' }))],
    ['a time no DATETIME column holds', Buffer.from(JSON.stringify({ ...wire(), occurredAt: '+010000-01-01T00:00:00.000Z' }))],
    ['an oversized body', Buffer.alloc(9_000, 32)],
    ['an oversized event', Buffer.from(JSON.stringify({ ...wire(), padding: ' '.repeat(9_000) }))],
  ])('refuses %s with a reason', (_, body) => {
    const decoded = decodeAccountingEvent(body);
    expect(decoded.ok).toBe(false);
    expect(!decoded.ok && decoded.detail.length).toBeGreaterThan(0);
  });
});

describe('several events in one message', () => {
  const other = { ...applied, eventId: '1c8e4d7f-2e3b-5c5d-9f0a-1b2c3d4e5f60', accountId: 7, accountSeq: 3 };

  it('round-trips, each element exactly the body the event has alone', () => {
    const body = encodeAccountingEvents([applied, other]);
    const decoded = decodeAccountingMessage(body);
    expect(decoded).toEqual({
      ok: true,
      elements: [
        { ok: true, event: applied },
        { ok: true, event: other },
      ],
    });
    const wireOf = (b: Buffer) => JSON.parse(b.toString()) as unknown;
    expect(wireOf(body)).toEqual({ version: 1, events: [wireOf(encodeAccountingEvent(applied)), wireOf(encodeAccountingEvent(other))] });
  });

  it('decodes each element on its own: a bad one is refused with its place and bytes, the others stand', () => {
    const good = JSON.parse(encodeAccountingEvent(applied).toString()) as Record<string, unknown>;
    const body = Buffer.from(JSON.stringify({ version: 1, events: [good, { ...good, amountMinor: 12.5 }, 'x'] }));
    const decoded = decodeAccountingMessage(body);
    if (!decoded.ok) throw new Error(decoded.detail);
    expect(decoded.elements[0]).toEqual({ ok: true, event: applied });
    expect(decoded.elements[1]).toMatchObject({ ok: false, detail: 'event 2 of 3: amountMinor must be a string of minor units or null' });
    expect(JSON.parse((decoded.elements[1] as { body: Buffer }).body.toString())).toMatchObject({ amountMinor: 12.5 });
    expect(decoded.elements[2]).toMatchObject({ ok: false, detail: 'event 3 of 3: not a JSON object' });
  });

  const good = () => JSON.parse(encodeAccountingEvent(applied).toString()) as Record<string, unknown>;
  it.each([
    ['events that are not an array', { version: 1, events: {} }],
    ['no events', { version: 1, events: [] }],
    ['more events than a message may carry', { version: 1, events: Array.from({ length: ACCOUNTING_EVENTS_PER_MESSAGE_MAX + 1 }, good) }],
    ['another version of the envelope', { version: 2, events: [good()] }],
  ])('refuses %s as a whole', (_, o) => {
    const decoded = decodeAccountingMessage(Buffer.from(JSON.stringify(o)));
    expect(decoded.ok).toBe(false);
    expect(!decoded.ok && decoded.detail.length).toBeGreaterThan(0);
  });
});
