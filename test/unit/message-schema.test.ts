import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createGenerator, type PoisonKind } from '../../src/gen/generator.js';
import { runIdForSeed } from '../../src/domain/ids.js';
import { decodeTransaction, identityHash, MAX_BODY_BYTES } from '../../src/domain/message-schema.js';

const id = '3f0b6c1e-2a4d-4e8f-9a0b-1c2d3e4f5a6b';
const valid = { id, type: 'deposit', accountId: 1, amountMinor: 500, currency: 'EUR', createdAt: '2026-11-22T10:00:00.000Z' };
const decode = (body: unknown, props: { contentType?: string; messageId?: string } = { contentType: 'application/json', messageId: id }) =>
  decodeTransaction(Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), props);

describe('message contract v1', () => {
  it('accepts a valid deposit and a card payment with a merchant', () => {
    expect(decode(valid).ok).toBe(true);
    expect(decode({ ...valid, type: 'card_payment', merchant: 'Cafe' }).ok).toBe(true);
  });

  it('accepts a v1.1 transfer with its destination (a same-account transfer is a business reject, not a schema one)', () => {
    expect(decode({ ...valid, type: 'transfer', toAccountId: 2 })).toMatchObject({ ok: true, message: { toAccountId: 2 } });
    expect(decode({ ...valid, type: 'transfer', toAccountId: 1 }).ok).toBe(true);
  });

  it('accepts a card_refund naming its authorization or one capture (exactly one of them), captureId on refunds only', () => {
    const auth = '11111111-2222-4333-8444-555555555555';
    const capture = '66666666-7777-4888-9999-aaaaaaaaaaaa';
    const refund = { ...valid, type: 'card_refund' };
    expect(decode({ ...refund, authorizationId: auth }).ok).toBe(true);
    expect(decode({ ...refund, captureId: capture })).toMatchObject({ ok: true, message: { captureId: capture } });
    expect(decode({ ...refund, authorizationId: auth, captureId: capture })).toMatchObject({
      ok: false,
      detail: 'a card_refund names authorizationId or captureId, not both',
    });
    expect(decode(refund)).toMatchObject({ ok: false, detail: 'authorizationId or captureId is required' });
    expect(decode({ ...valid, type: 'card_capture' })).toMatchObject({ ok: false, detail: 'authorizationId is required' });
    expect(decode({ ...valid, type: 'card_capture', authorizationId: auth, captureId: capture })).toMatchObject({
      ok: false,
      detail: 'captureId is only allowed on card_refund',
    });
    const byCapture = decode({ ...refund, captureId: capture });
    const byOther = decode({ ...refund, captureId: auth });
    if (!byCapture.ok || !byOther.ok) throw new Error('unreachable');
    expect(byCapture.bodyHash).not.toBe(byOther.bodyHash);
  });

  it("keeps the identity hash of every v1 message; a transfer's destination is part of its identity", () => {
    // sha256 of the v1 canonical array, as contract v1 computed it: stored hashes stay valid.
    const v1 = decode(valid);
    if (!v1.ok) throw new Error('unreachable');
    expect(v1.bodyHash).toBe(
      createHash('sha256')
        .update(JSON.stringify([id, 'deposit', 1, 500, 'EUR', null]))
        .digest('hex'),
    );
    const to2 = decode({ ...valid, type: 'transfer', toAccountId: 2 });
    const to3 = decode({ ...valid, type: 'transfer', toAccountId: 3 });
    if (!to2.ok || !to3.ok) throw new Error('unreachable');
    expect(to2.bodyHash).not.toBe(to3.bodyHash);
  });

  it.each([
    ['malformed JSON', '{"id":', /not valid JSON/],
    ['JSON that is not an object', '[1,2]', /must be object/],
    ['a missing field', { ...valid, currency: undefined }, /currency is required/],
    ['a string amount', { ...valid, amountMinor: '500' }, /amountMinor must be integer/],
    ['a fractional amount', { ...valid, amountMinor: 5.5 }, /amountMinor must be integer/],
    ['a zero amount', { ...valid, amountMinor: 0 }, /amountMinor must be >= 1/],
    ['a negative amount', { ...valid, amountMinor: -5 }, /amountMinor must be >= 1/],
    ['a huge amount', { ...valid, amountMinor: 1e13 }, /amountMinor must be <= 1000000000000/],
    ['an unknown type', { ...valid, type: 'refund' }, /type must be one of deposit, withdrawal, card_payment, transfer/],
    ['a card payment without merchant', { ...valid, type: 'card_payment' }, /merchant is required/],
    ['a merchant on a deposit', { ...valid, merchant: 'x' }, /merchant is only allowed on card_payment/],
    ['a transfer without its destination', { ...valid, type: 'transfer' }, /toAccountId is required/],
    ['a destination on a deposit', { ...valid, toAccountId: 2 }, /toAccountId is only allowed on transfer/],
    ['a merchant on a transfer', { ...valid, type: 'transfer', toAccountId: 2, merchant: 'x' }, /merchant is only allowed on card_payment/],
    ['a destination that is not an account id', { ...valid, type: 'transfer', toAccountId: 0 }, /toAccountId must be >= 1/],
    ['a lowercase currency', { ...valid, currency: 'eur' }, /currency must match pattern/],
    ['an extra field', { ...valid, note: 'hi' }, /unexpected field note/],
    ['a bad id', { ...valid, id: 'nope' }, /id must be a UUID/],
    // Ajv's uuid format takes the URN form, 45 characters: no id column holds it.
    ['a URN id', { ...valid, id: `urn:uuid:${id}` }, /^id must be a UUID \(8-4-4-4-12 hex digits\)$/],
    ['a bad date', { ...valid, createdAt: 'yesterday' }, /createdAt must match format "date-time"/],
  ])('rejects %s with a precise reason', (_name, body, reason) => {
    const result = decode(body);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.detail).toMatch(reason);
  });

  it('rejects a number written with a fraction or an exponent, which a JSON reader would round to an integer', () => {
    const raw = (amount: string, extra = '') =>
      `{"id":"${id}","type":"deposit","accountId":1,"amountMinor":${amount},"currency":"EUR","createdAt":"2026-11-22T10:00:00.000Z"${extra}}`;
    // JSON.parse gives exactly 2000 for the first three: the schema alone cannot tell.
    for (const amount of ['1999.9999999999999', '2000.0', '2e3', '2E+3', '999999999999.99999']) {
      expect(JSON.parse(raw(amount)).amountMinor % 1, amount).toBe(0);
      expect(decode(raw(amount)), amount).toMatchObject({
        ok: false,
        id,
        detail: `amountMinor is written as ${amount}: integers only, as plain digits (no fraction or exponent)`,
      });
    }
    expect(
      decode(`{"id":"${id}","type":"deposit","accountId":1.0,"amountMinor":5,"currency":"EUR","createdAt":"2026-11-22T10:00:00Z"}`),
    ).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/^accountId is written as 1\.0/),
    });
    // Digits inside strings are not numbers: a merchant or a date with "12.5" in it is fine.
    const card = `{"id":"${id}","type":"card_payment","accountId":1,"amountMinor":2000,"currency":"EUR","merchant":"Cafe \\"12.5\\" 3e4","createdAt":"2026-11-22T10:00:00.123Z"}`;
    expect(decode(card)).toMatchObject({ ok: true, message: { amountMinor: 2000, merchant: 'Cafe "12.5" 3e4' } });
    expect(decode(raw('-0'))).toMatchObject({ ok: false, detail: 'amountMinor must be >= 1' });
  });

  it('rejects an expiresAt that is RFC 3339 but not a time the ledger can keep, and a message_id that is not a UUID', () => {
    const auth = { ...valid, type: 'card_authorization', merchant: 'Hotel' };
    expect(decode({ ...auth, expiresAt: '2027-01-01T10:00:00+01:00' }).ok).toBe(true);
    for (const expiresAt of ['2027-01-01T10:00:00+01', '2026-12-31T23:59:60Z', '9999-12-31T23:59:59-01:00', '0999-12-31T23:59:59Z'])
      expect(decode({ ...auth, expiresAt }), expiresAt).toMatchObject({
        ok: false,
        id,
        detail: `expiresAt ${expiresAt} is not a time the ledger can keep (years 1000-9999 UTC, no leap second, offsets as +hh:mm)`,
      });
    expect(decode({ ...valid, type: 'card_capture', authorizationId: `urn:uuid:${id}` })).toMatchObject({
      ok: false,
      detail: 'authorizationId must be a UUID (8-4-4-4-12 hex digits)',
    });
    expect(decode(valid, { contentType: 'application/json', messageId: 'abc' })).toMatchObject({
      ok: false,
      id,
      detail: `message_id "abc" is not the body id ${id}`,
    });
    expect(decode(valid, { contentType: 'application/json' }).ok).toBe(true); // no message_id at all is fine
  });

  it('rejects a non-JSON content type and an oversized body before parsing', () => {
    const wrongType = decode(valid, { contentType: 'text/plain', messageId: id });
    expect(wrongType).toMatchObject({ ok: false, id });
    if (!wrongType.ok) expect(wrongType.detail).toMatch(/content_type is "text\/plain"/);
    const big = decodeTransaction(Buffer.alloc(MAX_BODY_BYTES + 1, 0x20), { contentType: 'application/json', messageId: id });
    expect(big).toMatchObject({ ok: false, id });
  });

  it('keeps the id of a bad message from the body or, failing that, from message_id', () => {
    expect(decode({ ...valid, amountMinor: -1 }, { contentType: 'application/json' })).toMatchObject({ ok: false, id });
    expect(decode('not json', { contentType: 'application/json', messageId: id })).toMatchObject({ ok: false, id });
    expect(decode('not json', { contentType: 'application/json' })).toMatchObject({ ok: false, id: null });
    expect(decode(valid, { contentType: 'application/json', messageId: '6f1c2d3e-9a8b-4c7d-8e6f-5a4b3c2d1e0f' })).toMatchObject({
      ok: false,
    });
  });

  it('identity ignores createdAt but not business fields', () => {
    const a = decode(valid);
    const b = decode({ ...valid, createdAt: '2030-01-01T00:00:00Z' });
    const c = decode({ ...valid, amountMinor: 501 });
    if (!a.ok || !b.ok || !c.ok) throw new Error('unreachable');
    expect(a.bodyHash).toBe(b.bodyHash);
    expect(a.bodyHash).not.toBe(c.bodyHash);
    expect(identityHash(a.message)).toBe(a.bodyHash);
  });

  it('a bad message is known by the hash of its bytes', () => {
    const body = JSON.stringify({ ...valid, amountMinor: -5 });
    const bad = decode(body);
    expect(bad.ok).toBe(false);
    expect(bad.bodyHash).toBe(createHash('sha256').update(Buffer.from(body)).digest('hex'));
  });

  it('classifies every poison kind gen produces as invalid, except the business rejects', () => {
    const g = createGenerator({
      runId: runIdForSeed('p'),
      seed: 'p',
      accounts: [{ id: 1, currency: 'EUR' }],
      mix: { deposit: 1, withdrawal: 1, card_payment: 1 },
      amountMinMinor: 100,
      amountMaxMinor: 1000,
      accountsDist: { kind: 'uniform' },
      invalidShare: 1,
    });
    const seen = new Map<PoisonKind, boolean>();
    for (let i = 0; i < 300; i++) {
      const m = g.at(i);
      const decoded = decodeTransaction(m.body, { contentType: m.contentType, messageId: m.id });
      seen.set(m.kind as PoisonKind, decoded.ok);
      // Every poison keeps a usable id so its rejection can be recorded.
      expect(decoded.ok ? decoded.message.id : decoded.id).toBe(m.id);
    }
    expect(Object.fromEntries(seen)).toEqual({
      bad_json: false,
      wrong_schema: false,
      negative_amount: false,
      unknown_account: true,
      currency_mismatch: true,
    });
  });

  it('classifies the transfer poison: a missing destination is invalid, the others are business rejects', () => {
    const g = createGenerator({
      runId: runIdForSeed('pt'),
      seed: 'pt',
      accounts: [
        { id: 1, currency: 'EUR' },
        { id: 2, currency: 'EUR' },
      ],
      mix: { transfer: 1 },
      amountMinMinor: 100,
      amountMaxMinor: 1000,
      accountsDist: { kind: 'uniform' },
      invalidShare: 1,
    });
    const seen = new Map<PoisonKind, boolean>();
    for (let i = 0; i < 500; i++) {
      const m = g.at(i);
      const decoded = decodeTransaction(m.body, { contentType: m.contentType, messageId: m.id });
      seen.set(m.kind as PoisonKind, decoded.ok);
      if (m.kind === 'transfer_same_account' && decoded.ok) expect(decoded.message.toAccountId).toBe(decoded.message.accountId);
    }
    expect(seen.get('transfer_no_destination')).toBe(false);
    expect(seen.get('transfer_same_account')).toBe(true);
    expect(seen.get('transfer_unknown_destination')).toBe(true);
  });
});
