import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createLogger } from '../../src/log.js';
import { SERVE_DEFAULTS, type ServeOptions } from '../../src/serve/serve-context.js';
import { startServer, type RunningServer } from '../../src/serve/serve.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { insertTestToken } from '../helpers/serve.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { expectValidOutput } from '../helpers/output-schema.js';

// `retrying` and `parked` over the HTTP API, the live feed and `tx show`, against the real services:
// a real worker whose lock waits time out (an outside session holds the account's row) retries a
// message through the delay queues and parks it; the status comes from the workers' records in the
// database, the feed events from the workers' attempt events on `<ns>.feed`.

const OPTIONS: ServeOptions = { ...SERVE_DEFAULTS, port: 0, host: '127.0.0.1', noAuth: false, heartbeatMs: 5_000, rateLimitPerS: 0 };
const MAX_ATTEMPTS = 3;

interface Status {
  status: string;
  attempts: number | null;
  lastError: { attempt: number; code: string; message: string; at: string } | null;
  timeline: { state: string; at: string; attempt?: number; error?: { code: string; message: string } }[];
}

interface FeedMessage {
  event?: string;
  transactionId?: string;
  attempt?: number;
  lastError?: { code: string; message: string };
  status?: string;
}

/** What an outside session holding an account's row does to a worker: its lock wait times out (errno 1205). */
const LOCK_WAIT = /LOCK_WAIT_TIMEOUT|1205/;

/** A WebSocket on the feed, subscribed to one transaction, recording what arrives. */
async function follow(server: RunningServer, token: string, id: string, known = false) {
  const socket = new WebSocket(`${server.url.replace('http', 'ws')}/v1/stream?token=${token}`);
  const events: FeedMessage[] = [];
  let closeCode: number | null = null;
  socket.on('message', (data: Buffer) => events.push(JSON.parse(data.toString('utf8')) as FeedMessage));
  const closed = new Promise<number>((resolve) =>
    socket.on('close', (code) => {
      closeCode = code;
      resolve(code);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.on('open', () => resolve());
    socket.on('error', reject);
  });
  socket.send(JSON.stringify({ subscribe: 'transaction', id }));
  // Unknown yet: the server says so and waits; known: its current state comes at once.
  await waitFor(() => events.some((e) => (known ? e.event : e.status === 'unknown')), 5_000, 'the subscription');
  return { socket, events, closed, closeCode: () => closeCode };
}

/** Holds an account's row lock from outside until released, so every worker attempt on it times out. */
async function holdAccount(db: Knex, accountId: number): Promise<Knex.Transaction> {
  const holder = await db.transaction();
  await holder.raw('SELECT id FROM accounts WHERE id = ? FOR UPDATE', [accountId]);
  return holder;
}

describe('retrying and parked through serve', () => {
  let ns: TestNamespace;
  let server: RunningServer;
  let worker: WorkerProcess;
  let token: string; // admin

  const get = async (id: string): Promise<{ status: number; json: Status }> => {
    const response = await fetch(`${server.url}/v1/transactions/${id}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: response.status, json: (await response.json()) as Status };
  };
  const post = async (body: Record<string, unknown>) => {
    const response = await fetch(`${server.url}/v1/transactions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return response.status;
  };

  beforeAll(async () => {
    ns = await createTestNamespace('sat');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(3);
    server = await startServer(ns.config, OPTIONS, createLogger('silent'));
    worker = startWorker('aw1', ns.env, ['--batch-size', '1', '--max-attempts', String(MAX_ATTEMPTS), '--lock-wait-timeout', '1']);
    token = (await insertTestToken(ns.db, { admin: true })).token;
  });

  afterAll(async () => {
    await worker?.stop();
    await server?.close();
    await ns?.cleanup();
  });

  it('a message that keeps failing: retrying (attempt, last error) then parked, over HTTP, the feed, a restart and tx show; replayed: queued, then applied', async () => {
    const id = randomUUID();
    const feed = await follow(server, token, id);
    const holder = await holdAccount(ns.db, 2);
    try {
      expect(await post({ id, type: 'deposit', accountId: 2, amountMinor: 700, currency: 'EUR' })).toBe(202);

      let retrying: Status | null = null;
      await waitFor(
        async () => {
          const { json } = await get(id);
          if (json.status === 'retrying') retrying ??= json;
          return json.status === 'parked';
        },
        40_000,
        'retrying, then parked',
      );
      // Seen while it was being retried: the failed attempt and why.
      expect(retrying).not.toBeNull();
      expect(retrying!.attempts).toBeGreaterThanOrEqual(1);
      expect(retrying!.attempts).toBeLessThan(MAX_ATTEMPTS);
      expect(retrying!.lastError!.code).toMatch(LOCK_WAIT);
      expect(retrying!.timeline.slice(0, 3).map((t) => t.state)).toEqual(['accepted', 'queued', 'retrying']);

      const parked = (await get(id)).json;
      expect(parked).toMatchObject({ status: 'parked', attempts: MAX_ATTEMPTS, lastError: { attempt: MAX_ATTEMPTS } });
      expect(parked.lastError!.code).toMatch(LOCK_WAIT);
      expect(parked.timeline.map((t) => [t.state, t.attempt ?? null])).toEqual([
        ['accepted', null],
        ['queued', null],
        ['retrying', 1],
        ['retrying', 2],
        ['parked', 3],
      ]);
      for (const step of parked.timeline.slice(2)) expect(step.error!.code).toMatch(LOCK_WAIT);

      // The feed pushed each failed attempt as it happened; parked does not close the subscription
      // (replay-dead may bring the transaction back).
      await waitFor(() => feed.events.some((e) => e.event === 'parked'), 10_000, 'the parked event');
      const attempts = feed.events.filter((e) => e.event === 'retrying' || e.event === 'parked');
      expect(attempts.map((e) => [e.event, e.attempt])).toEqual([
        ['retrying', 1],
        ['retrying', 2],
        ['parked', 3],
      ]);
      for (const e of attempts) {
        expect(e.transactionId).toBe(id);
        expect(e.lastError!.code).toMatch(LOCK_WAIT);
      }
      expect(feed.closeCode()).toBeNull();
      feed.socket.close();

      // Nothing of it lived in the server: a new one answers the same.
      await server.close();
      server = await startServer(ns.config, OPTIONS, createLogger('silent'));
      expect((await get(id)).json).toMatchObject({ status: 'parked', attempts: MAX_ATTEMPTS });
      // A subscriber arriving now gets the current state at once, and stays subscribed.
      const late = await follow(server, token, id, true);
      expect(late.events).toEqual([
        expect.objectContaining({
          event: 'parked',
          transactionId: id,
          attempt: MAX_ATTEMPTS,
          lastError: expect.objectContaining({ code: expect.stringMatching(LOCK_WAIT) as string }) as object,
        }),
      ]);
      await new Promise((r) => setTimeout(r, 300));
      expect(late.closeCode()).toBeNull();
      late.socket.close();
    } finally {
      await holder.rollback();
    }

    const shown = await runTxsim(['tx', 'show', id, '--json'], ns.env);
    expect(shown.code, shown.stderr).toBe(0);
    const doc = JSON.parse(shown.stdout) as Record<string, unknown>;
    expect(doc).toMatchObject({ id, status: 'parked', queue: ns.topology.deadQueue, attempts: MAX_ATTEMPTS });
    expect((doc.failures as unknown[]).length).toBe(MAX_ATTEMPTS);
    expectValidOutput('tx-show', doc);
    const text = await runTxsim(['tx', 'show', id], ns.env);
    expect(text.stdout).toContain(`parked in ${ns.topology.deadQueue} after attempt ${MAX_ATTEMPTS}`);

    // replay-dead puts it back (the account is free now). With no worker running, the copy waits in the
    // queue: a subscriber sees replay-dead's own `queued` event, then, once a worker runs, the outcome,
    // and the subscription ends.
    await worker.stop();
    const watcher = await follow(server, token, id, true);
    const replay = await runTxsim(['replay-dead', '--id', id], ns.env);
    expect(replay.code, replay.stderr).toBe(0);
    await waitFor(() => watcher.events.some((e) => e.event === 'queued'), 10_000, 'the queued event');
    expect(watcher.events).toEqual([
      expect.objectContaining({ event: 'parked', transactionId: id }),
      expect.objectContaining({ event: 'queued', transactionId: id, accountId: 2, type: 'deposit', amountMinor: '700', currency: 'EUR' }),
    ]);
    expect(watcher.events[1]).not.toHaveProperty('lastError');
    worker = startWorker('aw1', ns.env, ['--batch-size', '1', '--max-attempts', String(MAX_ATTEMPTS), '--lock-wait-timeout', '1']);
    expect(await watcher.closed).toBe(1000);
    expect(watcher.events.map((e) => e.event)).toEqual(['parked', 'queued', 'applied']);
  });

  it('a message applied after a failed attempt: retrying on the feed, then applied and a normal close; the timeline keeps the retry', async () => {
    const id = randomUUID();
    const feed = await follow(server, token, id);
    const holder = await holdAccount(ns.db, 3);
    try {
      expect(await post({ id, type: 'deposit', accountId: 3, amountMinor: 900, currency: 'EUR' })).toBe(202);
      await waitFor(async () => (await get(id)).json.status === 'retrying', 20_000, 'retrying');
    } finally {
      await holder.rollback();
    }
    await waitFor(async () => (await get(id)).json.status === 'applied', 20_000, 'applied');
    const applied = (await get(id)).json;
    const states = applied.timeline.map((t) => t.state);
    expect(states.slice(0, 3)).toEqual(['accepted', 'queued', 'retrying']);
    expect(states.at(-1)).toBe('applied');
    expect(states).not.toContain('parked');
    expect(applied.attempts).toBe(states.filter((s) => s === 'retrying').length + 1);
    expect(applied.lastError!.code).toMatch(LOCK_WAIT);

    const code = await Promise.race([
      feed.closed,
      new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`no close; events ${JSON.stringify(feed.events)}`)), 30_000)),
    ]);
    expect(code).toBe(1000);
    const events = feed.events.filter((e) => e.event).map((e) => e.event);
    expect(events[0]).toBe('queued');
    expect(events).toContain('retrying');
    expect(events.at(-1)).toBe('applied');
  });
});
