import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createLogger } from '../../src/log.js';
import type { TokenCheckResult } from '../../src/serve/auth.js';
import { DerivedIds, legacyDerivedId } from '../../src/serve/derived-ids.js';
import type { ServeOptions } from '../../src/serve/serve-context.js';
import { startServer, type RunningServer } from '../../src/serve/serve.js';
import type { TestNamespace } from '../helpers/namespace.js';
import { publishRaw } from '../helpers/publish.js';
import { buildTestApp, depositBody, IN_PROCESS_SERVE_OPTIONS, startServeFixture, type ServeFixture } from '../helpers/serve.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/txsim.js';

// What reviews of `txsim serve` found, each against the real broker and database: ids another
// account could compute and take (from any key, a UUID key too), the feed bypassing the rate limit
// and telling which ids exist, tokens reaching the log, a string read as a number, webhook repeats
// with another destination, integer ids read as JavaScript reads text, failed token checks that
// cost a database read each without limit, and logins that multiplied an account's rate.

const OPTIONS: ServeOptions = IN_PROCESS_SERVE_OPTIONS;

interface Answer {
  id: string;
  status: string;
  accountId: number;
  error: { code: string; message: string; details: unknown };
}

interface FeedMessage {
  event?: string;
  transactionId?: string;
  status?: string;
  subscribed?: unknown;
  error?: { code: string; message: string; details: unknown };
}

/** A well-formed token nobody issued: a guess, which only the database can refuse. */
const guessedToken = () => `txsim_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}`;

/** A logger whose JSON lines are kept for the test to read. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('info', { destination }), lines };
}

/** A feed socket that keeps every message it gets. */
async function openFeed(url: string, token: string) {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/stream`, { headers: { authorization: `Bearer ${token}` } });
  const messages: FeedMessage[] = [];
  ws.on('message', (data) => messages.push(JSON.parse((data as Buffer).toString('utf8')) as FeedMessage));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, messages, send: (o: unknown) => ws.send(JSON.stringify(o)) };
}

describe('txsim serve, hardened', () => {
  let fixture: ServeFixture | undefined;
  let ns: TestNamespace;
  let server: RunningServer;
  const logged = capturingLogger();
  let admin: string;
  let alice: string; // account 1
  let bob: string; // account 2

  const call = async (method: string, path: string, token: string | null, body?: unknown, headers: Record<string, string> = {}) => {
    const h: Record<string, string> = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: h,
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: (text ? JSON.parse(text) : null) as Answer };
  };
  const deposit = depositBody;

  beforeAll(async () => {
    fixture = await startServeFixture('servehard', 'shw1', { log: logged.log });
    ({ ns, server, admin, alice, bob } = fixture);
  });

  afterAll(() => fixture?.close());

  it('an id derived from an Idempotency-Key cannot be computed and taken by another account first', async () => {
    // The id the key used to give: public arithmetic, so bob could post under it first.
    const squatted = legacyDerivedId(ns.name, 'idempotency-key', 1, 'order-1001');
    expect((await call('POST', '/v1/transactions', bob, deposit(2, 5, { id: squatted }))).status).toBe(202);
    const first = await call('POST', '/v1/transactions', alice, deposit(1, 700), { 'idempotency-key': 'order-1001' });
    expect(first.status).toBe(202); // was 409, forever
    expect(first.json.id).not.toBe(squatted);
    expect(first.json.accountId).toBe(1);
    // Stable: the same key again is the same transaction, answered by its status.
    const again = await call('POST', '/v1/transactions', alice, deposit(1, 700), { 'idempotency-key': 'order-1001' });
    expect([200, 202]).toContain(again.status);
    expect(again.json.id).toBe(first.json.id);
    // Every server of the namespace reads the same secret: another one derives the same id.
    expect(await new DerivedIds(ns.db, ns.name).idFor('idempotency-key', 1, 'order-1001')).toBe(first.json.id);
    // Per account: bob's order-1001 is another transaction.
    expect(await new DerivedIds(ns.db, ns.name).idFor('idempotency-key', 2, 'order-1001')).not.toBe(first.json.id);
    const [{ n }] = (await ns.db('serve_id_keys').count({ n: '*' })) as [{ n: number | string }];
    expect(Number(n)).toBe(1);
  });

  it('the same for a webhook transaction_id', async () => {
    const squatted = legacyDerivedId(ns.name, 'webhook', 1, 'wh-order-9');
    expect((await call('POST', '/v1/transactions', bob, deposit(2, 5, { id: squatted }))).status).toBe(202);
    const hook = { transaction_id: 'wh-order-9', source_account: 1, amount: '1.25', currency: 'EUR' };
    const first = await call('POST', '/v1/webhooks/transactions', alice, hook);
    expect(first.status).toBe(202);
    expect(first.json.id).not.toBe(squatted);
    expect((await call('POST', '/v1/webhooks/transactions', alice, hook)).json.id).toBe(first.json.id);
  });

  it('an explicit id taken by another account is the same 409 as any conflict: it names neither account nor body', async () => {
    const mine = await call('POST', '/v1/transactions', alice, deposit(1, 11));
    expect(mine.status).toBe(202);
    const theirs = await call('POST', '/v1/transactions', bob, deposit(2, 11, { id: mine.json.id }));
    const own = await call('POST', '/v1/transactions', alice, deposit(1, 12, { id: mine.json.id }));
    expect(theirs.status).toBe(409);
    expect(theirs.json).toEqual(own.json);
    expect(JSON.stringify(theirs.json)).not.toMatch(/"accountId"|account 1/);
  });

  it('a namespace that accepted transactions before the key existed keeps the ids it derived then, for their own account only', async () => {
    // Another namespace name in this database: its key is created now, with submissions already present.
    const upgraded = `${ns.name}_up`;
    const legacyAlice = legacyDerivedId(upgraded, 'idempotency-key', 1, 'before-upgrade');
    const legacyTaken = legacyDerivedId(upgraded, 'idempotency-key', 1, 'taken-by-bob');
    const row = (id: string, accountId: number) => ({
      id,
      body_hash: '0'.repeat(64),
      account_id: accountId,
      type: 'deposit',
      amount_minor: 1,
      currency: 'EUR',
      source: 'api',
      accepted_at: new Date(),
    });
    await ns.db('api_submissions').insert([row(legacyAlice, 1), row(legacyTaken, 2)]);
    const ids = new DerivedIds(ns.db, upgraded);
    expect(await ids.idFor('idempotency-key', 1, 'before-upgrade')).toBe(legacyAlice); // a repeat across the upgrade is a repeat
    const keyed = await ids.idFor('idempotency-key', 1, 'taken-by-bob');
    expect(keyed).not.toBe(legacyTaken); // bob's row never decides alice's id
    expect(await ids.idFor('idempotency-key', 1, 'taken-by-bob')).toBe(keyed);
  });

  it('a webhook repeated with another destination_account is a 409, not the first one’s status', async () => {
    const hook = { transaction_id: 'wh-dest-1', source_account: 1, destination_account: 2, amount: '2.00', currency: 'EUR' };
    const first = await call('POST', '/v1/webhooks/transactions', alice, hook);
    expect(first.status).toBe(202);
    expect([200, 202]).toContain((await call('POST', '/v1/webhooks/transactions', alice, hook)).status);
    const other = await call('POST', '/v1/webhooks/transactions', alice, { ...hook, destination_account: 3 });
    expect(other.status).toBe(409);
    expect(other.json.error.code).toBe('conflict');
    const none = await call('POST', '/v1/webhooks/transactions', alice, { ...hook, destination_account: null });
    expect(none.status).toBe(409);
  });

  it('an id first sent past the API: a wrong body is a 409 and leaves the right one answered by the outcome', async () => {
    // Published straight to the broker, as gen does: an outcome with no submission row.
    const body = {
      id: randomUUID(),
      type: 'deposit',
      accountId: 1,
      amountMinor: 321,
      currency: 'EUR',
      createdAt: new Date().toISOString(),
    };
    await publishRaw(ns.amqp, ns.topology, [{ body }]);
    await waitFor(async () => (await call('GET', `/v1/transactions/${body.id}`, alice)).json.status === 'applied', 20_000, 'the outcome');
    const { id, createdAt: _createdAt, ...fields } = body;
    expect((await call('POST', '/v1/transactions', alice, { ...fields, id, amountMinor: 999 })).status).toBe(409);
    // The wrong body's submission row decides nothing: the outcome does.
    const right = await call('POST', '/v1/transactions', alice, { ...fields, id });
    expect(right.status).toBe(200);
    expect(right.json.status).toBe('applied');
  });

  it('a webhook body whose strings imitate the number mark is refused (400), never read as numbers', async () => {
    const body = String.raw`{"transaction_id":"wh-nul-1","source_account":"\u0000n:0x1","destination_account":"\u0000n:2.0","amount":"1.50","currency":"EUR"}`;
    const answer = await call('POST', '/v1/webhooks/transactions', alice, body);
    expect(answer.status).toBe(400);
    expect(answer.json.error.code).toBe('invalid_request');
    const [{ n }] = (await ns.db('api_submissions').where('account_id', 1).where('amount_minor', 150).count({ n: '*' })) as [
      { n: number | string },
    ];
    expect(Number(n)).toBe(0);
  });

  it('integer ids in paths and queries are plain decimal digits within the safe range, else 400 saying so', async () => {
    expect((await call('GET', '/v1/accounts/1', alice)).status).toBe(200);
    for (const sloppy of ['0x1', '1e0', '1.0', '0b1', '%201', '+1', '1%20']) {
      const answer = await call('GET', `/v1/accounts/${sloppy}`, alice);
      expect(answer.status, sloppy).toBe(400);
      expect(answer.json.error.details, sloppy).toEqual([{ path: '/id', message: 'must be an integer written as plain decimal digits' }]);
    }
    const huge = await call('GET', '/v1/accounts/99999999999999999999', admin);
    expect(huge.status).toBe(400);
    expect(huge.json.error.details).toEqual([{ path: '/id', message: 'must be at most 9007199254740991' }]);
    expect((await call('GET', '/v1/analytics/daily?account=1e20', admin)).status).toBe(400);
    expect((await call('GET', '/v1/accounts?limit=1e1', admin)).status).toBe(400);
    expect((await call('GET', '/v1/accounts?limit=10', admin)).status).toBe(200);
  });

  it('analytics for another account with an account token is a 403, as the Scope section says', async () => {
    const answer = await call('GET', '/v1/analytics/daily?account=2', alice);
    expect(answer.status).toBe(403);
    expect(answer.json.error.code).toBe('forbidden');
    expect((await call('GET', '/v1/analytics/daily?account=1', alice)).status).toBe(200);
  });

  it('a token in a percent-encoded query name authenticates but never reaches the log; an upgrade is logged too', async () => {
    const response = await fetch(`${server.url}/v1/accounts/1?%74oken=${encodeURIComponent(alice)}`);
    expect(response.status).toBe(200);
    const feed = new WebSocket(`${server.url.replace('http', 'ws')}/v1/stream?%74oken=${encodeURIComponent(alice)}`);
    await new Promise<void>((resolve, reject) => {
      feed.once('open', () => resolve());
      feed.once('error', reject);
    });
    feed.close();
    const secret = alice.split('_')[2]!;
    await waitFor(() => logged.lines.some((l) => l.status === 101), 5_000, 'the upgrade logged');
    const requests = logged.lines.filter((l) => l.msg === 'request');
    expect(requests.find((l) => l.status === 200 && String(l.path).startsWith('/v1/accounts/1?'))?.path).toBe('/v1/accounts/1?%74oken=***');
    expect(requests.find((l) => l.status === 101)).toMatchObject({ method: 'GET', path: '/v1/stream?%74oken=***' });
    expect(JSON.stringify(logged.lines)).not.toContain(secret);
  });

  it('the feed answers another account’s existing id exactly as an unknown one', async () => {
    const mine = await call('POST', '/v1/transactions', alice, deposit(1, 13));
    expect(mine.status).toBe(202);
    const feed = await openFeed(server.url, bob);
    feed.send({ subscribe: 'transaction', id: mine.json.id });
    feed.send({ subscribe: 'transaction', id: 'a0000000-0000-4000-8000-000000000001' });
    await waitFor(() => feed.messages.length >= 2, 5_000, 'two answers');
    expect(feed.messages.map((m) => Object.keys(m).sort().join(','))).toEqual(['status,subscribed', 'status,subscribed']);
    expect(feed.messages.map((m) => m.status)).toEqual(['unknown', 'unknown']);
    feed.ws.close();
  });

  it('re-subscribing a finished transaction on the same connection answers its final state each time', async () => {
    const done = await call('POST', '/v1/transactions', alice, deposit(1, 14));
    await waitFor(async () => (await call('GET', `/v1/transactions/${done.json.id}`, alice)).json.status === 'applied', 30_000, 'applied');
    const feed = await openFeed(server.url, alice);
    // Keeps the connection open past a final state (an account subscription would also bring the
    // outcome's live event, whenever the relay publishes it).
    feed.send({ subscribe: 'transaction', id: 'c0000000-0000-4000-8000-000000000003' });
    const finals = () => feed.messages.filter((m) => m.event === 'applied' && m.transactionId === done.json.id).length;
    for (let i = 0; i < 3; i++) {
      feed.send({ subscribe: 'transaction', id: done.json.id });
      await waitFor(() => finals() === i + 1, 5_000, `final state #${i + 1}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(finals()).toBe(3);
    expect(feed.ws.readyState).toBe(WebSocket.OPEN);
    feed.ws.close();
  });

  it('feed messages draw on the token’s rate limit; a repeated subscribe reads nothing again', async () => {
    const limited = await startServer(ns.config, { ...OPTIONS, rateLimitPerS: 2, rateLimitBurst: 6 }, createLogger('silent'));
    try {
      const feed = await openFeed(limited.url, alice); // the upgrade costs one of the six
      const id = 'b0000000-0000-4000-8000-000000000002'; // never seen: the subscription stays open
      for (let i = 0; i < 200; i++) feed.send({ subscribe: 'transaction', id });
      await waitFor(() => feed.messages.length >= 200, 10_000, 'an answer to every message');
      const limitedAnswers = feed.messages.filter((m) => m.error?.code === 'rate_limited');
      // Five from the burst (plus what refilled meanwhile at 2/s); all the rest refused.
      expect(limitedAnswers.length).toBeGreaterThanOrEqual(190);
      expect(limitedAnswers[0]?.error?.details).toEqual({ retryAfterS: 1 });
      // Said as the feed sees it (the HTTP 429's text spoke of requests only): what was dropped, whose limit, when to retry.
      expect(limitedAnswers[0]?.error?.message).toBe(
        'message ignored: account 1 (all its tokens) sent more than 2 requests and feed messages a second; your subscriptions are unchanged, send it again in 1 s',
      );
      // The first subscribe is read and answered; the repeats are only acknowledged (no read, no growth).
      const answered = feed.messages.filter((m) => !m.error);
      expect(answered.length).toBe(200 - limitedAnswers.length);
      expect(answered.filter((m) => m.status === 'unknown')).toHaveLength(1);
      expect(answered.every((m) => (m.subscribed as { id?: string }).id === id)).toBe(true);
      feed.ws.close();
    } finally {
      await limited.close();
    }
  });

  it('failed token checks are limited per client address: 429 with Retry-After and no database read; a token seen valid keeps its own bucket', async () => {
    const checks: TokenCheckResult[] = [];
    const app = await buildTestApp(
      ns,
      { authFailureRateLimitPerMin: 3, rateLimitPerS: 1, rateLimitBurst: 3 },
      { onTokenCheck: (result) => checks.push(result) },
    );
    const lookups = () => checks.filter((c) => c !== 'limited').length;
    const get = (token: string | null, remoteAddress = '10.1.0.1') =>
      app.inject({ method: 'GET', url: '/v1/accounts/1', remoteAddress, headers: token ? { authorization: `Bearer ${token}` } : {} });
    try {
      expect((await get(alice)).statusCode).toBe(200); // seen valid from the address that is about to be limited
      for (let i = 0; i < 3; i++) expect((await get(guessedToken())).statusCode).toBe(401);
      expect(lookups()).toBe(4);
      const limited = await get(guessedToken());
      expect(limited.statusCode).toBe(429);
      expect(limited.headers['retry-after']).toBe('20');
      expect(limited.json<Answer>().error).toMatchObject({
        code: 'rate_limited',
        message: 'too many failed token checks from this address (at most 3 a minute); try again in 20 s',
      });
      for (let i = 0; i < 20; i++) expect((await get(guessedToken())).statusCode).toBe(429);
      // None of the 21 refused reached the database: refused before the read.
      expect(lookups()).toBe(4);
      expect(checks.filter((c) => c === 'limited')).toHaveLength(21);

      // Alice's token still works from that address, limited only by her account's bucket (burst 3, one spent).
      expect((await get(alice)).statusCode).toBe(200);
      expect((await get(alice)).statusCode).toBe(200);
      const own = await get(alice);
      expect(own.statusCode).toBe(429);
      expect(own.json<Answer>().error.message).toBe('more than 1 requests/s for account 1 (all its tokens)');
      // A valid token this server never saw cannot be told from a guess without the database: it waits too …
      expect((await get(admin)).statusCode).toBe(429);
      // … while another address has a bucket of its own, where it is read as ever (and is then seen valid).
      expect((await get(guessedToken(), '10.1.0.2')).statusCode).toBe(401);
      expect((await get(admin, '10.1.0.2')).statusCode).toBe(200);
      expect((await get(admin)).statusCode).toBe(200);
      // No token, or a malformed one, costs no read and is a 401 as ever.
      expect((await get(null)).statusCode).toBe(401);
      expect((await get('txsim_not-a-token')).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  it('a limited address is answered 429 before the database is consulted: also while the database is unreachable', async () => {
    const target = new URL(ns.config.databaseUrl);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 3306));
    await proxy.listen();
    const viaProxy = new URL(ns.config.databaseUrl);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const checks: TokenCheckResult[] = [];
    const limited = await startServer(
      { ...ns.config, databaseUrl: viaProxy.toString() },
      { ...OPTIONS, authFailureRateLimitPerMin: 2 },
      createLogger('silent'),
      { onTokenCheck: (result) => checks.push(result) },
    );
    const get = (token: string) => fetch(`${limited.url}/v1/accounts/1`, { headers: { authorization: `Bearer ${token}` } });
    try {
      expect((await get(alice)).status).toBe(200);
      expect((await get(guessedToken())).status).toBe(401);
      expect((await get(guessedToken())).status).toBe(401);
      await proxy.cut();
      const refused = await get(guessedToken());
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect(((await refused.json()) as Answer).error.code).toBe('rate_limited');
      // The database is really gone: a token the server does read now is a 503.
      const read = await get(alice);
      expect(read.status).toBe(503);
      expect(((await read.json()) as Answer).error.code).toBe('database_unavailable');
      expect(checks).toEqual(['valid', 'invalid', 'invalid', 'limited']);
    } finally {
      await proxy.listen(); // the pool closes cleanly with its database back
      await limited.close();
      await proxy.cut();
    }
  });

  describe('a token this server issues works at once from an address a guesser has limited', () => {
    /** An app limiting failed checks to 3 a minute, and a request from `remoteAddress` (10.3.0.1 unless said). */
    const limitedApp = async () => {
      const app = await buildTestApp(ns, { authFailureRateLimitPerMin: 3 });
      const send = (method: 'GET' | 'POST', url: string, token: string | null, payload?: object, remoteAddress = '10.3.0.1') =>
        app.inject({ method, url, remoteAddress, payload, headers: token ? { authorization: `Bearer ${token}` } : {} });
      const exhaust = async (remoteAddress?: string) => {
        for (let i = 0; i < 3; i++)
          expect((await send('GET', '/v1/accounts/1', guessedToken(), undefined, remoteAddress)).statusCode).toBe(401);
        expect((await send('GET', '/v1/accounts/1', guessedToken(), undefined, remoteAddress)).statusCode).toBe(429);
      };
      return { app, send, exhaust };
    };

    it('a login’s token', async () => {
      const { app, send, exhaust } = await limitedApp();
      try {
        const credentials = { username: 'natted-login', password: 'correct horse' };
        // Registered earlier from elsewhere; then a guesser behind the same NAT spends the address's failures.
        const registered = await send('POST', '/v1/users', null, credentials, '10.3.0.9');
        expect(registered.statusCode).toBe(201);
        const { accountId } = registered.json<{ accountId: number }>();
        await exhaust();
        const login = await send('POST', '/v1/sessions', null, credentials);
        expect(login.statusCode).toBe(201);
        const session = login.json<{ token: string }>().token;
        expect((await send('GET', `/v1/accounts/${accountId}`, session)).statusCode).toBe(200);
        // The guesser is still limited, and so is a valid token this server never issued nor saw.
        expect((await send('GET', '/v1/accounts/1', guessedToken())).statusCode).toBe(429);
        expect((await send('GET', '/v1/accounts/1', admin)).statusCode).toBe(429);
      } finally {
        await app.close();
      }
    });

    it('a registration’s token', async () => {
      const { app, send, exhaust } = await limitedApp();
      try {
        await exhaust();
        const registered = await send('POST', '/v1/users', null, { username: 'natted-register', password: 'correct horse' });
        expect(registered.statusCode).toBe(201);
        const { accountId, token } = registered.json<{ accountId: number; token: string }>();
        expect((await send('GET', `/v1/accounts/${accountId}`, token)).statusCode).toBe(200);
      } finally {
        await app.close();
      }
    });
  });

  it('an IPv6 client counts by its /64: the addresses of one prefix share the failed-check limit, the next prefix has its own', async () => {
    const app = await buildTestApp(ns, { authFailureRateLimitPerMin: 2 });
    const get = (token: string, remoteAddress: string) =>
      app.inject({ method: 'GET', url: '/v1/accounts/1', remoteAddress, headers: { authorization: `Bearer ${token}` } });
    try {
      expect((await get(guessedToken(), '2001:db8:a:b::1')).statusCode).toBe(401);
      expect((await get(guessedToken(), '2001:db8:a:b:ffff:ffff:ffff:fffe')).statusCode).toBe(401);
      const limited = await get(guessedToken(), '2001:db8:a:b:1:2:3:4');
      expect(limited.statusCode).toBe(429);
      expect(limited.json<Answer>().error.code).toBe('rate_limited');
      expect((await get(guessedToken(), '2001:db8:a:c::1')).statusCode).toBe(401);
      // An IPv4 client seen through a dual-stack socket (::ffff:a.b.c.d) is that IPv4 address, one bucket.
      expect((await get(guessedToken(), '::ffff:10.4.0.1')).statusCode).toBe(401);
      expect((await get(guessedToken(), '10.4.0.1')).statusCode).toBe(401);
      expect((await get(guessedToken(), '::ffff:10.4.0.1')).statusCode).toBe(429);
      expect((await get(alice, '10.4.0.2')).statusCode).toBe(200); // IPv4 stays per address
    } finally {
      await app.close();
    }
  });

  it('logins and registrations from one IPv6 /64 share the credential limit', async () => {
    const app = await buildTestApp(ns, { credentialRateLimitPerMin: 2 });
    const login = (remoteAddress: string) =>
      app.inject({ method: 'POST', url: '/v1/sessions', remoteAddress, payload: { username: 'nobody-v6', password: 'wrong password' } });
    try {
      expect((await login('2001:db8:c:d::1')).statusCode).toBe(401);
      expect((await login('2001:db8:c:d:abcd::2')).statusCode).toBe(401);
      const limited = await login('2001:db8:c:d::3');
      expect(limited.statusCode).toBe(429);
      expect(limited.json<Answer>().error.message).toBe('more than 2 logins and registrations a minute from this address');
      expect((await login('2001:db8:c:e::1')).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  it('tokens of one account share its rate bucket: logging in again does not multiply the rate', async () => {
    const app = await buildTestApp(ns, { rateLimitPerS: 1, rateLimitBurst: 2 });
    try {
      const credentials = { username: 'sharer', password: 'correct horse' };
      const registered = await app.inject({ method: 'POST', url: '/v1/users', payload: credentials });
      expect(registered.statusCode).toBe(201);
      const { accountId, token: registrationToken } = registered.json<{ accountId: number; token: string }>();
      const sessions: string[] = [];
      for (let i = 0; i < 2; i++) {
        const login = await app.inject({ method: 'POST', url: '/v1/sessions', payload: credentials });
        expect(login.statusCode).toBe(201);
        sessions.push(login.json<{ token: string }>().token);
      }
      const get = (token: string, id = accountId) =>
        app.inject({ method: 'GET', url: `/v1/accounts/${id}`, headers: { authorization: `Bearer ${token}` } });
      expect((await get(registrationToken)).statusCode).toBe(200);
      expect((await get(sessions[0]!)).statusCode).toBe(200);
      // A third token of the same account finds the same bucket, spent.
      const third = await get(sessions[1]!);
      expect(third.statusCode).toBe(429);
      expect(third.headers['retry-after']).toBe('1');
      expect(third.json<Answer>().error.message).toBe(`more than 1 requests/s for account ${accountId} (all its tokens)`);
      // Another account, and an admin token, keep buckets of their own.
      expect((await get(alice, 1)).statusCode).toBe(200);
      expect((await get(admin)).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('an Idempotency-Key that is a UUID is derived like any other key: whoever learns it cannot post under it first', async () => {
    const key = randomUUID();
    // Bob learnt alice's key and posts under it first: it used to be her transaction's id itself.
    expect((await call('POST', '/v1/transactions', bob, deposit(2, 5, { id: key }))).status).toBe(202);
    const first = await call('POST', '/v1/transactions', alice, deposit(1, 800), { 'idempotency-key': key });
    expect(first.status).toBe(202); // was 409, forever
    expect(first.json.id).not.toBe(key);
    expect(first.json.accountId).toBe(1);
    expect(await new DerivedIds(ns.db, ns.name).idFor('idempotency-key', 1, key)).toBe(first.json.id);
    // One UUID in either case is one key.
    const again = await call('POST', '/v1/transactions', alice, deposit(1, 800), { 'idempotency-key': key.toUpperCase() });
    expect([200, 202]).toContain(again.status);
    expect(again.json.id).toBe(first.json.id);
    // A key and an id equal to it now name different transactions: refused, not guessed at.
    const same = randomUUID();
    const both = await call('POST', '/v1/transactions', alice, deposit(1, 801, { id: same }), { 'idempotency-key': same });
    expect(both.status).toBe(400);

    // An id a UUID key gave before (the key itself) stays that key's id, for its own account only.
    const earlier = randomUUID();
    expect((await call('POST', '/v1/transactions', alice, deposit(1, 802, { id: earlier }))).status).toBe(202); // the row the old code wrote
    const repeat = await call('POST', '/v1/transactions', alice, deposit(1, 802), { 'idempotency-key': earlier });
    expect([200, 202]).toContain(repeat.status);
    expect(repeat.json.id).toBe(earlier);
    const bobs = await call('POST', '/v1/transactions', bob, deposit(2, 802), { 'idempotency-key': earlier });
    expect(bobs.status).toBe(202);
    expect(bobs.json.id).not.toBe(earlier);
    // A key that has given its derived id keeps it, whatever is posted under the key's text as an id later.
    const later = randomUUID();
    const keyed = await call('POST', '/v1/transactions', alice, deposit(1, 803), { 'idempotency-key': later });
    expect(keyed.status).toBe(202);
    expect((await call('POST', '/v1/transactions', alice, deposit(1, 804, { id: later }))).status).toBe(202);
    const keyedAgain = await call('POST', '/v1/transactions', alice, deposit(1, 803), { 'idempotency-key': later });
    expect([200, 202]).toContain(keyedAgain.status);
    expect(keyedAgain.json.id).toBe(keyed.json.id);

    // The same for a webhook transaction_id that is a UUID.
    const order = randomUUID();
    expect((await call('POST', '/v1/transactions', bob, deposit(2, 5, { id: order }))).status).toBe(202);
    const hook = { transaction_id: order, source_account: 1, amount: '1.75', currency: 'EUR' };
    const hooked = await call('POST', '/v1/webhooks/transactions', alice, hook);
    expect(hooked.status).toBe(202);
    expect(hooked.json.id).not.toBe(order);
    expect((await call('POST', '/v1/webhooks/transactions', alice, hook)).json.id).toBe(hooked.json.id);
  });
});
