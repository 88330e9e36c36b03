import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_RELAY_OPTIONS, OutboxRelay, type OutboxRelayOptions } from '../../src/accounting/outbox-relay.js';
import { createLogger } from '../../src/log.js';
import { ensureSchema } from '../../src/db/schema.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { queuedEventIds } from './accounting-helpers.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

// The relay lease (sql/010-relay-lease.sql) against the real MariaDB and RabbitMQ: one relay claims,
// the others stand by, and a released or lapsed lease passes on, so no event waits for a dead relay.
describe('relay lease: one outbox relay claims at a time', () => {
  let ns: TestNamespace;
  let relays: OutboxRelay[] = [];
  let workers: WorkerProcess[] = [];

  const unsent = async () => Number((await ns.db('outbox_events').whereNull('sent_at').count({ n: '*' }))[0]!.n);
  /** Every event in the accounting queue once: `count` events, all of them different. */
  const queuedOnce = async (count: number) => {
    const ids = await queuedEventIds(ns.amqp, ns.topology.accountingQueue);
    return ids.length === count && new Set(ids).size === count;
  };
  const lease = async () =>
    (await ns.db.raw('SELECT holder, expires_at < UTC_TIMESTAMP(3) AS lapsed FROM outbox_relay_lease WHERE id = 1'))[0][0] as {
      holder: string;
      lapsed: number;
    };

  /** Outbox rows as a worker's commit leaves them: unsent accounting events of `count` rejected transactions. */
  async function insertEvents(count: number): Promise<void> {
    const now = new Date();
    await ns.db('outbox_events').insert(
      Array.from({ length: count }, () => ({
        event_id: randomUUID(),
        transaction_id: randomUUID(),
        account_id: null,
        account_seq: null,
        type: 'deposit',
        amount_minor: 100,
        currency: 'EUR',
        outcome: 'rejected',
        reason: 'unknown_account',
        balance_after_minor: null,
        created_at: now,
      })),
    );
  }

  /** A relay in this process with a short lease, so a lapse takes seconds. */
  async function startRelay(id: string, options: Partial<OutboxRelayOptions> = {}): Promise<OutboxRelay> {
    const relay = new OutboxRelay(
      { db: ns.db, amqpUrl: ns.config.amqpUrl, topology: ns.topology, log: createLogger('silent', { pretty: false }), relayId: id },
      { ...DEFAULT_RELAY_OPTIONS, idleIntervalMs: 50, standbyIntervalMs: 100, leaseMs: 1_500, ...options },
    );
    relays.push(relay);
    await relay.start();
    return relay;
  }

  beforeAll(async () => {
    ns = await createTestNamespace('lease');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
  });

  afterEach(async () => {
    await Promise.all(relays.map((r) => r.close()));
    relays = [];
    await Promise.all(workers.map((w) => w.kill()));
    workers = [];
    await ns.amqp.createChannel().then(async (c) => {
      await c.purgeQueue(ns.topology.accountingQueue);
      await c.close();
    });
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  it('a prune that deletes its most leaves the rest to the next round, not to the next interval: pruning keeps up with load', async () => {
    await insertEvents(200);
    await ns
      .db('outbox_events')
      .whereNull('sent_at')
      .update({ sent_at: new Date(Date.now() - 2 * 3_600_000) });
    const sentCount = async () => Number((await ns.db('outbox_events').whereNotNull('sent_at').count({ n: '*' }))[0]!.n);
    expect(await sentCount()).toBeGreaterThanOrEqual(200);
    // One row a statement: 20 a prune. The first prune comes 10–20 s after the start; the
    // nine more needed would each wait another 20 s if a full prune waited for the interval.
    const relay = await startRelay('p', { pruneBatchMax: 1, pruneIntervalMs: 20_000 });
    await waitFor(() => relay.metrics.pruned > 0, 25_000, 'the first prune');
    await waitFor(async () => (await sentCount()) === 0, 10_000, 'every sent row past the retention pruned');
    expect(relay.metrics.pruned).toBeGreaterThanOrEqual(200);
  }, 45_000);

  it('the holder relays every event while the other stands by; released at close, the lease passes on at once', async () => {
    const a = await startRelay('a');
    await waitFor(() => a.metrics.leaseHeld, 10_000, 'relay a to take the free lease');
    const b = await startRelay('b');
    await insertEvents(300);
    // The relay counts a claim once its commit returned: the rows can read as sent a moment before.
    await waitFor(async () => (await unsent()) === 0 && a.metrics.relayed >= 300, 20_000, 'the 300 events sent');
    expect(a.metrics.relayed).toBe(300);
    expect(b.metrics).toMatchObject({ relayed: 0, leaseHeld: false });
    expect((await lease()).holder).toMatch(/^a:/);

    await a.close();
    // Released, not left to lapse: right after the close the row is either given up (b has not asked yet)
    // or already b's (it asks every 100 ms) — never still a's for the rest of its 1.5 s.
    const released = await lease();
    expect(released.holder.startsWith('b:') || Number(released.lapsed) === 1, JSON.stringify(released)).toBe(true);
    await insertEvents(200);
    await waitFor(async () => (await unsent()) === 0 && b.metrics.relayed >= 200, 20_000, 'the next 200 events sent by b');
    expect(b.metrics).toMatchObject({ relayed: 200, leaseHeld: true });
    expect(a.metrics.relayed).toBe(300);
    expect((await lease()).holder).toMatch(/^b:/);
    await waitFor(() => queuedOnce(500), 10_000, 'all 500 events in the accounting queue, once each');
  });

  it('a holder that stops renewing (hung, or cut off from the database) is taken over once its lease lapses', async () => {
    // A relay that took the lease for 4 s and then went silent.
    await ns.db.raw("UPDATE outbox_relay_lease SET holder = 'ghost', expires_at = UTC_TIMESTAMP(3) + INTERVAL 4 SECOND WHERE id = 1");
    const c = await startRelay('c');
    await insertEvents(100);
    await new Promise((r) => setTimeout(r, 1_500));
    // The ghost's lease still runs: c waits rather than claim beside it.
    expect((await lease()).holder).toBe('ghost');
    expect(c.metrics).toMatchObject({ relayed: 0, leaseHeld: false });
    expect(await unsent()).toBe(100);
    await waitFor(async () => (await unsent()) === 0 && c.metrics.relayed >= 100, 20_000, 'the events sent once the ghost lease lapsed');
    expect(c.metrics).toMatchObject({ relayed: 100, leaseHeld: true });
  });

  it('a worker holding the lease killed -9: the other worker relays everything after it', async () => {
    await ns.seed(10);
    const sent = async () => Number((await ns.db('outbox_events').whereNotNull('sent_at').count({ n: '*' }))[0]!.n);
    const sentBefore = await sent();
    workers = ['lw1', 'lw2'].map((id) => startWorker(id, ns.env));
    const first = await runTxsim(['gen', '200', '--seed', 'lease-1'], ns.env);
    expect(first.code, first.stderr).toBe(0);
    await waitFor(async () => (await sent()) === sentBefore + 200, 30_000, 'the first 200 events sent');
    const holder = (await lease()).holder.split(':')[0]!;
    const [killed, survivor] = holder === 'lw1' ? [workers[0]!, workers[1]!] : [workers[1]!, workers[0]!];
    expect(holder).toBe(killed.id);
    await killed.kill();

    const second = await runTxsim(['gen', '200', '--seed', 'lease-2'], ns.env);
    expect(second.code, second.stderr).toBe(0);
    await waitFor(
      async () => (await sent()) === sentBefore + 400 && (await unsent()) === 0,
      60_000,
      'all 400 events sent after the holder died',
    );
    expect((await lease()).holder.split(':')[0]).toBe(survivor.id);
  });

  it('without the lease table (a database set up before it), every relay claims, as before the lease', async () => {
    await ns.db.raw('DROP TABLE outbox_relay_lease');
    try {
      const d = await startRelay('d');
      const e = await startRelay('e');
      await insertEvents(200);
      await waitFor(
        async () => (await unsent()) === 0 && d.metrics.relayed + e.metrics.relayed >= 200,
        20_000,
        'the 200 events sent without a lease',
      );
      expect(d.metrics.relayed + e.metrics.relayed).toBe(200);
      await waitFor(() => queuedOnce(200), 10_000, 'the 200 events in the accounting queue, once each');
    } finally {
      await ensureSchema(ns.config.databaseUrl, ns.config.databaseName);
    }
  });
});
