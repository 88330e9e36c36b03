import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhookBody, verifyWebhookSignature } from '../../src/accounting/webhook-delivery.js';

const secret = 'test-secret-0123456789';
const body = Buffer.from('{"eventId":"e1","amountMinor":"1234"}');

describe('webhook signature (HMAC-SHA256 over the raw body)', () => {
  it('is sha256= and the hex HMAC a receiver computes with any standard library', () => {
    const expected = createHmac('sha256', secret).update(body).digest('hex');
    expect(signWebhookBody(secret, body)).toBe(`sha256=${expected}`);
    // Same bytes as a string give the same signature.
    expect(signWebhookBody(secret, body.toString('utf8'))).toBe(`sha256=${expected}`);
  });

  it('verifies the signature of the same bytes under the same secret', () => {
    expect(verifyWebhookSignature(secret, body, signWebhookBody(secret, body))).toBe(true);
    // Hex case does not matter.
    expect(verifyWebhookSignature(secret, body, signWebhookBody(secret, body).toUpperCase().replace('SHA256=', 'sha256='))).toBe(true);
  });

  it('refuses a changed body, even by one byte or re-serialized JSON', () => {
    const header = signWebhookBody(secret, body);
    expect(verifyWebhookSignature(secret, Buffer.from('{"eventId":"e1","amountMinor":"1235"}'), header)).toBe(false);
    expect(verifyWebhookSignature(secret, Buffer.from(JSON.stringify(JSON.parse(body.toString()), null, 1)), header)).toBe(false);
  });

  it('refuses another secret', () => {
    expect(verifyWebhookSignature('another-secret-000000', body, signWebhookBody(secret, body))).toBe(false);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['no prefix', createHmac('sha256', secret).update(body).digest('hex')],
    ['other algorithm', `sha1=${createHmac('sha1', secret).update(body).digest('hex')}`],
    ['truncated', signWebhookBody(secret, body).slice(0, -2)],
    ['not hex', `sha256=${'z'.repeat(64)}`],
    ['repeated header', [signWebhookBody(secret, body), signWebhookBody(secret, body)]],
  ])('refuses a malformed header (%s) without throwing', (_, header) => {
    expect(verifyWebhookSignature(secret, body, header)).toBe(false);
  });
});
