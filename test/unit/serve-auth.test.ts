import { randomBytes } from 'node:crypto';
import { BlockList } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { TokenRow } from '../../src/db/api-tokens.js';
import { ApiError, violationsOf } from '../../src/serve/api-error.js';
import { TokenAuthenticator, type TokenCheckResult } from '../../src/serve/auth.js';
import {
  DUMMY_PASSWORD_HASH,
  hashPassword,
  newToken,
  parseToken,
  parseTtlMs,
  passwordMatches,
  secretMatches,
} from '../../src/serve/credentials.js';
import { RateLimiter, rateKeyOfAddress } from '../../src/serve/rate-limit.js';
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

  it('peeks without spending, and says when `needed` tokens will be there', () => {
    let now = 0;
    const limiter = new RateLimiter({ ratePerS: 0.5, burst: 2, keysMax: 10 }, () => now);
    expect(limiter.peek('a')).toEqual({ allowed: true }); // never seen: a full bucket
    expect(limiter.peek('a', 2)).toEqual({ allowed: true });
    limiter.take('a');
    limiter.take('a');
    expect(limiter.peek('a')).toEqual({ allowed: false, retryAfterS: 2 });
    expect(limiter.peek('a', 2)).toEqual({ allowed: false, retryAfterS: 4 });
    now = 2_000;
    expect(limiter.peek('a')).toEqual({ allowed: true });
    expect(limiter.peek('a')).toEqual({ allowed: true }); // peeking spent nothing
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

describe('rateKeyOfAddress', () => {
  it('keeps an IPv4 address as it is, and reads an IPv4-mapped IPv6 address as its IPv4 address', () => {
    expect(rateKeyOfAddress('203.0.113.7')).toBe('203.0.113.7');
    expect(rateKeyOfAddress('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(rateKeyOfAddress('::FFFF:203.0.113.7')).toBe('203.0.113.7');
    expect(rateKeyOfAddress('0:0:0:0:0:ffff:cb00:7107')).toBe('203.0.113.7'); // the same, in hex groups
    expect(rateKeyOfAddress('::ffff:0:203.0.113.7')).toBe('0:0:0:0::/64'); // IPv4-translated: not mapped
  });

  it('keys IPv6 by its /64, whichever way the address is written', () => {
    const prefix = '2001:db8:1:2::/64';
    for (const address of [
      '2001:db8:1:2::a',
      '2001:db8:1:2:ffff::b',
      '2001:0DB8:0001:0002:0000:0000:0000:0001',
      '2001:db8:1:2:3:4:5:6',
      '2001:db8:1:2::',
      '2001:db8:1:2:0:0:192.0.2.1', // a dotted IPv4 tail
      '2001:db8:1:2::192.0.2.1',
    ])
      expect(rateKeyOfAddress(address), address).toBe(prefix);
    expect(rateKeyOfAddress('2001:db8:1:3::a')).toBe('2001:db8:1:3::/64');
    expect(rateKeyOfAddress('2001:db8::1')).toBe('2001:db8:0:0::/64'); // `::` inside the prefix
    expect(rateKeyOfAddress('2001:db8::1:2:3:4')).toBe('2001:db8:0:0::/64'); // … or spanning none of it
    expect(rateKeyOfAddress('1:2:3::')).toBe('1:2:3:0::/64');
    expect(rateKeyOfAddress('::2:3:4:5:6:7:8')).toBe('0:2:3:4::/64');
    expect(rateKeyOfAddress('::1')).toBe('0:0:0:0::/64');
    expect(rateKeyOfAddress('::')).toBe('0:0:0:0::/64');
  });

  it('keeps a zone id: one link-local prefix on two interfaces is two links', () => {
    expect(rateKeyOfAddress('fe80::1%eth0')).toBe('fe80:0:0:0::/64%eth0');
    expect(rateKeyOfAddress('fe80::2:3%eth0')).toBe('fe80:0:0:0::/64%eth0');
    expect(rateKeyOfAddress('fe80::1%eth1')).toBe('fe80:0:0:0::/64%eth1');
  });

  it('leaves anything that is not an IP address unchanged', () => {
    for (const text of ['', 'localhost', '1::2::3', '2001:db8::g', '203.0.113.256', 'fe80::1%']) expect(rateKeyOfAddress(text)).toBe(text);
  });

  it("agrees with Node's own parser: every address falls in the /64 it is keyed by, and none of a neighbour's", () => {
    const hex = () => randomBytes(2).readUInt16BE(0).toString(16);
    for (let i = 0; i < 500; i++) {
      const groups = Array.from({ length: 8 }, () => (i % 3 === 0 ? '0' : hex()));
      // Written three ways: in full, with the longest run of zeros compressed, and in upper case.
      const full = groups.join(':');
      const written = [full, full.replace(/(^|:)0(:0)+(:|$)/, '::'), full.toUpperCase()];
      const key = rateKeyOfAddress(full);
      const [net, bits] = key.split('/') as [string, string];
      const own = new BlockList();
      own.addSubnet(net, Number(bits), 'ipv6');
      for (const address of written) {
        expect(rateKeyOfAddress(address), address).toBe(key);
        expect(own.check(address, 'ipv6'), address).toBe(true);
      }
      const neighbour = [...groups.slice(0, 3), ((parseInt(groups[3]!, 16) + 1) & 0xffff).toString(16), ...groups.slice(4)].join(':');
      expect(own.check(neighbour, 'ipv6'), neighbour).toBe(false);
    }
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

describe('TokenAuthenticator', () => {
  const issued = newToken();
  const row = (overrides: Partial<TokenRow> = {}): TokenRow => ({
    id: issued.id,
    secretHash: issued.secretHash,
    isAdmin: false,
    accountId: 7,
    label: null,
    createdAt: new Date(0),
    expiresAt: null,
    revokedAt: null,
    ...overrides,
  });
  /** An authenticator over a fake token table holding `issued` (as `current()` says), counting reads, on a clock the test moves. */
  const setup = (current: () => TokenRow | undefined = () => row()) => {
    const clock = { nowMs: 0 };
    const checks: TokenCheckResult[] = [];
    const reads: { id: string; resolve: () => void }[] = [];
    let gated = false;
    const findToken = (id: string) =>
      new Promise<TokenRow | undefined>((resolve) => {
        const answer = () => resolve(id === issued.id ? current() : undefined);
        reads.push({ id, resolve: answer });
        if (!gated) answer();
      });
    const auth = new TokenAuthenticator(
      findToken,
      { noAuth: false, failuresPerMin: 3, addressesMax: 100, knownTokensMax: 100, onCheck: (r) => checks.push(r) },
      () => clock.nowMs,
    );
    return { auth, clock, checks, reads, gate: (on: boolean) => (gated = on) };
  };
  const guess = () => newToken().token;
  const statusOf = (p: Promise<unknown>) =>
    p.then(
      () => 200,
      (err: unknown) => (err instanceof ApiError ? err.statusCode : 500),
    );

  it('counts only failures: a valid token costs its address nothing', async () => {
    const { auth, reads } = setup();
    for (let i = 0; i < 10; i++)
      expect(await auth.authenticate(issued.token, 'a')).toEqual({ kind: 'account', tokenId: issued.id, accountId: 7 });
    for (let i = 0; i < 3; i++) expect(await statusOf(auth.authenticate(guess(), 'a'))).toBe(401);
    expect(await statusOf(auth.authenticate(guess(), 'a'))).toBe(429);
    expect(reads).toHaveLength(13);
  });

  it('refuses a limited address without a read until its bucket refills; a token seen valid is still read', async () => {
    const { auth, clock, checks, reads } = setup();
    await auth.authenticate(issued.token, 'a');
    for (let i = 0; i < 3; i++) await statusOf(auth.authenticate(guess(), 'a'));
    const readsBefore = reads.length;
    expect(await statusOf(auth.authenticate(guess(), 'a'))).toBe(429);
    // The issued token's id with another secret is a guess like any other.
    expect(await statusOf(auth.authenticate(`txsim_${issued.id}_${'A'.repeat(43)}`, 'a'))).toBe(429);
    expect(reads.length).toBe(readsBefore);
    expect(await statusOf(auth.authenticate(issued.token, 'a'))).toBe(200);
    expect(reads.length).toBe(readsBefore + 1);
    expect(await statusOf(auth.authenticate(guess(), 'b'))).toBe(401); // another address, another bucket
    clock.nowMs = 20_000; // 3 a minute: one more failure allowed
    expect(await statusOf(auth.authenticate(guess(), 'a'))).toBe(401);
    expect(await statusOf(auth.authenticate(guess(), 'a'))).toBe(429);
    expect(checks.filter((c) => c === 'limited')).toHaveLength(3);
  });

  it("a wrong secret under a known token's id does not make its owner wait like a guesser", async () => {
    const { auth } = setup();
    await auth.authenticate(issued.token, 'a');
    // Someone who learned the id (not the secret) sends it from the owner's shared address …
    expect(await statusOf(auth.authenticate(`txsim_${issued.id}_${'A'.repeat(43)}`, 'a'))).toBe(401);
    for (let i = 0; i < 3; i++) await statusOf(auth.authenticate(guess(), 'a'));
    expect(await statusOf(auth.authenticate(guess(), 'a'))).toBe(429);
    // … and the owner's token, still known, is still checked from the limited address.
    expect(await statusOf(auth.authenticate(issued.token, 'a'))).toBe(200);
  });

  it('bounds concurrent guesses by the failures left: the rest are refused before any read', async () => {
    const { auth, reads, gate } = setup();
    gate(true);
    const answers = Array.from({ length: 10 }, () => statusOf(auth.authenticate(guess(), 'a')));
    expect(reads).toHaveLength(3);
    for (const read of reads) read.resolve();
    expect((await Promise.all(answers)).sort()).toEqual([401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
  });

  it('concurrent requests with one unseen token take one slot: a fresh client is not refused by its own burst', async () => {
    const { auth, reads, gate } = setup();
    gate(true);
    const answers = Array.from({ length: 10 }, () => statusOf(auth.authenticate(issued.token, 'a')));
    expect(reads).toHaveLength(10);
    for (const read of reads) read.resolve();
    expect(await Promise.all(answers)).toEqual(Array.from({ length: 10 }, () => 200));
  });

  it('a token seen valid and then revoked or expired is a failure, and is no longer trusted', async () => {
    let current = row();
    const { auth, reads } = setup(() => current);
    await auth.authenticate(issued.token, 'a');
    current = row({ revokedAt: new Date(0) });
    for (let i = 0; i < 3; i++) expect(await statusOf(auth.authenticate(issued.token, 'a'))).toBe(401);
    const readsBefore = reads.length;
    expect(await statusOf(auth.authenticate(issued.token, 'a'))).toBe(429);
    expect(reads.length).toBe(readsBefore);
  });

  it('a token issued here (login, registration) is read from a limited address before any check has seen it', async () => {
    let current: TokenRow | undefined = row();
    const { auth, reads } = setup(() => current);
    for (let i = 0; i < 3; i++) await statusOf(auth.authenticate(guess(), 'a'));
    expect(await statusOf(auth.authenticate(issued.token, 'a'))).toBe(429); // never seen: it waits like a guess
    auth.issued(issued);
    const readsBefore = reads.length;
    expect(await auth.authenticate(issued.token, 'a')).toEqual({ kind: 'account', tokenId: issued.id, accountId: 7 });
    expect(reads.length).toBe(readsBefore + 1); // still read: being issued makes it trusted, not valid
    // What is kept is its secret's hash: its id with another secret is a guess like any other.
    expect(await statusOf(auth.authenticate(`txsim_${issued.id}_${'A'.repeat(43)}`, 'a'))).toBe(429);
    // An issued token whose row is gone is forgotten as a seen one is.
    current = undefined;
    expect(await statusOf(auth.authenticate(issued.token, 'a'))).toBe(401);
    expect(await statusOf(auth.authenticate(issued.token, 'a'))).toBe(429);
  });

  it('counts an IPv6 client by its /64, and an IPv4-mapped address as the IPv4 address it is', async () => {
    const { auth } = setup();
    for (const address of ['2001:db8:1:2::a', '2001:db8:1:2:ffff::b', '2001:DB8:1:2:0:0:0:c'])
      expect(await statusOf(auth.authenticate(guess(), address))).toBe(401);
    expect(await statusOf(auth.authenticate(guess(), '2001:db8:1:2:1:2:3:4'))).toBe(429);
    expect(await statusOf(auth.authenticate(guess(), '2001:db8:1:3::a'))).toBe(401); // the next /64 has its own
    expect(await statusOf(auth.authenticate(issued.token, '2001:db8:1:2::5'))).toBe(429); // as any unseen token
    for (const address of ['::ffff:192.0.2.1', '192.0.2.1', '::ffff:c000:201'])
      expect(await statusOf(auth.authenticate(guess(), address))).toBe(401);
    expect(await statusOf(auth.authenticate(guess(), '192.0.2.1'))).toBe(429);
    expect(await statusOf(auth.authenticate(guess(), '192.0.2.2'))).toBe(401); // IPv4 stays per address
  });

  it('with --no-auth reads nothing; without a token or with a malformed one, reads nothing and counts nothing', async () => {
    const { auth, reads, checks } = setup();
    for (let i = 0; i < 5; i++) {
      expect(await statusOf(auth.authenticate(null, 'a'))).toBe(401);
      expect(await statusOf(auth.authenticate('txsim_nope', 'a'))).toBe(401);
    }
    expect(await statusOf(auth.authenticate(guess(), 'a'))).toBe(401);
    expect(reads).toHaveLength(1);
    expect(checks).toEqual(['invalid']);
    const open = new TokenAuthenticator(() => Promise.reject(new Error('no read')), {
      noAuth: true,
      failuresPerMin: 1,
      addressesMax: 1,
      knownTokensMax: 1,
    });
    expect(await open.authenticate(null, 'a')).toEqual({ kind: 'admin', tokenId: null });
  });
});
