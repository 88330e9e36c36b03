import { describe, expect, it } from 'vitest';
import { violationsOf } from '../../src/serve/api-error.js';
import {
  DUMMY_PASSWORD_HASH,
  hashPassword,
  newToken,
  parseToken,
  parseTtlMs,
  passwordMatches,
  secretMatches,
} from '../../src/serve/credentials.js';
import { RateLimiter } from '../../src/serve/rate-limit.js';
import { parseSubscribe } from '../../src/serve/routes-stream.js';
import { loggablePath } from '../../src/serve/request-log.js';
import { compileValidator, submitBodySchema } from '../../src/serve/validation.js';

describe('tokens and passwords', () => {
  it('a new token parses back to its id and its secret matches only its own hash', () => {
    const t = newToken();
    const parsed = parseToken(t.token);
    expect(parsed?.id).toBe(t.id);
    expect(secretMatches(parsed!.secret, t.secretHash)).toBe(true);
    expect(secretMatches(parsed!.secret, newToken().secretHash)).toBe(false);
    expect(t.token).not.toContain(t.secretHash);
    expect(parseToken('txsim_xyz_abc')).toBeNull();
    expect(parseToken(`${t.token}x`)).toBeNull();
  });

  it('hashes passwords with scrypt and a salt, and compares them', async () => {
    const a = await hashPassword('correct horse');
    const b = await hashPassword('correct horse');
    expect(a).not.toBe(b);
    expect(await passwordMatches('correct horse', a)).toBe(true);
    expect(await passwordMatches('correct hors', a)).toBe(false);
    expect(await passwordMatches('', DUMMY_PASSWORD_HASH)).toBe(false);
    expect(await passwordMatches('x', 'plain')).toBe(false);
  });

  it('parses TTLs', () => {
    expect([parseTtlMs('30d'), parseTtlMs('12h'), parseTtlMs('15m'), parseTtlMs('45s')]).toEqual([
      2_592_000_000, 43_200_000, 900_000, 45_000,
    ]);
    expect([parseTtlMs('0d'), parseTtlMs('30'), parseTtlMs('1w')]).toEqual([null, null, null]);
  });

  it('masks tokens in logged paths', () => {
    expect(loggablePath('/v1/stream?token=txsim_abc_def&x=1')).toBe('/v1/stream?token=***&x=1');
    expect(loggablePath('/v1/accounts?limit=2&TOKEN=s')).toBe('/v1/accounts?limit=2&TOKEN=***');
  });

  it('masks a token whose parameter name is percent-encoded (the query parser decodes it, and it authenticates)', () => {
    expect(loggablePath('/v1/stream?%74oken=txsim_abc_def')).toBe('/v1/stream?%74oken=***');
    expect(loggablePath('/v1/stream?x=1&%54%4F%4B%45%4E=s&limit=2')).toBe('/v1/stream?x=1&%54%4F%4B%45%4E=***&limit=2');
    // Any encoded name is masked, whatever it decodes to: no decoder quirk can let a value through.
    expect(loggablePath('/v1/accounts?%6Cimit=2&cursor=abc')).toBe('/v1/accounts?%6Cimit=***&cursor=abc');
    expect(loggablePath('/v1/accounts?limit=2&token')).toBe('/v1/accounts?limit=2&token');
    expect(loggablePath('/v1/accounts/1')).toBe('/v1/accounts/1');
  });
});

describe('RateLimiter', () => {
  it('allows the burst, then the rate, and says when to retry', () => {
    let now = 0;
    const limiter = new RateLimiter({ ratePerS: 2, burst: 3, keysMax: 10 }, () => now);
    expect([1, 2, 3].map(() => limiter.take('a').allowed)).toEqual([true, true, true]);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterS: 1 });
    expect(limiter.take('b').allowed).toBe(true); // buckets are per key
    now = 500;
    expect(limiter.take('a').allowed).toBe(true);
    expect(limiter.take('a').allowed).toBe(false);
  });

  it('keeps at most keysMax buckets', () => {
    const limiter = new RateLimiter({ ratePerS: 1, burst: 1, keysMax: 2 }, () => 0);
    limiter.take('a');
    limiter.take('b');
    limiter.take('c'); // drops a
    expect(limiter.take('a').allowed).toBe(true); // a fresh bucket
    expect(limiter.take('c').allowed).toBe(false);
  });
});

describe('the submit body schema', () => {
  const validate = compileValidator({ schema: submitBodySchema(), httpPart: 'body' });
  it('is contract v1 with id and createdAt optional', () => {
    expect(validate({ type: 'deposit', accountId: 1, amountMinor: 1, currency: 'EUR' })).toBe(true);
    expect(validate({ type: 'deposit', accountId: 1, amountMinor: 1, currency: 'EUR', id: 'not-a-uuid' })).toBe(false);
  });
  it('reports every violation with its path', () => {
    const validateAll = compileValidator({ schema: submitBodySchema(), httpPart: 'body' }) as ((d: unknown) => boolean) & {
      errors: never[];
    };
    expect(validateAll({ type: 'card_payment', amountMinor: 1.5, currency: 'EUR' })).toBe(false);
    expect(violationsOf(validateAll.errors)).toEqual(
      expect.arrayContaining([
        { path: '/accountId', message: 'is required' },
        { path: '/merchant', message: 'is required' },
        { path: '/amountMinor', message: 'must be integer' },
      ]),
    );
  });
});

describe('parseSubscribe', () => {
  it('accepts the three subscriptions and explains anything else', () => {
    expect(parseSubscribe('{"subscribe":"transaction","id":"0B7F3C6E-1D2A-4B4C-8E9F-0A1B2C3D4E5F"}')).toEqual({
      kind: 'transaction',
      id: '0b7f3c6e-1d2a-4b4c-8e9f-0a1b2c3d4e5f',
    });
    expect(parseSubscribe('{"subscribe":"account","id":42}')).toEqual({ kind: 'account', id: 42 });
    expect(parseSubscribe('{"subscribe":"all"}')).toEqual({ kind: 'all' });
    for (const bad of ['nope', '{"subscribe":"account","id":"42"}', '{"subscribe":"transaction","id":"x"}', 'null'])
      expect(parseSubscribe(bad)).toHaveProperty('error');
  });
});
