import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebhookForwarder } from '../../src/accounting/webhook-forwarder.js';
import type { AttemptResult, WebhookRetryPolicy, WebhookTransport } from '../../src/accounting/webhook-delivery.js';
import type { AccountingEvent } from '../../src/domain/accounting-event.js';
import { createDatabase, type Knex } from '../../src/db/knex.js';
import { recordStatement, recordWebhookOutcome } from '../../src/db/statements.js';
import { createLogger } from '../../src/log.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { waitFor } from '../helpers/txsim.js';

// The webhook forwarder of `txsim accounting --webhook` in this process, against the real MariaDB: two
// forwarders stand for two consumers (each with its own pool, as two processes), and the lease they
// share is the `updated_at` of the pending rows. The HTTP side is a scripted transport: what is under
// test is what the database is told, not the POSTs.

const URL_RECORDED = 'http://receiver.test/hooks';
const log = createLogger('silent');
/** Retries in milliseconds, never giving up within a test. */
const FAST: WebhookRetryPolicy = { backoffInitialMs: 20, backoffMaxMs: 50, giveUpAfterMs: 600_000, attemptsMax: 100_000 };
const unavailable: AttemptResult = { kind: 'response', status: 503, body: 'down for maintenance' };
const accepted: AttemptResult = { kind: 'response', status: 200, body: 'ok' };

/** A transport that answers each POST with `answer(eventId, attempt)` after `delayMs`, and remembers the event ids it was sent. */
function scriptedTransport(
  answer: (eventId: string, attempt: number) => AttemptResult | Promise<AttemptResult>,
  delayMs = 5,
): WebhookTransport & { readonly posted: string[] } {
  const posted: string[] = [];
  return {
    posted,
    async post(_url, _body, headers) {
      const eventId = headers['idempotency-key']!;
      posted.push(eventId);
      await new Promise((r) => setTimeout(r, delayMs));
      return answer(eventId, Number(headers['x-txsim-delivery-attempt']));
    },
  };
}

/** One consumer's forwarder with the counters it raises, and a stop that ends its work as a shutdown does. */
function consumer(db: Knex, transport: WebhookTransport, options: { orphanAfterMs: number; concurrencyMax: number }) {
  const shutdown = new AbortController();
  const hardStop = new AbortController();
  const metrics = { webhooksDelivered: 0, webhooksFailed: 0, webhookAttempts: 0, webhooksTakenOver: 0 };
  const forwarder = new WebhookForwarder(
    { url: URL_RECORDED, secret: 'forwarder-test-secret-0123456789', policy: FAST, ...options },
    { db, log, transport, metrics, shutdown: shutdown.signal, hardStop: hardStop.signal },
  );
  return {
    forwarder,
    metrics,
    /** Where `forward` calls pass their `stop`: the message's channel, here the consumer's life. */
    channel: shutdown.signal,
    async stop() {
      shutdown.abort();
      hardStop.abort();
      await forwarder.stopped();
    },
  };
}

function eventFor(seq: number): AccountingEvent {
  return {
    eventId: randomUUID(),
    transactionId: randomUUID(),
    accountId: 1,
    accountSeq: seq,
    type: 'deposit',
    outcome: 'applied',
    reason: null,
    amountMinor: 100n,
    currency: 'EUR',
    balanceAfterMinor: 100n * BigInt(seq),
    occurredAt: new Date().toISOString(),
  };
}

/**
 * A TCP proxy in front of MariaDB that can lose the reply to one statement: the statement reaches the
 * server and runs (autocommit: it is applied), and when the server's answer comes back the connection
 * is dropped instead, as when a network path fails at the worst moment.
 */
class ReplyLosingProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private armed: Buffer | null = null;
  /** Replies lost so far. */
  lost = 0;
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async listen(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      let dropNextReply = false;
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.on('data', (chunk: Buffer) => {
        if (this.armed && chunk.includes(this.armed)) {
          this.armed = null;
          dropNextReply = true;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!dropNextReply) return void client.write(chunk);
        this.lost++;
        client.destroy();
        upstream.destroy();
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** The reply to the next statement whose text contains `sqlText` is lost. */
  loseReplyTo(sqlText: string): void {
    this.armed = Buffer.from(sqlText);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

describe('webhook forwarder: the takeover lease and the recorded outcome', () => {
  let ns: TestNamespace;
  const pools: Knex[] = [];
  /** A pool of its own, as another process has: `databaseUrl` defaults to the namespace's. */
  const pool = (databaseUrl = ns.config.databaseUrl) => {
    const db = createDatabase({ databaseUrl, databaseName: ns.config.databaseName, poolMax: 2 });
    pools.push(db);
    return db;
  };
  const store = async (count: number): Promise<AccountingEvent[]> => {
    const events = Array.from({ length: count }, (_, i) => eventFor(i + 1));
    for (const event of events) await recordStatement(ns.db, event, URL_RECORDED);
    return events;
  };
  const rowOf = (eventId: string) =>
    ns
      .db('webhook_deliveries')
      .where('event_id', eventId)
      .first<{ status: string; attempts: number; response_status: number | null }>('status', 'attempts', 'response_status');

  beforeAll(async () => {
    ns = await createTestNamespace('hookfwd');
  });

  afterEach(async () => {
    vi.useRealTimers();
    // Each test starts with no delivery left for the next one's sweeper to find.
    await ns.db('webhook_deliveries').del();
    await ns.db('accounting_statements').del();
  });

  afterAll(async () => {
    await Promise.all(pools.map((db) => db.destroy()));
    await ns.cleanup();
  });

  it('a delivery waiting for a POST slot keeps its lease: another consumer does not take it over while this one means to send it', async () => {
    const orphanAfterMs = 1_200;
    const [holder, ...queued] = await store(3);
    // The first consumer has one POST slot and a receiver that answers 503: the first event holds the
    // slot, retried, and the other two wait their turn (a backlog behind a receiver that is down).
    const dbA = pool();
    const statementsOfA: { sql: string; bindings: readonly unknown[] }[] = [];
    dbA.on('query', (q: { sql: string; bindings?: readonly unknown[] }) => statementsOfA.push({ sql: q.sql, bindings: q.bindings ?? [] }));
    const a = consumer(
      dbA,
      scriptedTransport(() => unavailable),
      { orphanAfterMs, concurrencyMax: 1 },
    );
    const forwards = [holder!, ...queued].map((e) => a.forwarder.forward(e, Date.now(), a.channel, false));

    // A second consumer looks for abandoned deliveries (every second) for over three windows.
    const transportB = scriptedTransport(() => unavailable);
    const b = consumer(pool(), transportB, { orphanAfterMs, concurrencyMax: 4 });
    const startedMs = Date.now();
    b.forwarder.startSweeping();
    await new Promise((r) => setTimeout(r, orphanAfterMs * 3 + 1_000));
    const elapsedMs = Date.now() - startedMs;
    await b.stop();
    await a.stop();
    expect(await Promise.all(forwards)).toEqual([false, false, false]);

    expect(new Set(transportB.posted), 'deliveries the second consumer took over and sent').toEqual(new Set());
    expect(b.metrics.webhooksTakenOver).toBe(0);
    // One statement a tick refreshed every lease this consumer held, never one per row.
    const ids = [holder!, ...queued].map((e) => e.eventId);
    const refreshes = statementsOfA.filter((s) => /^update `webhook_deliveries` set `updated_at`/.test(s.sql));
    expect(refreshes.length).toBeGreaterThanOrEqual(3);
    expect(refreshes.length).toBeLessThanOrEqual(Math.ceil(elapsedMs / (orphanAfterMs / 4)) + 1);
    for (const r of refreshes) expect(r.bindings).toEqual(expect.arrayContaining(ids));
  });

  /** Makes this process's clock (Date only: timers keep real time) run `skewMs` off the database server's. */
  const skewClock = (skewMs: number) => {
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    vi.setSystemTime(Date.now() + skewMs);
  };
  const statusesOf = (events: readonly AccountingEvent[]) => Promise.all(events.map((e) => rowOf(e.eventId).then((r) => r?.status)));

  it('the lease is judged on the database server clock: a consumer whose clock runs ahead takes over nothing just stored', async () => {
    const orphanAfterMs = 1_200;
    const fresh = await store(2);
    const transport = scriptedTransport(() => accepted);
    const db = pool();
    skewClock(600_000);
    const ahead = consumer(db, transport, { orphanAfterMs, concurrencyMax: 4 });
    ahead.forwarder.startSweeping();
    await new Promise((r) => setTimeout(r, 1_500)); // two sweeps
    await ahead.stop();
    expect(transport.posted, 'deliveries stored a moment ago, taken over by a consumer ten minutes ahead').toEqual([]);
    expect(await statusesOf(fresh)).toEqual(['pending', 'pending']);
    expect(ahead.metrics.webhooksTakenOver).toBe(0);
  });

  it('the lease is judged on the database server clock: a consumer whose clock runs behind still takes over what nobody refreshed', async () => {
    const orphanAfterMs = 1_200;
    const abandoned = await store(2);
    // Nobody has refreshed these for ten seconds, by the server's clock: eight windows.
    await ns.db('webhook_deliveries').update({ updated_at: ns.db.raw('UTC_TIMESTAMP(3) - INTERVAL 10 SECOND') });
    const transport = scriptedTransport(() => accepted);
    const db = pool();
    skewClock(-600_000);
    const behind = consumer(db, transport, { orphanAfterMs, concurrencyMax: 4 });
    behind.forwarder.startSweeping();
    let statuses: (string | undefined)[] = [];
    await waitFor(
      async () => (statuses = await statusesOf(abandoned)).every((s) => s === 'delivered'),
      4_000,
      'the abandoned deliveries taken over and delivered',
    ).catch(() => {});
    await behind.stop();
    expect(statuses, 'abandoned deliveries, as a consumer ten minutes behind handled them').toEqual(['delivered', 'delivered']);
    expect(behind.metrics.webhooksTakenOver).toBe(2);
  });

  it('the reply to the recorded outcome is lost: the retry recognises its own outcome, and the attempts are counted once', async () => {
    const target = new URL(ns.config.databaseUrl);
    const proxy = new ReplyLosingProxy(target.hostname || '127.0.0.1', Number(target.port || 3306));
    await proxy.listen();
    try {
      const throughProxy = new URL(ns.config.databaseUrl);
      throughProxy.hostname = '127.0.0.1';
      throughProxy.port = String(proxy.port);
      const [event] = await store(1);
      // Two 503s, then accepted: three attempts.
      const transport = scriptedTransport((_id, attempt) => (attempt < 3 ? unavailable : accepted));
      const a = consumer(pool(throughProxy.toString()), transport, { orphanAfterMs: 60_000, concurrencyMax: 4 });
      // The statement that records the outcome reaches the server and is applied; its answer never comes back.
      proxy.loseReplyTo('update `webhook_deliveries` set `status`');
      expect(await a.forwarder.forward(event!, Date.now(), a.channel, false)).toBe(true);
      await a.stop();

      expect(proxy.lost, 'replies lost').toBe(1);
      expect(await rowOf(event!.eventId)).toEqual({ status: 'delivered', attempts: 3, response_status: 200 });
      expect(a.metrics).toMatchObject({ webhooksDelivered: 1, webhookAttempts: 3 });
    } finally {
      await proxy.close();
    }
  });

  it('another copy recorded its outcome first: that outcome stands and these attempts are added to it', async () => {
    const [event] = await store(1);
    // While this copy's last attempt is on the wire, another copy (a redelivery elsewhere) records that it gave up.
    const transport = scriptedTransport(async (id, attempt) => {
      if (attempt === 2)
        await recordWebhookOutcome(ns.db, id, {
          status: 'failed',
          attempts: 5,
          responseStatus: 503,
          responseBody: 'down',
          lastError: 'HTTP 503',
        });
      return attempt < 2 ? unavailable : accepted;
    });
    const a = consumer(pool(), transport, { orphanAfterMs: 60_000, concurrencyMax: 4 });
    expect(await a.forwarder.forward(event!, Date.now(), a.channel, false)).toBe(true);
    await a.stop();

    expect(await rowOf(event!.eventId)).toEqual({ status: 'failed', attempts: 7, response_status: 503 });
    expect(a.metrics).toMatchObject({ webhooksDelivered: 0, webhooksFailed: 0, webhookAttempts: 2 });
  });
});
