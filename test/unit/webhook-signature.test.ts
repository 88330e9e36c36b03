import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhook, webhookSignatureFault } from '../../src/accounting/webhook-delivery.js';

const secret = 'test-secret-0123456789';
const body = Buffer.from('{"eventId":"e1","amountMinor":"1234"}');
const t = 1_796_000_000;
const nowMs = t * 1_000;
const headers = (signature: string | string[] | undefined, timestamp: string | string[] | undefined = String(t)) => ({
  signature,
  timestamp,
});

describe('webhook signature (HMAC-SHA256 over "<timestamp>." and the raw body)', () => {
  it('is sha256= and the hex HMAC a receiver computes with any standard library', () => {
    const expected = createHmac('sha256', secret)
      .update(`${t}.${body.toString('utf8')}`)
      .digest('hex');
    expect(signWebhook(secret, t, body)).toBe(`sha256=${expected}`);
    // Same bytes as a string give the same signature.
    expect(signWebhook(secret, t, body.toString('utf8'))).toBe(`sha256=${expected}`);
  });

  it('holds for the same bytes and timestamp under the same secret, within the tolerance', () => {
    expect(webhookSignatureFault(secret, body, headers(signWebhook(secret, t, body)), nowMs)).toBeNull();
    // Hex case does not matter.
    const upper = signWebhook(secret, t, body).toUpperCase().replace('SHA256=', 'sha256=');
    expect(webhookSignatureFault(secret, body, headers(upper), nowMs)).toBeNull();
    // Clocks a little apart, either way.
    expect(webhookSignatureFault(secret, body, headers(signWebhook(secret, t, body)), nowMs + 299_000)).toBeNull();
    expect(webhookSignatureFault(secret, body, headers(signWebhook(secret, t, body)), nowMs - 299_000)).toBeNull();
  });

  it('refuses a request signed longer ago than the tolerance (a replay), or too far ahead', () => {
    const signature = signWebhook(secret, t, body);
    expect(webhookSignatureFault(secret, body, headers(signature), nowMs + 301_000)).toBe('stale_timestamp');
    expect(webhookSignatureFault(secret, body, headers(signature), nowMs - 301_000)).toBe('stale_timestamp');
    expect(webhookSignatureFault(secret, body, headers(signature), nowMs + 3_600_000, 7_200)).toBeNull();
  });

  it('refuses a changed body or timestamp, even by one byte or re-serialized JSON', () => {
    const signature = signWebhook(secret, t, body);
    expect(webhookSignatureFault(secret, Buffer.from('{"eventId":"e1","amountMinor":"1235"}'), headers(signature), nowMs)).toBe(
      'bad_signature',
    );
    const reserialized = Buffer.from(JSON.stringify(JSON.parse(body.toString()), null, 1));
    expect(webhookSignatureFault(secret, reserialized, headers(signature), nowMs)).toBe('bad_signature');
    // A fresh timestamp on an old signature: the replay a signed timestamp stops.
    expect(webhookSignatureFault(secret, body, headers(signature, String(t + 600)), nowMs + 600_000)).toBe('bad_signature');
  });

  it('refuses another secret', () => {
    expect(webhookSignatureFault('another-secret-000000', body, headers(signWebhook(secret, t, body)), nowMs)).toBe('bad_signature');
  });

  it.each([
    ['missing', headers(undefined)],
    ['empty', headers('')],
    ['no prefix', headers(createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex'))],
    ['other algorithm', headers(`sha1=${createHmac('sha1', secret).update(`${t}.`).update(body).digest('hex')}`)],
    ['truncated', headers(signWebhook(secret, t, body).slice(0, -2))],
    ['not hex', headers(`sha256=${'z'.repeat(64)}`)],
    ['repeated header', headers([signWebhook(secret, t, body), signWebhook(secret, t, body)])],
    ['the body alone signed (no timestamp)', headers(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`)],
    ['timestamp missing', { signature: signWebhook(secret, t, body), timestamp: undefined }],
    ['timestamp not a number', headers(signWebhook(secret, t, body), `${t}.5`)],
    ['timestamp repeated', headers(signWebhook(secret, t, body), [String(t), String(t)])],
  ])('refuses a malformed header (%s) without throwing', (_, given) => {
    expect(webhookSignatureFault(secret, body, given, nowMs)).toBe('bad_signature');
  });
});
