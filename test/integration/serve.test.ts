import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { topologyFor } from '../../src/amqp/topology.js';
import { revokeToken } from '../../src/db/api-tokens.js';
import { createLogger } from '../../src/log.js';
import { DerivedIds } from '../../src/serve/derived-ids.js';
import { FeedHub } from '../../src/serve/feed-hub.js';
import type { ServeOptions } from '../../src/serve/serve-context.js';
import type { RunningServer } from '../../src/serve/serve.js';
import { buildServer } from '../../src/serve/server.js';
import { TransactionPublisher } from '../../src/serve/transaction-publisher.js';
import { runIdForSeed } from '../../src/domain/ids.js';
import { createGenerator } from '../../src/gen/generator.js';
import { sendOverHttp } from '../../src/gen/http-sender.js';
import type { TestNamespace } from '../helpers/namespace.js';
import {
  buildTestApp,
  depositBody,
  insertTestToken,
  IN_PROCESS_SERVE_OPTIONS,
  startServeFixture,
  type ServeFixture,
} from '../helpers/serve.js';
import { waitFor } from '../helpers/txsim.js';

// `txsim serve` in-process on port 0 against the real RabbitMQ and database, with a real worker
// applying what it accepts: the HTTP contract, 202 after confirm, idempotency, auth scoping, the feed.

const OPTIONS: ServeOptions = IN_PROCESS_SERVE_OPTIONS;

/** The fields the tests read from API answers (each answer has some of them). */
interface Answer {
  id: string;
  status: string;
  accountId: number;
  amountMinor: string;
  balanceAfterMinor: string | null;
  attempts: number;
  type: string;
  currency: string;
  destinationAccount: number | null;
  transaction_id: string;
  timeline: { state: string; at: string }[];
  error: { code: string; message: string; details: { path: string; message: string }[] };
  items: { id: string | number; processedAt: string }[];
  nextCursor: string | null;
  balance: string;
  balanceMinor: string;
  counts: { applied: number };
  days: { count: number; totalMinor: string; averageMinor: string; type: string; currency: string }[];
  username: string;
  token: string;
  openapi: string;
  paths: Record<string, unknown>;
  current_time: string;
  checks: unknown;
}

/** One message from the feed: an event, a subscribe acknowledgement or an error. */
interface FeedMessage {
  event?: string;
  transactionId?: string;
  accountId?: number;
  amountMinor?: string;
  balanceAfterMinor?: string | null;
  status?: string;
  subscribed?: unknown;
  error?: { code: string };
}

const feedMessage = (data: unknown) => JSON.parse(String(data)) as FeedMessage;

/** The first row of a query (mysql2 through knex.raw answers [rows, fields]). */
async function sqlRow<T>(ns: TestNamespace, sql: string, bindings: readonly (string | number)[] = []): Promise<T> {
  const [rows] = (await ns.db.raw(sql, bindings)) as [T[]];
  const row = rows[0];
  if (row === undefined) throw new Error(`no row: ${sql}`);
  return row;
}

describe('txsim serve', () => {
  let fixture: ServeFixture | undefined;
  let ns: TestNamespace;
  let server: RunningServer;
  let admin: string;
  let alice: string; // account 1
  let bob: string; // account 2

  const call = async (
    method: string,
    path: string,
    options: { token?: string | null; body?: unknown; raw?: string; contentType?: string; headers?: Record<string, string> } = {},
  ) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined;
    if (options.raw !== undefined || options.body !== undefined) {
      body = options.raw ?? JSON.stringify(options.body);
      headers['content-type'] = options.contentType ?? 'application/json';
    }
    const response = await fetch(`${server.url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
    const text = await response.text();
    return { status: response.status, headers: response.headers, json: text ? (JSON.parse(text) as Answer) : null };
  };
  const deposit = depositBody;

  beforeAll(async () => {
    fixture = await startServeFixture('serve', 'sw1');
    ({ ns, server, admin, alice, bob } = fixture);
  });

  afterAll(() => fixture?.close());

  it('answers /healthz without dependencies and /readyz with both services', async () => {
    const health = await call('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ status: 'HEALTHY' });
    expect(Number.isNaN(Date.parse(health.json!.current_time))).toBe(false);
    const ready = await call('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json).toMatchObject({ status: 'READY', checks: { rabbitmq: { ok: true }, database: { ok: true } } });
  });

  it('POST → 202 after confirm with Location; a worker applies it; the status and the feed follow it to applied', async () => {
    const id = '0b7f3c6e-1d2a-4b4c-8e9f-0a1b2c3d4e5f';
    const posted = await call('POST', '/v1/transactions', { token: alice, body: deposit(1, 1234, { id }) });
    expect(posted.status).toBe(202);
    expect(posted.headers.get('location')).toBe(`/v1/transactions/${id}`);
    expect(posted.json).toMatchObject({ id, status: 'queued', accountId: 1, amountMinor: '1234' });
    expect(posted.json!.timeline.map((t: { state: string }) => t.state)).toEqual(['accepted', 'queued']);
    // The message is on the broker exactly as gen sends it (the worker may take it any moment, so check the DB record instead of the queue).
    await waitFor(
      async () => (await call('GET', `/v1/transactions/${id}`, { token: alice })).json?.status === 'applied',
      30_000,
      'applied',
    );
    const status = await call('GET', `/v1/transactions/${id}`, { token: alice });
    expect(status.json).toMatchObject({ status: 'applied', balanceAfterMinor: '101234', attempts: 1 });
    expect(status.json!.timeline.map((t: { state: string }) => t.state)).toEqual(['accepted', 'queued', 'applied']);
    const [row] = await ns.db('transactions').where('id', id).select<{ status: string; amount_minor: string }[]>('status', 'amount_minor');
    expect(row).toMatchObject({ status: 'applied', amount_minor: '1234' });

    // Same id, same body: the current status, nothing re-applied.
    const again = await call('POST', '/v1/transactions', { token: alice, body: deposit(1, 1234, { id }) });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ id, status: 'applied' });
    // Same id, other body: 409.
    const conflict = await call('POST', '/v1/transactions', { token: alice, body: deposit(1, 999, { id }) });
    expect(conflict.status).toBe(409);
    expect(conflict.json!.error.code).toBe('conflict');
    const entries = await sqlRow<{ n: string }>(ns, 'SELECT COUNT(*) AS n FROM ledger_entries WHERE transaction_id = ?', [id]);
    expect(Number(entries.n)).toBe(2);
  });

  it('the WebSocket feed pushes queued → applied to a transaction subscriber and closes normally', async () => {
    const id = '1b7f3c6e-1d2a-4b4c-8e9f-0a1b2c3d4e5f';
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/v1/stream?token=${alice}`);
    const events: FeedMessage[] = [];
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    socket.on('message', (data) => events.push(feedMessage(data)));
    await new Promise<void>((resolve, reject) => {
      socket.on('open', () => resolve());
      socket.on('error', reject);
    });
    // Subscribed before it exists (the server waits for it), then posted: queued comes from this
    // server as it accepts, applied from the committed outbox event through the accounting exchange.
    socket.send(JSON.stringify({ subscribe: 'transaction', id }));
    await waitFor(() => events.some((e) => e.status === 'unknown'), 5_000, 'subscription');
    const posted = await call('POST', '/v1/transactions', { token: alice, body: deposit(1, 500, { id }) });
    expect(posted.status).toBe(202);
    const code = await Promise.race([
      closed,
      new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`no close; events ${JSON.stringify(events)}`)), 30_000)),
    ]);
    expect(code).toBe(1000);
    expect(events.at(-1)).toMatchObject({ event: 'applied', transactionId: id, accountId: 1, amountMinor: '500' });
    expect(events.at(-1)!.balanceAfterMinor).toMatch(/^\d+$/);
    expect(events.filter((e) => e.event).map((e) => e.event)).toEqual(['queued', 'applied']);
  });

  it('a subscriber to a finished transaction gets its final state at once; another account is answered as for an unknown id', async () => {
    const id = '0b7f3c6e-1d2a-4b4c-8e9f-0a1b2c3d4e5f'; // applied in the first test
    const follow = async (token: string) => {
      const socket = new WebSocket(`${server.url.replace('http', 'ws')}/v1/stream?token=${token}`);
      const events: FeedMessage[] = [];
      socket.on('message', (data) => events.push(feedMessage(data)));
      const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
      await new Promise<void>((resolve) => socket.on('open', () => resolve()));
      socket.send(JSON.stringify({ subscribe: 'transaction', id }));
      return { socket, events, closed };
    };
    const own = await follow(alice);
    expect(await own.closed).toBe(1000);
    expect(own.events).toEqual([expect.objectContaining({ event: 'applied', transactionId: id, balanceAfterMinor: '101234' })]);
    const other = await follow(bob);
    await waitFor(() => other.events.length > 0, 5_000, 'an answer');
    // Not `not_found`: that would tell the id exists (an unknown id waits, answered `unknown`).
    expect(other.events[0]).toEqual({ subscribed: { kind: 'transaction', id }, status: 'unknown' });
    other.socket.close();
  });

  it('an account subscriber receives the applied event of a transaction posted after it subscribed', async () => {
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/v1/stream`, { headers: { authorization: `Bearer ${bob}` } });
    const events: FeedMessage[] = [];
    socket.on('message', (data) => events.push(feedMessage(data)));
    await new Promise<void>((resolve, reject) => {
      socket.on('open', () => resolve());
      socket.on('error', reject);
    });
    socket.send(JSON.stringify({ subscribe: 'account', id: 1 })); // not bob's
    socket.send(JSON.stringify({ subscribe: 'all' })); // admin only
    socket.send(JSON.stringify({ subscribe: 'account', id: 2 }));
    await waitFor(() => events.some((e) => e.subscribed), 5_000, 'subscribed');
    expect(events.filter((e) => e.error?.code === 'forbidden')).toHaveLength(2);
    const posted = await call('POST', '/v1/transactions', { token: bob, body: deposit(2, 700) });
    expect(posted.status).toBe(202);
    await waitFor(() => events.some((e) => e.event === 'applied' && e.transactionId === posted.json!.id), 30_000, 'applied event');
    // Nothing of account 1 reached bob.
    expect(events.filter((e) => e.accountId === 1)).toHaveLength(0);
    socket.close();
  });

  it('refuses invalid bodies with every violation, wrong content types, oversized bodies', async () => {
    const bad = await call('POST', '/v1/transactions', {
      token: admin,
      body: { type: 'card_payment', accountId: 'x', amountMinor: -3, currency: 'eur', extra: 1 },
    });
    expect(bad.status).toBe(400);
    expect(bad.json!.error.code).toBe('invalid_request');
    expect(bad.json!.error.details).toEqual(
      expect.arrayContaining([
        { path: '/merchant', message: 'is required' },
        { path: '/extra', message: 'is not allowed' },
        { path: '/accountId', message: 'must be integer' },
        { path: '/amountMinor', message: 'must be >= 1' },
        { path: '/currency', message: 'must match pattern "^[A-Z]{3}$"' },
      ]),
    );
    // A string amount is not coerced (the contract says integer), a float is not an integer.
    const stringAmount = await call('POST', '/v1/transactions', { token: admin, body: deposit(1, '100' as unknown as number) });
    expect(stringAmount.json!.error.details).toEqual([{ path: '/amountMinor', message: 'must be integer' }]);
    const merchantOnDeposit = await call('POST', '/v1/transactions', { token: admin, body: deposit(1, 100, { merchant: 'Cafe' }) });
    expect(merchantOnDeposit.json!.error.details).toEqual([{ path: '/merchant', message: 'is only allowed on card_payment' }]);
    expect((await call('POST', '/v1/transactions', { token: admin, raw: '{"type":', contentType: 'application/json' })).status).toBe(400);
    const text = await call('POST', '/v1/transactions', { token: admin, raw: 'hello', contentType: 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.json!.error.code).toBe('unsupported_media_type');
    // A JSON reader gives 1999.9999999999999 and 1e2 as integers: refused from their text, not applied as 2000 / 100.
    for (const amount of ['1999.9999999999999', '1e2', '100.0']) {
      const rounded = await call('POST', '/v1/transactions', {
        token: admin,
        raw: `{"type":"deposit","accountId":1,"amountMinor":${amount},"currency":"EUR"}`,
      });
      expect(rounded.status, amount).toBe(400);
      expect(rounded.json!.error).toMatchObject({
        code: 'invalid_request',
        message: `amountMinor is written as ${amount}: integers only, as plain digits (no fraction or exponent)`,
        details: [{ path: '/amountMinor', message: 'must be an integer written as plain digits (no fraction or exponent)' }],
      });
    }
    // Ajv's uuid format takes a URN, and Date cannot read a leap second: both refused before anything is queued.
    const urn = await call('POST', '/v1/transactions', { token: admin, body: deposit(1, 100, { id: `urn:uuid:${randomUUID()}` }) });
    expect(urn.status).toBe(400);
    expect(urn.json!.error.details).toEqual([{ path: '/id', message: expect.stringMatching(/^must match pattern/) }]);
    const leap = await call('POST', '/v1/transactions', {
      token: admin,
      body: {
        type: 'card_authorization',
        accountId: 1,
        amountMinor: 100,
        currency: 'EUR',
        merchant: 'Hotel',
        expiresAt: '2030-12-31T23:59:60Z',
      },
    });
    expect(leap.status).toBe(400);
    expect(leap.json!.error.details).toEqual([{ path: '/expiresAt', message: 'is not a time the ledger can keep' }]);
    const run = await call('POST', '/v1/transactions', {
      token: admin,
      body: deposit(1, 100),
      headers: { 'x-txsim-run': `urn:uuid:${randomUUID()}` },
    });
    expect(run.status).toBe(400);
    const huge = await call('POST', '/v1/transactions', { token: admin, body: deposit(1, 100, { pad: 'x'.repeat(20_000) }) });
    expect(huge.status).toBe(413);
    expect(huge.json!.error.code).toBe('payload_too_large');
    // Nothing of these reached the database.
    const n = await sqlRow<{ n: string }>(ns, 'SELECT COUNT(*) AS n FROM api_submissions WHERE amount_minor = 100');
    expect(Number(n.n)).toBe(0);
  });

  it('Idempotency-Key carries the id; a repeat while queued is 202 or 200, never a second publish', async () => {
    const first = await call('POST', '/v1/transactions', {
      token: alice,
      body: deposit(1, 321),
      headers: { 'idempotency-key': 'order-77' },
    });
    expect(first.status).toBe(202);
    const repeat = await call('POST', '/v1/transactions', {
      token: alice,
      body: deposit(1, 321),
      headers: { 'idempotency-key': 'order-77' },
    });
    expect([200, 202]).toContain(repeat.status);
    expect(repeat.json!.id).toBe(first.json!.id);
    const other = await call('POST', '/v1/transactions', {
      token: alice,
      body: deposit(1, 322),
      headers: { 'idempotency-key': 'order-77' },
    });
    expect(other.status).toBe(409);
    await waitFor(
      async () => (await call('GET', `/v1/transactions/${first.json!.id}`, { token: alice })).json?.status === 'applied',
      30_000,
      'applied',
    );
    const entries = await sqlRow<{ n: string }>(ns, 'SELECT COUNT(*) AS n FROM ledger_entries WHERE transaction_id = ?', [first.json!.id]);
    expect(Number(entries.n)).toBe(2);
  });

  it('scopes tokens: no token or a bad, revoked or expired one is 401; account A cannot read or submit for B', async () => {
    expect((await call('GET', '/v1/accounts/1')).status).toBe(401);
    expect((await call('GET', '/v1/accounts/1', { token: 'txsim_0000000000000000_' + 'a'.repeat(43) })).status).toBe(401);
    expect((await call('GET', '/v1/accounts/1', { token: alice.slice(0, -1) + (alice.endsWith('a') ? 'b' : 'a') })).status).toBe(401);
    const revoked = await insertTestToken(ns.db, { accountId: 1 });
    expect((await call('GET', '/v1/accounts/1', { token: revoked.token })).status).toBe(200);
    await revokeToken(ns.db, revoked.id);
    expect((await call('GET', '/v1/accounts/1', { token: revoked.token })).status).toBe(401);
    const expired = await insertTestToken(ns.db, { accountId: 1 }, new Date(Date.now() - 1_000));
    expect((await call('GET', '/v1/accounts/1', { token: expired.token })).status).toBe(401);

    expect((await call('GET', '/v1/accounts/2', { token: alice })).status).toBe(403);
    expect((await call('GET', '/v1/accounts/2/transactions', { token: alice })).status).toBe(403);
    expect((await call('POST', '/v1/transactions', { token: alice, body: deposit(2, 100) })).status).toBe(403);
    // Bob's transaction is "not found" for alice: a 403 would confirm it exists.
    const bobs = await call('POST', '/v1/transactions', { token: bob, body: deposit(2, 101) });
    expect(bobs.status).toBe(202);
    expect((await call('GET', `/v1/transactions/${bobs.json!.id}`, { token: alice })).status).toBe(404);
    expect((await call('GET', `/v1/transactions/${bobs.json!.id}`, { token: admin })).status).toBe(200);
    // Settled before the tests after this one count applied deposits.
    await waitFor(
      async () => (await call('GET', `/v1/transactions/${bobs.json!.id}`, { token: admin })).json?.status === 'applied',
      30_000,
      "bob's deposit applied",
    );
    const list = await call('GET', '/v1/accounts', { token: alice });
    expect(list.json!.items.map((a) => a.id)).toEqual([1]);
    expect((await call('GET', '/v1/transactions/00000000-0000-4000-8000-000000000000', { token: admin })).status).toBe(404);
    // A WebSocket upgrade without a token is refused before the upgrade.
    const refused = await new Promise<number>((resolve) => {
      const s = new WebSocket(`${server.url.replace('http', 'ws')}/v1/stream`);
      s.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      s.on('error', () => {});
    });
    expect(refused).toBe(401);
  });

  it('lists accounts with a cursor, an account and its history, newest first, with bounded pages', async () => {
    const page1 = await call('GET', '/v1/accounts?limit=2', { token: admin });
    expect(page1.json!.items.map((a) => a.id)).toEqual([1, 2]);
    const page2 = await call('GET', `/v1/accounts?limit=2&cursor=${page1.json!.nextCursor}`, { token: admin });
    expect(page2.json!.items.map((a) => a.id)).toEqual([3]);
    expect(page2.json!.nextCursor).toBeNull();
    expect((await call('GET', '/v1/accounts?limit=100000', { token: admin })).status).toBe(400);
    expect((await call('GET', '/v1/accounts?cursor=garbage', { token: admin })).status).toBe(400);

    const account = await call('GET', '/v1/accounts/1', { token: alice });
    expect(account.status).toBe(200);
    expect(account.json).toMatchObject({ id: 1, currency: 'EUR' });
    expect(account.json!.balanceMinor).toMatch(/^\d+$/);
    expect(account.json!.counts.applied).toBeGreaterThanOrEqual(3);
    expect((await call('GET', '/v1/accounts/999', { token: admin })).status).toBe(404);

    const history = await call('GET', '/v1/accounts/1/transactions?limit=2&type=deposit', { token: alice });
    expect(history.status).toBe(200);
    expect(history.json!.items).toHaveLength(2);
    const [newer, older] = history.json!.items as { processedAt: string }[];
    expect(Date.parse(newer!.processedAt)).toBeGreaterThanOrEqual(Date.parse(older!.processedAt));
    const next = await call('GET', `/v1/accounts/1/transactions?limit=2&type=deposit&cursor=${history.json!.nextCursor}`, { token: alice });
    const ids = new Set([...history.json!.items, ...next.json!.items].map((t) => t.id));
    expect(ids.size).toBe(history.json!.items.length + next.json!.items.length);
    expect((await call('GET', '/v1/accounts/1/transactions?status=bogus', { token: alice })).status).toBe(400);
    const statement = await call('GET', '/v1/accounts/1/statement', { token: alice });
    expect(statement.status).toBe(200);
    expect(Array.isArray(statement.json!.items)).toBe(true);
  });

  it('daily analytics: count, total and average per type and currency; from > to is 400', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const daily = await call('GET', `/v1/analytics/daily?from=${today}&to=${today}&type=deposit`, { token: admin });
    expect(daily.status).toBe(200);
    const [row] = daily.json!.days as { count: number; totalMinor: string; averageMinor: string; type: string }[];
    expect(row).toMatchObject({ type: 'deposit', currency: 'EUR' });
    const sql = await sqlRow<{ n: string; s: string }>(
      ns,
      `SELECT COUNT(*) AS n, SUM(amount_minor) AS s FROM transactions WHERE status = 'applied' AND type = 'deposit'`,
    );
    expect(row!.count).toBe(Number(sql.n));
    expect(row!.totalMinor).toBe(String(sql.s));
    expect((await call('GET', '/v1/analytics/daily?from=2026-02-02&to=2026-02-01', { token: admin })).status).toBe(400);
    // Without from and to, an account token's span is its own account's traffic: account 3 has none (its opening is no traffic).
    const quiet = (await insertTestToken(ns.db, { accountId: 3 })).token;
    expect((await call('GET', '/v1/analytics/daily', { token: quiet })).json).toEqual({ from: null, to: null, days: [] });
    expect((await call('GET', '/v1/analytics/daily', { token: admin })).json).toMatchObject({ from: today, to: today });
  });

  it('webhook ingest: decimal amounts from their text, deduplicated on transaction_id', async () => {
    const post = (raw: string) => call('POST', '/v1/webhooks/transactions', { token: alice, raw });
    const asNumber = await post('{"transaction_id":"wh-1","source_account":1,"destination_account":2,"amount":100.50,"currency":"EUR"}');
    expect(asNumber.status).toBe(202);
    expect(asNumber.json).toMatchObject({ transaction_id: 'wh-1', amountMinor: '10050', type: 'withdrawal', destinationAccount: 2 });
    const again = await post('{"transaction_id":"wh-1","source_account":1,"destination_account":2,"amount":"100.50","currency":"EUR"}');
    expect([200, 202]).toContain(again.status);
    expect(again.json!.id).toBe(asNumber.json!.id);
    const tooPrecise = await post('{"transaction_id":"wh-2","source_account":1,"amount":0.001,"currency":"EUR"}');
    expect(tooPrecise.status).toBe(400);
    expect(tooPrecise.json!.error.details).toEqual([{ path: '/amount', message: 'amount 0.001 has more than 2 decimals for EUR' }]);
    expect((await post('{"transaction_id":"wh-3","source_account":1,"amount":-1,"currency":"EUR"}')).status).toBe(400);
    expect((await post('{"transaction_id":"wh-4","source_account":2,"amount":1,"currency":"EUR"}')).status).toBe(403);
    // Another account's provider numbering its orders the same way: its own transaction, not a conflict with alice's.
    const bobs = await call('POST', '/v1/webhooks/transactions', {
      token: bob,
      raw: '{"transaction_id":"wh-1","source_account":2,"amount":"3.00","currency":"EUR"}',
    });
    expect(bobs.status).toBe(202);
    expect(bobs.json).toMatchObject({ transaction_id: 'wh-1', accountId: 2, amountMinor: '300' });
    expect(bobs.json!.id).not.toBe(asNumber.json!.id);
  });

  it('registers a user (account + token) and logs in; a wrong password is 401', async () => {
    const reg = await call('POST', '/v1/users', { body: { username: 'carol', password: 'correct horse' } });
    expect(reg.status).toBe(201);
    expect(reg.json).toMatchObject({ username: 'carol', currency: 'EUR' });
    const own = await call('GET', `/v1/accounts/${reg.json!.accountId}`, { token: reg.json!.token });
    expect(own.json).toMatchObject({ balanceMinor: '0' });
    expect((await call('POST', '/v1/users', { body: { username: 'carol', password: 'another one' } })).status).toBe(409);
    const notMoney = await call('POST', '/v1/users', { body: { username: 'dave', password: 'correct horse', currency: 'ZZZ' } });
    expect(notMoney.status).toBe(400);
    expect(notMoney.json!.error.details).toEqual([{ path: '/currency', message: 'ZZZ is not one (e.g. EUR, USD, JPY)' }]);
    const login = await call('POST', '/v1/sessions', { body: { username: 'carol', password: 'correct horse' } });
    expect(login.status).toBe(201);
    expect((await call('GET', `/v1/accounts/${reg.json!.accountId}`, { token: login.json!.token })).status).toBe(200);
    expect((await call('POST', '/v1/sessions', { body: { username: 'carol', password: 'wrong horse' } })).status).toBe(401);
    expect((await call('POST', '/v1/sessions', { body: { username: 'nobody', password: 'wrong horse' } })).status).toBe(401);
    const user = await sqlRow<{ password_hash: string }>(ns, 'SELECT password_hash FROM api_users WHERE username = ?', ['carol']);
    expect(user.password_hash).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(user.password_hash).not.toContain('correct horse');
  });

  it('registrations at once each get their own new account (they deadlocked on the highest account row)', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `burst${i}`);
    const answers = await Promise.all(
      names.map((username) => call('POST', '/v1/users', { body: { username, password: 'correct horse' } })),
    );
    expect(answers.map((a) => a.status)).toEqual(names.map(() => 201));
    const accountIds = answers.map((a) => a.json!.accountId);
    expect(new Set(accountIds).size).toBe(names.length);
    const [rows] = (await ns.db.raw('SELECT username, account_id FROM api_users WHERE username LIKE ?', ['burst%'])) as [
      { username: string; account_id: string | number }[],
    ];
    expect(Object.fromEntries(rows.map((r) => [r.username, Number(r.account_id)]))).toEqual(
      Object.fromEntries(names.map((name, i) => [name, accountIds[i]])),
    );
  });

  it('serves OpenAPI 3.1 listing every route, and Swagger UI', async () => {
    const doc = await call('GET', '/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.json!.openapi).toBe('3.1.0');
    const paths = Object.keys(doc.json!.paths);
    for (const path of [
      '/v1/transactions',
      '/v1/transactions/{id}',
      '/v1/webhooks/transactions',
      '/v1/accounts',
      '/v1/accounts/{id}',
      '/v1/accounts/{id}/transactions',
      '/v1/accounts/{id}/statement',
      '/v1/analytics/daily',
      '/v1/users',
      '/v1/sessions',
      '/v1/stream',
      '/healthz',
      '/readyz',
    ]) {
      expect(paths, path).toContain(path);
    }
    const ui = await fetch(`${server.url}/docs/`);
    expect(ui.status).toBe(200);
  });

  it('2,500 concurrent POSTs from 50 clients: every 202 is applied exactly once', async () => {
    const ids: string[] = [];
    const statuses = new Map<number, number>();
    let next = 0;
    const client = async () => {
      for (let i = next++; i < 2_500; i = next++) {
        const response = await call('POST', '/v1/transactions', { token: admin, body: deposit(3, 1 + (i % 50)) });
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        if (response.status === 202) ids.push(response.json!.id);
      }
    };
    await Promise.all(Array.from({ length: 50 }, client));
    expect(Object.fromEntries(statuses)).toEqual({ 202: 2_500 });
    await waitFor(
      async () => {
        const row = await sqlRow<{ n: string }>(ns, `SELECT COUNT(*) AS n FROM transactions WHERE account_id = 3 AND type = 'deposit'`);
        return Number(row.n) >= 2_500;
      },
      90_000,
      '2,500 outcomes',
      500,
    );
    const outcomes = await sqlRow<{ n: string; applied: string }>(
      ns,
      `SELECT COUNT(*) AS n, SUM(status = 'applied') AS applied FROM transactions WHERE account_id = 3 AND type = 'deposit'`,
    );
    expect(Number(outcomes.n)).toBe(2_500);
    expect(Number(outcomes.applied)).toBe(2_500);
    const entries = await sqlRow<{ n: string; s: string }>(
      ns,
      `SELECT COUNT(*) AS n, SUM(amount_minor) AS s FROM ledger_entries WHERE account_id = 3 AND transaction_id IN (SELECT id FROM transactions WHERE account_id = 3 AND type = 'deposit')`,
    );
    expect(Number(entries.n)).toBe(2_500);
    const expectedTotal = Array.from({ length: 2_500 }, (_, i) => 1 + (i % 50)).reduce((a, b) => a + b, 0);
    expect(String(entries.s)).toBe(String(expectedTotal));
    expect(new Set(ids).size).toBe(2_500);
  });

  it('sendOverHttp (gen --via http): a seeded stream through the API, the run id reaches the workers', async () => {
    const runId = runIdForSeed('serve-http');
    const generator = createGenerator({
      runId,
      seed: 'serve-http',
      accounts: [1, 2].map((id) => ({ id, currency: 'EUR' })),
      mix: { deposit: 1, withdrawal: 1, card_payment: 1 },
      amountMinMinor: 1,
      amountMaxMinor: 100,
      accountsDist: { kind: 'uniform' },
      invalidShare: 0.1,
    });
    const summary = await sendOverHttp(
      (index, createdAt) => {
        const generated = generator.at(index, createdAt);
        return { ...generated, poison: generated.kind !== 'valid' };
      },
      {
        baseUrl: server.url,
        token: admin,
        runId,
        count: 300,
        concurrency: 20,
        ratePerS: 0,
        requestTimeoutMs: 10_000,
      },
    );
    expect(summary.sent).toBe(300);
    expect(summary.failed).toBe(0);
    // Poison the API can see is refused at the door (400), the rest accepted; unknown accounts and
    // currency mismatches are accepted and rejected by the worker, as over AMQP.
    expect(summary.accepted + (summary.byStatus['400'] ?? 0)).toBe(300);
    expect(summary.byStatus['400']).toBeGreaterThan(0);
    expect(summary.refused).toBe(summary.byStatus['400']);
    expect(summary.requestLatencyMs.p50).toBeGreaterThan(0);
    await waitFor(
      async () => {
        const row = await sqlRow<{ n: string }>(ns, 'SELECT COUNT(*) AS n FROM transactions WHERE run_id = ?', [runId]);
        return Number(row.n) === summary.accepted;
      },
      60_000,
      'every accepted id recorded under the run',
    );
  });

  /** The app in-process (no listening socket, requests by inject) with other limits than OPTIONS'. */
  const limitedServer = (limits: Partial<ServeOptions>) => buildTestApp(ns, limits);

  it('rate limiting per token answers 429 with Retry-After', async () => {
    const app = await limitedServer({ rateLimitPerS: 1, rateLimitBurst: 2 });
    const get = (token: string) => app.inject({ method: 'GET', url: '/v1/accounts/1', headers: { authorization: `Bearer ${token}` } });
    expect((await get(alice)).statusCode).toBe(200);
    expect((await get(alice)).statusCode).toBe(200);
    const limited = await get(alice);
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(limited.json<Answer>().error.code).toBe('rate_limited');
    expect((await get(admin)).statusCode).toBe(200); // another token, another bucket
    await app.close();
  });

  it('logins and registrations are limited per client address, whatever the username: 429 with Retry-After', async () => {
    const app = await limitedServer({ credentialRateLimitPerMin: 3 });
    const login = (username: string, remoteAddress = '10.0.0.1') =>
      app.inject({ method: 'POST', url: '/v1/sessions', remoteAddress, payload: { username, password: 'guess number 1' } });
    for (const name of ['nobody1', 'nobody2', 'nobody3']) expect((await login(name)).statusCode).toBe(401);
    const limited = await login('nobody4');
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('20');
    expect(limited.json<Answer>().error.code).toBe('rate_limited');
    const register = await app.inject({
      method: 'POST',
      url: '/v1/users',
      remoteAddress: '10.0.0.1',
      payload: { username: 'limited-user', password: 'correct horse' },
    });
    expect(register.statusCode).toBe(429);
    expect((await login('nobody5', '10.0.0.2')).statusCode).toBe(401); // another address, another bucket
    // Token routes keep their own limit (per token, off here).
    expect(
      (await app.inject({ method: 'GET', url: '/v1/accounts/1', remoteAddress: '10.0.0.1', headers: { authorization: `Bearer ${alice}` } }))
        .statusCode,
    ).toBe(200);
    await app.close();
  });

  it('behind a trusted proxy the credential limit counts X-Forwarded-For; from anyone else the header is ignored', async () => {
    const app = await limitedServer({ credentialRateLimitPerMin: 1, trustProxy: ['10.0.0.9'] });
    const login = (remoteAddress: string, forwardedFor: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/sessions',
        remoteAddress,
        headers: { 'x-forwarded-for': forwardedFor },
        payload: { username: 'nobody', password: 'guess number 1' },
      });
    // Through the proxy: one bucket per client it names.
    expect((await login('10.0.0.9', '203.0.113.1')).statusCode).toBe(401);
    expect((await login('10.0.0.9', '203.0.113.2')).statusCode).toBe(401);
    expect((await login('10.0.0.9', '203.0.113.1')).statusCode).toBe(429);
    // A client that writes the header itself is still counted by its own address.
    expect((await login('10.0.0.7', '203.0.113.3')).statusCode).toBe(401);
    expect((await login('10.0.0.7', '203.0.113.4')).statusCode).toBe(429);
    await app.close();
  });

  it('broker unreachable: 503 with Retry-After, nothing marked published, the same request later succeeds', async () => {
    const topology = topologyFor(ns.name, ns.config.retryDelaysMs);
    const log = createLogger('silent');
    const downPublisher = new TransactionPublisher(
      { amqpUrl: 'amqp://guest:guest@127.0.0.1:1', topology, clientName: 'test down', windowMax: 10, confirmTimeoutMs: 1_000 },
      log,
    );
    const app = await buildServer({
      db: ns.db,
      publisher: downPublisher,
      hub: new FeedHub({ sendBufferBytesMax: 1_000_000, subscriptionsMax: 10 }),
      log,
      namespace: ns.name,
      ids: new DerivedIds(ns.db, ns.name),
      options: OPTIONS,
    });
    const id = '2b7f3c6e-1d2a-4b4c-8e9f-0a1b2c3d4e5f';
    const response = await app.inject({
      method: 'POST',
      url: '/v1/transactions',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      payload: deposit(1, 42, { id }),
    });
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(response.json<Answer>().error.code).toBe('broker_unavailable');
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json<Answer>().error.message).toBe('rabbitmq unreachable');
    const row = await sqlRow<{ published_at: Date | null }>(ns, 'SELECT published_at FROM api_submissions WHERE id = ?', [id]);
    expect(row.published_at).toBeNull();
    await app.close();
    await downPublisher.close();
    // Repeated against a server whose broker is up, the same request is published now.
    const retried = await call('POST', '/v1/transactions', { token: alice, body: deposit(1, 42, { id }) });
    expect(retried.status).toBe(202);
    await waitFor(
      async () => (await call('GET', `/v1/transactions/${id}`, { token: alice })).json?.status === 'applied',
      30_000,
      'applied after retry',
    );
  });
});
