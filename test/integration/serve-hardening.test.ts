import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createLogger } from '../../src/log.js';
import { DerivedIds, legacyDerivedId } from '../../src/serve/derived-ids.js';
import type { ServeOptions } from '../../src/serve/serve-context.js';
import { startServer, type RunningServer } from '../../src/serve/serve.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw } from '../helpers/publish.js';
import { depositBody, insertTestToken, IN_PROCESS_SERVE_OPTIONS } from '../helpers/serve.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

// What a review of `txsim serve` found, each against the real broker and database: ids another
// account could compute and take, the feed bypassing the rate limit and telling which ids exist,
// tokens reaching the log, a string read as a number, webhook repeats with another destination, and
// integer ids read as JavaScript reads text.

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
  error?: { code: string; details: unknown };
}

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
  let ns: TestNamespace;
  let server: RunningServer;
  let worker: WorkerProcess;
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
    ns = await createTestNamespace('servehard');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(3);
    server = await startServer(ns.config, OPTIONS, logged.log);
    worker = startWorker('shw1', ns.env);
    admin = (await insertTestToken(ns.db, { admin: true })).token;
    alice = (await insertTestToken(ns.db, { accountId: 1 })).token;
    bob = (await insertTestToken(ns.db, { accountId: 2 })).token;
  });

  afterAll(async () => {
    await worker?.stop();
    await server?.close();
    await ns?.cleanup();
  });

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
});
