import { randomUUID } from 'node:crypto';
import type { ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfirmPublisher } from '../../src/amqp/publisher.js';
import { applyBatch } from '../../src/worker/apply-batch.js';
import { DEFAULT_RELAY_OPTIONS, pruneOutbox, relayOutboxBatch } from '../../src/accounting/outbox-relay.js';
import { ACCOUNTING_EVENTS_TYPE, decodeAccountingMessage } from '../../src/domain/accounting-event.js';
import { createDatabase, type Knex } from '../../src/db/knex.js';
import { uuidV5 } from '../../src/domain/ids.js';
import { decodeTransaction } from '../../src/domain/message-schema.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { peekQueue, queueState, runTxsim, startWorker, waitFor } from '../helpers/txsim.js';
import { jsonLines, startTxsim } from './accounting-helpers.js';

// The outbox relay against the real MariaDB and RabbitMQ: the relay step is driven from the test so
// that its worst moments (several replicas at once, death between publish and mark-sent, a worker
// transaction rolling back under it) happen on cue.
describe('outbox relay', () => {
  let ns: TestNamespace;
  let channels: ConfirmChannel[] = [];
  const publishers: ConfirmPublisher[] = [];

  const unsent = async () => Number((await ns.db('outbox_events').whereNull('sent_at').count({ n: '*' }))[0]!.n);
  const queued = async () => (await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount;

  /** Processes a gen run with one worker that does NOT relay, so its events wait in the outbox. */
  async function outcomesWithoutRelay(seed: string, count: number): Promise<void> {
    const before = Number((await ns.db('transactions').count({ n: '*' }))[0]!.n);
    const worker = startWorker(`norelay-${seed}`, ns.env, ['--no-relay']);
    try {
      const gen = await runTxsim(['gen', String(count), '--seed', seed, '--invalid', '0.05'], ns.env);
      expect(gen.code, gen.stderr).toBe(0);
      await waitFor(
        async () => Number((await ns.db('transactions').count({ n: '*' }))[0]!.n) === before + count,
        60_000,
        `${count} outcomes of ${seed}`,
      );
    } finally {
      expect(await worker.stop()).toBe(0);
    }
  }

  beforeAll(async () => {
    ns = await createTestNamespace('outbox');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(10);
    for (let i = 0; i < 3; i++) {
      const channel = await ns.amqp.createConfirmChannel();
      channel.on('error', () => {});
      channels.push(channel);
      publishers.push(new ConfirmPublisher(channel, { windowMax: 500, confirmTimeoutMs: 10_000 }));
    }
  });

  afterAll(async () => {
    for (const channel of channels) await channel.close().catch(() => {});
    channels = [];
    await ns.cleanup();
  });

  it('never publishes the event of a transaction that rolled back, not even while its row exists uncommitted', async () => {
    // The trap: an outbox row for an amount of 4242 is inserted, held uncommitted for 1.5 s, then
    // its statement fails — so the worker's whole transaction rolls back.
    await ns.db.raw(`CREATE TRIGGER trap_outbox AFTER INSERT ON outbox_events FOR EACH ROW
      IF NEW.amount_minor = 4242 THEN SET @slept = SLEEP(1.5); SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'trap: roll this transaction back'; END IF`);
    try {
      const id = randomUUID();
      const body = Buffer.from(
        JSON.stringify({ id, type: 'deposit', accountId: 1, amountMinor: 4242, currency: 'EUR', createdAt: new Date().toISOString() }),
      );
      const incoming = { decoded: decodeTransaction(body, { contentType: 'application/json', messageId: id }), attempt: 1, runId: null };
      expect(incoming.decoded.ok).toBe(true);
      // A worker's pool: batches go out as multi-statement queries.
      const workerDb = createDatabase({
        databaseUrl: ns.config.databaseUrl,
        databaseName: ns.config.databaseName,
        poolMax: 1,
        readCommitted: true,
        multipleStatements: true,
      });
      const applying = applyBatch(workerDb, [incoming], { workerId: 'trap' })
        .then(
          () => 'committed',
          (err: Error) => err.message,
        )
        .finally(() => workerDb.destroy());
      // While the worker's row is inserted but uncommitted, relays keep claiming.
      let relayedDuring = 0;
      const deadline = Date.now() + 1_200;
      while (Date.now() < deadline)
        relayedDuring += await relayOutboxBatch(ns.db, publishers[0]!, ns.topology.accountingExchange, {
          batchSizeMax: 10,
          eventsPerMessageMax: 100,
        });
      expect(await applying).toContain('trap');
      expect(relayedDuring).toBe(0);
      expect(
        await relayOutboxBatch(ns.db, publishers[0]!, ns.topology.accountingExchange, { batchSizeMax: 10, eventsPerMessageMax: 100 }),
      ).toBe(0);
      expect(await ns.db('outbox_events').where('transaction_id', id).first()).toBeUndefined();
      expect(await ns.db('transactions').where('id', id).first()).toBeUndefined();
      expect(await queued()).toBe(0);
    } finally {
      await ns.db.raw('DROP TRIGGER IF EXISTS trap_outbox');
    }
  });

  it('three relays claiming at once publish every committed event exactly once (SKIP LOCKED), one message per event when asked', async () => {
    await outcomesWithoutRelay('relay-a', 150);
    expect(await unsent()).toBe(150);
    expect(await queued()).toBe(0);

    // Three replicas, small batches, all polling until the outbox is empty.
    const counts = await Promise.all(
      publishers.map(async (publisher) => {
        let total = 0;
        for (let n = -1; n !== 0; total += n)
          n = await relayOutboxBatch(ns.db, publisher, ns.topology.accountingExchange, { batchSizeMax: 7, eventsPerMessageMax: 1 });
        return total;
      }),
    );
    expect(counts.reduce((a, b) => a + b, 0)).toBe(150);
    expect(counts.filter((c) => c > 0).length).toBeGreaterThanOrEqual(2);
    expect(await unsent()).toBe(0);

    const channel = await ns.amqp.createConfirmChannel();
    const messages = await peekQueue(channel, ns.topology.accountingQueue);
    await channel.close();
    expect(messages).toHaveLength(150);
    expect(new Set(messages.map((m) => m.properties.messageId)).size).toBe(150);
    const rows: { event_id: string; outcome: string; account_id: string | null; transaction_id: string }[] = await ns
      .db('outbox_events')
      .select('event_id', 'outcome', 'account_id', 'transaction_id');
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    for (const m of messages) {
      const row = byId.get(m.properties.messageId as string)!;
      expect(m.fields.routingKey).toBe(`${row.outcome}.${row.account_id ?? 'none'}`);
      expect(m.properties.messageId).toBe(uuidV5(row.transaction_id, 'outcome'));
      expect(JSON.parse(m.content.toString())).toMatchObject({ version: 1, eventId: row.event_id, outcome: row.outcome });
    }
  });

  it('a relay that dies after publishing, before marking sent: the events are published again and accounting keeps one line each', async () => {
    await outcomesWithoutRelay('relay-b', 80);
    expect(await unsent()).toBe(80);
    const queuedBefore = await queued();

    // Die at the worst moment: everything is confirmed by the broker, then the relay's database
    // connection is killed before its mark-sent update — the server rolls the claim back, exactly
    // as when the relay process dies.
    const killer: Knex = createDatabase({ databaseUrl: ns.config.databaseUrl, databaseName: ns.config.databaseName, poolMax: 1 });
    try {
      await expect(
        relayOutboxBatch(ns.db, publishers[0]!, ns.topology.accountingExchange, DEFAULT_RELAY_OPTIONS, {
          afterPublish: async (_events, trx) => {
            const [[{ id }]] = (await trx.raw('SELECT CONNECTION_ID() AS id')) as [[{ id: number }]];
            await killer.raw('KILL CONNECTION ?', [id]);
          },
        }),
      ).rejects.toThrow();
    } finally {
      await killer.destroy();
    }
    expect(await unsent()).toBe(80);
    // The relay's default: the 80 events travel in one message.
    await waitFor(async () => (await queued()) === queuedBefore + 1, 5_000, 'the first copies in the queue');

    // The next claim (any replica) publishes them again.
    expect(await relayOutboxBatch(ns.db, publishers[1]!, ns.topology.accountingExchange, DEFAULT_RELAY_OPTIONS)).toBe(80);
    expect(await unsent()).toBe(0);
    await waitFor(async () => (await queued()) === queuedBefore + 2, 5_000, 'the second copies in the queue');

    // The accounting side deduplicates by event id: 230 events, 310 deliveries, 230 lines.
    const accounting = startTxsim(['accounting', '--json'], ns.env);
    try {
      await waitFor(
        async () => (await queued()) === 0 && Number((await ns.db('accounting_statements').count({ n: '*' }))[0]!.n) === 230,
        60_000,
        'accounting to drain',
      );
      await waitFor(
        async () => Number((await ns.db('accounting_statements').sum({ d: 'deliveries' }))[0]!.d) === 310,
        10_000,
        'every delivery to be counted',
      );
    } finally {
      expect(await accounting.stop()).toBe(0);
    }
    const [[dup]] = (await ns.db.raw(
      'SELECT COUNT(*) AS n FROM (SELECT transaction_id FROM accounting_statements GROUP BY transaction_id HAVING COUNT(*) > 1) x',
    )) as [[{ n: string }]];
    expect(Number(dup.n)).toBe(0);
    const twice = await ns.db('accounting_statements').where('deliveries', 2).count({ n: '*' });
    expect(Number(twice[0]!.n)).toBe(80);
    // Each new line was printed once; the repeats were not printed again.
    const printed = jsonLines(accounting.stdout());
    expect(printed).toHaveLength(230);
    expect(new Set(printed.map((e) => e.eventId)).size).toBe(230);

    const verify = await runTxsim(['verify', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout);
    expect(report.accounting).toMatchObject({ ok: true, settled: true, missing: 0, lost: 0, outcomes: 230, statements: 230 });
    for (const check of report.accounting.checks) expect(check.violations, check.name).toBe(0);
  });

  it('puts up to eventsPerMessageMax events in one message, each element the event as it would travel alone', async () => {
    // The queue is empty: the test before drained it.
    const channel = await ns.amqp.createConfirmChannel();
    const [{ last }] = (await ns.db('outbox_events').max({ last: 'id' })) as [{ last: string | null }];
    await outcomesWithoutRelay('relay-batched', 110);
    expect(
      await relayOutboxBatch(ns.db, publishers[0]!, ns.topology.accountingExchange, { batchSizeMax: 500, eventsPerMessageMax: 40 }),
    ).toBe(110);
    expect(await unsent()).toBe(0);
    const messages = await peekQueue(channel, ns.topology.accountingQueue);
    await channel.purgeQueue(ns.topology.accountingQueue);
    await channel.close();
    // Oldest first, 40 + 40 + 30.
    const decoded = messages.map((m) => {
      expect(m.fields.routingKey).toBe('events');
      expect(m.properties.type).toBe(ACCOUNTING_EVENTS_TYPE);
      const d = decodeAccountingMessage(m.content);
      if (!d.ok) throw new Error(d.detail);
      const events = d.elements.map((e) => (e.ok ? e.event : expect.unreachable(e.detail)));
      expect(m.properties.messageId).toBe(`${events[0]!.eventId}+${events.length}`);
      return events;
    });
    expect(decoded.map((events) => events.length)).toEqual([40, 40, 30]);
    const rows: { event_id: string }[] = await ns
      .db('outbox_events')
      .select('event_id')
      .where('id', '>', last ?? 0)
      .orderBy('id');
    expect(decoded.flat().map((e) => e.eventId)).toEqual(rows.map((r) => r.event_id));
  });

  it('prunes sent events older than the retention window, never unsent ones', async () => {
    const base = { transaction_id: randomUUID(), outcome: 'rejected', reason: 'invalid_message', created_at: new Date() };
    const old = new Date(Date.now() - 2 * 3_600_000);
    const rows = [
      ...Array.from({ length: 15 }, () => ({ ...base, event_id: randomUUID(), sent_at: old })),
      ...Array.from({ length: 4 }, () => ({ ...base, event_id: randomUUID(), sent_at: new Date() })),
      ...Array.from({ length: 3 }, () => ({ ...base, event_id: randomUUID(), sent_at: null })),
    ];
    await ns.db('outbox_events').insert(rows);
    const countAll = async () => Number((await ns.db('outbox_events').count({ n: '*' }))[0]!.n);
    const before = await countAll();
    const cutoff = new Date(Date.now() - 3_600_000);
    // Sent rows from the earlier tests are recent: only the 15 old ones go, 7 at a time.
    expect(await pruneOutbox(ns.db, cutoff, 7)).toBe(15);
    expect(await countAll()).toBe(before - 15);
    expect(await unsent()).toBe(3);
    expect(await pruneOutbox(ns.db, new Date(Date.now() + 60_000), 1_000)).toBe(before - 15 - 3);
    expect(await unsent()).toBe(3);
    await ns.db('outbox_events').whereNull('sent_at').del();
  });
});
