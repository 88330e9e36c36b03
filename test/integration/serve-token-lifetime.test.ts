import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { revokeToken } from '../../src/db/api-tokens.js';
import { createLogger } from '../../src/log.js';
import { SERVE_DEFAULTS, type ServeOptions } from '../../src/serve/serve-context.js';
import { startServer, type RunningServer } from '../../src/serve/serve.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { insertTestToken } from '../helpers/serve.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { runTxsim, waitFor } from '../helpers/txsim.js';

// A feed or dashboard socket is authenticated once, at the upgrade. These tests hold sockets open
// while their tokens are revoked or expire (in-process `serve` against the real services, no worker:
// the `queued` events come from the server itself as it accepts a transaction) and check that exactly
// those sockets are closed with 1008, while the database is up and while it is not.

const HEARTBEAT_MS = 200;
const OPTIONS: ServeOptions = { ...SERVE_DEFAULTS, port: 0, host: '127.0.0.1', noAuth: false, heartbeatMs: HEARTBEAT_MS, rateLimitPerS: 0 };
/**
 * Revocation is noticed by the next tick (a heartbeat, the query, the close handshake: about 600 ms
 * here); the bound is loose so that a busy CI machine does not fail it, and still far below "never".
 */
const REVOKE_NOTICED_MS_MAX = 5_000;

/** One message from the feed (an event or a subscribe acknowledgement) or the dashboard (hello, frame, tx batch). */
interface FeedMessage {
  event?: string;
  transactionId?: string;
  subscribed?: unknown;
  type?: string;
  events?: { transactionId: string }[];
}

interface OpenSocket {
  readonly messages: FeedMessage[];
  /** How the server closed it, and when; null while open. */
  readonly closedWith: () => { code: number; reason: string; atMs: number } | null;
  readonly socket: WebSocket;
}

/** Transaction ids a socket has been told of, from feed events and dashboard batches alike. */
const seenIds = (s: OpenSocket) =>
  s.messages.flatMap((m) => (m.transactionId ? [m.transactionId] : (m.events ?? []).map((e) => e.transactionId)));

async function open(url: string, path: string, token: string): Promise<OpenSocket> {
  const socket = new WebSocket(`${url.replace('http', 'ws')}${path}?token=${token}`);
  const messages: FeedMessage[] = [];
  let closed: { code: number; reason: string; atMs: number } | null = null;
  socket.on('message', (data) => messages.push(JSON.parse((data as Buffer).toString('utf8')) as FeedMessage));
  socket.on('close', (code, reason) => (closed = { code, reason: reason.toString(), atMs: Date.now() }));
  await new Promise<void>((resolve, reject) => {
    socket.on('open', () => resolve());
    socket.on('error', reject);
  });
  return { socket, messages, closedWith: () => closed };
}

/** A feed socket following account 1, once the server has acknowledged the subscription. */
async function followAccount1(url: string, token: string): Promise<OpenSocket> {
  const s = await open(url, '/v1/stream', token);
  s.socket.send(JSON.stringify({ subscribe: 'account', id: 1 }));
  await waitFor(() => s.messages.some((m) => m.subscribed), 5_000, 'subscribed');
  return s;
}

/** Posts a deposit to account 1 and returns its id (202 means the server has published its `queued`). */
async function deposit(url: string, token: string): Promise<string> {
  const response = await fetch(`${url}/v1/transactions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'deposit', accountId: 1, amountMinor: 100, currency: 'EUR' }),
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { id: string }).id;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('serve: feed sockets live only as long as their tokens', () => {
  let ns: TestNamespace;
  const servers: RunningServer[] = [];
  const proxies: TcpProxy[] = [];

  beforeAll(async () => {
    ns = await createTestNamespace('tokenlife');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(1);
  });

  afterAll(async () => {
    for (const server of servers) await server.close();
    for (const proxy of proxies) await proxy.cut();
    await ns?.cleanup();
  });

  it('closes the sockets of a revoked token (feed and dashboard) and an expired one with 1008; a valid token keeps its socket', async () => {
    const server = await startServer(ns.config, OPTIONS, createLogger('silent'));
    servers.push(server);
    const revoked = await insertTestToken(ns.db, { accountId: 1 });
    const admin = await insertTestToken(ns.db, { admin: true });
    const valid = await insertTestToken(ns.db, { accountId: 1 });
    const feed = await followAccount1(server.url, revoked.token);
    const dashboard = await open(server.url, '/v1/dashboard/ws', admin.token);
    const keeper = await followAccount1(server.url, valid.token);

    const first = await deposit(server.url, valid.token);
    await waitFor(() => [feed, dashboard, keeper].every((s) => seenIds(s).includes(first)), 5_000, 'the first event everywhere');

    await revokeToken(ns.db, revoked.id);
    await revokeToken(ns.db, admin.id);
    const revokedAtMs = Date.now();
    await waitFor(() => feed.closedWith() !== null && dashboard.closedWith() !== null, 5_000, 'revoked sockets closed');
    expect(feed.closedWith()).toMatchObject({ code: 1008, reason: 'token revoked' });
    expect(dashboard.closedWith()).toMatchObject({ code: 1008, reason: 'token revoked' });
    expect(feed.closedWith()!.atMs - revokedAtMs).toBeLessThanOrEqual(REVOKE_NOTICED_MS_MAX);
    expect(dashboard.closedWith()!.atMs - revokedAtMs).toBeLessThanOrEqual(REVOKE_NOTICED_MS_MAX);

    // A token that expires in three seconds: it works until then, and its socket is closed at expiry.
    const expiresAt = new Date(Date.now() + 3_000);
    const shortLived = await insertTestToken(ns.db, { accountId: 1 }, expiresAt);
    const expiring = await followAccount1(server.url, shortLived.token);
    const second = await deposit(server.url, valid.token);
    await waitFor(() => [expiring, keeper].every((s) => seenIds(s).includes(second)), 5_000, 'the second event');
    await waitFor(() => expiring.closedWith() !== null, 10_000, 'the expired socket closed');
    expect(expiring.closedWith()).toMatchObject({ code: 1008, reason: 'token expired' });
    expect(expiring.closedWith()!.atMs).toBeGreaterThanOrEqual(expiresAt.getTime());
    expect(expiring.closedWith()!.atMs - expiresAt.getTime()).toBeLessThanOrEqual(REVOKE_NOTICED_MS_MAX);

    // The valid token's socket saw every event and is still open; the closed ones got nothing after their close.
    const third = await deposit(server.url, valid.token);
    await waitFor(() => seenIds(keeper).includes(third), 5_000, 'the third event');
    expect(keeper.closedWith()).toBeNull();
    expect(seenIds(keeper)).toEqual([first, second, third]);
    expect(seenIds(feed)).toEqual([first]);
    expect(seenIds(dashboard)).toEqual([first]);
    expect(seenIds(expiring)).toEqual([second]);
    keeper.socket.close();
  });

  it('keeps sockets open while the database is unreachable (fail open), still closes at expiry, and closes a revoked one once it is back', async () => {
    const target = new URL(ns.config.databaseUrl);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 3306));
    proxies.push(proxy);
    await proxy.listen();
    const viaProxy = new URL(ns.config.databaseUrl);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const server = await startServer({ ...ns.config, databaseUrl: viaProxy.toString() }, OPTIONS, createLogger('silent'));
    servers.push(server);
    const valid = await insertTestToken(ns.db, { accountId: 1 });
    const revokedInOutage = await insertTestToken(ns.db, { accountId: 1 });
    const expiresAt = new Date(Date.now() + 3_000);
    const shortLived = await insertTestToken(ns.db, { accountId: 1 }, expiresAt);
    const keeper = await followAccount1(server.url, valid.token);
    const revoked = await followAccount1(server.url, revokedInOutage.token);
    const expiring = await followAccount1(server.url, shortLived.token);

    await proxy.cut();
    await revokeToken(ns.db, revokedInOutage.id); // written past the proxy: the server cannot see it
    // The expiry was learnt as the socket opened: its timer needs no database.
    await waitFor(() => expiring.closedWith() !== null, 10_000, 'the expired socket closed');
    expect(expiring.closedWith()).toMatchObject({ code: 1008, reason: 'token expired' });
    expect(expiring.closedWith()!.atMs - expiresAt.getTime()).toBeLessThanOrEqual(REVOKE_NOTICED_MS_MAX);
    await sleep(5 * HEARTBEAT_MS);
    expect(revoked.closedWith()).toBeNull();
    expect(keeper.closedWith()).toBeNull();

    await proxy.listen();
    await waitFor(() => revoked.closedWith() !== null, 15_000, 'the revoked socket closed once the database is back');
    expect(revoked.closedWith()).toMatchObject({ code: 1008, reason: 'token revoked' });
    await sleep(2 * HEARTBEAT_MS);
    expect(keeper.closedWith()).toBeNull();
    keeper.socket.close();
  });
});
