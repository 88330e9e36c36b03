import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_HEADERS } from '../../src/accounting/webhook-delivery.js';
import { ACCOUNTING_EVENTS_TYPE, encodeAccountingEvents, type AccountingEvent } from '../../src/domain/accounting-event.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { queueState, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { freePort, jsonLines, startTxsim, type TxsimProcess } from './accounting-helpers.js';

const SECRET = 'pending-webhooks-secret-0123456789';
/** How long a pending delivery must go without an attempt before another consumer takes it over (the flag, in s). */
const ORPHAN_AFTER_S = 3;
/** Retry settings that fit that window (it must be at least twice the backoff cap plus the attempt timeout). */
const FAST_RETRIES = ['--webhook-backoff-max', '300', '--webhook-timeout', '1000'];

/** One POST a receiver got: its event (the idempotency key) and its attempt number. */
interface Post {
  readonly eventId: string;
  readonly attempt: number;
}

/** A receiver that answers every POST 503 (down for maintenance) and remembers each. */
async function startUnavailableReceiver(): Promise<{ server: Server; url: string; posts: Post[] }> {
  const posts: Post[] = [];
  const server = createServer((req, res) => {
    posts.push({ eventId: String(req.headers[WEBHOOK_HEADERS.idempotencyKey]), attempt: Number(req.headers[WEBHOOK_HEADERS.attempt]) });
    req.resume();
    req.on('end', () => res.writeHead(503, { 'content-type': 'text/plain' }).end('down for maintenance'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, posts };
}

// Webhook deliveries left `pending` with no message left to bring them back: the consumer that stored
// them crashed, and one started without --webhook acknowledged the redelivered events (it only keeps
// statements). A consumer started with --webhook later must send them: it looks for pending deliveries
// nobody has tried for a while, takes each over in the database, and sends it once.
describe('accounting --webhook and deliveries left pending by an earlier process', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  const started: TxsimProcess[] = [];
  const start = (args: string[]) => {
    const p = startTxsim(args, { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET });
    started.push(p);
    return p;
  };
  const deliveries = async (status: string) => Number((await ns.db('webhook_deliveries').where('status', status).count({ n: '*' }))[0]!.n);
  const statementLines = async () => Number((await ns.db('accounting_statements').count({ n: '*' }))[0]!.n);
  const unsentOutbox = async () => Number((await ns.db('outbox_events').whereNull('sent_at').count({ n: '*' }))[0]!.n);
  const deliveriesCounted = async () => Number((await ns.db('accounting_statements').sum({ d: 'deliveries' }))[0]!.d ?? 0);
  const queueDrained = async () => {
    const q = await queueState(ns.amqp, ns.topology.accountingQueue);
    return q.messageCount === 0;
  };

  beforeAll(async () => {
    ns = await createTestNamespace('hookpend');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(10);
    worker = startWorker('w1', ns.env);
  });

  afterAll(async () => {
    await worker?.stop();
    await Promise.all(started.map((p) => p.stop()));
    await ns.cleanup();
  });

  it('a crash, then a run without --webhook: the next run with --webhook sends every pending delivery, each once', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/hooks`;
    const withWebhook = ['accounting', '--webhook', url, ...FAST_RETRIES, '--webhook-orphan-after', String(ORPHAN_AFTER_S)];

    // 1. The receiver is down: every delivery is stored pending and retried.
    const first = start([...withWebhook, '--json']);
    const gen = await runTxsim(['gen', '8', '--seed', 'hookpend-1', '--invalid', '0'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    await waitFor(async () => (await deliveries('pending')) === 8, 30_000, '8 pending webhook deliveries');
    // 2. It crashes: nothing was acked, the broker puts every event back.
    await first.kill();

    // 3. A consumer without --webhook takes the events back: each is a repeat of a stored line, acked.
    const plain = start(['accounting', '--json']);
    await waitFor(async () => (await deliveriesCounted()) === 16, 30_000, 'the redelivered events counted');
    await waitFor(queueDrained, 10_000, 'the accounting queue drained');
    expect(await plain.stop()).toBe(0);
    await waitFor(async () => (await queueState(ns.amqp, ns.topology.accountingQueue)).consumerCount === 0, 5_000, 'the consumer to go');
    // Acked for good: nothing came back when its channel closed. The deliveries are owed, and no message
    // will ever bring them back.
    expect((await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount).toBe(0);
    expect(await deliveries('pending')).toBe(8);

    // 4. The receiver is up, and a consumer with --webhook starts: it finds the pending deliveries in the
    // database and sends each, although no event arrives on its queue.
    const receiver = start(['accounting', 'receive', '--port', String(port), '--json']);
    await waitFor(() => receiver.stdout().includes('listening'), 10_000, 'receiver listening');
    const second = start([...withWebhook, '--json']);
    await waitFor(async () => (await deliveries('delivered')) === 8, 30_000, 'every pending webhook delivered');

    const accepted = jsonLines(receiver.stdout()).filter((l) => l.accepted === true);
    const statements: { event_id: string }[] = await ns.db('accounting_statements').select('event_id');
    expect(new Set(accepted.map((l) => l.eventId))).toEqual(new Set(statements.map((s) => s.event_id)));
    // Once each: no repeat reached the receiver.
    expect(accepted.filter((l) => l.duplicate === true)).toEqual([]);
    expect(accepted).toHaveLength(8);
    // No statement line printed: nothing new arrived; the events were only forwarded.
    expect(jsonLines(second.stdout())).toHaveLength(0);
    // Delivered with the receiver's answer, and the attempts of this run counted (those of the process
    // that was killed died with it: attempts are counted as they end, not before they start).
    const rows: { attempts: number; response_status: number }[] = await ns.db('webhook_deliveries').select('attempts', 'response_status');
    expect(rows.every((r) => r.response_status === 200 && r.attempts >= 1)).toBe(true);

    // Nothing more is sent for them later.
    await new Promise((r) => setTimeout(r, (ORPHAN_AFTER_S + 2) * 1_000));
    expect(jsonLines(receiver.stdout()).filter((l) => l.accepted === true)).toHaveLength(8);
    expect(await second.stop()).toBe(0);

    const verify = await runTxsim(['verify', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).accounting).toMatchObject({ webhooks: { delivered: 8, failed: 0, pending: 0 } });
  });

  it('a second consumer does not take over deliveries the first one is still retrying', async () => {
    const receiver = await startUnavailableReceiver();
    try {
      const args = ['accounting', '--webhook', receiver.url, ...FAST_RETRIES, '--webhook-orphan-after', String(ORPHAN_AFTER_S), '--json'];
      const retrying = start(args);
      const linesBefore = await statementLines();
      const gen = await runTxsim(['gen', '5', '--seed', 'hookpend-2', '--invalid', '0'], ns.env);
      expect(gen.code, gen.stderr).toBe(0);
      // Every event of the run stored (a transfer has two), each with its delivery pending.
      let events = 0;
      await waitFor(
        async () => {
          events = (await statementLines()) - linesBefore;
          return events >= 5 && (await unsentOutbox()) === 0 && (await deliveries('pending')) === events;
        },
        30_000,
        'every event of the run stored, its webhook pending',
      );
      const fresh: { event_id: string }[] = await ns.db('webhook_deliveries').where('status', 'pending').select('event_id');
      const ids = new Set(fresh.map((r) => r.event_id));

      // A second consumer starts while the first keeps retrying: for several orphan windows it must leave
      // those deliveries alone (one retry loop per event: its attempt numbers never start over at 1).
      const other = start(args);
      await new Promise((r) => setTimeout(r, (ORPHAN_AFTER_S * 3 + 1) * 1_000));
      for (const id of ids) {
        const attempts = receiver.posts.filter((p) => p.eventId === id).map((p) => p.attempt);
        expect(attempts.length, `POSTs of ${id}`).toBeGreaterThan(3);
        expect(attempts, `attempt numbers of ${id}`).toEqual(attempts.map((_, i) => i + 1));
      }
      expect(await deliveries('pending')).toBe(events);

      // The first one stops (SIGTERM: its events go back to the queue, the second consumer gets them).
      expect(await retrying.stop()).toBe(0);
      expect(await other.stop()).toBe(0);
    } finally {
      receiver.server.closeAllConnections();
      await new Promise<void>((resolve) => receiver.server.close(() => resolve()));
    }
  });
});

// A backlog behind the POST slots (`--prefetch`): with the receiver down, the events of a held message
// wait for the one slot while the first is retried. They are still this consumer's to send: a second
// consumer must not take them over as if nobody worked on them.
describe('accounting --webhook with a backlog behind its POST slots', () => {
  let ns: TestNamespace;
  const started: TxsimProcess[] = [];
  const start = (args: string[]) => {
    const p = startTxsim(args, { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET });
    started.push(p);
    return p;
  };
  const pendingDeliveries = async () => Number((await ns.db('webhook_deliveries').where('status', 'pending').count({ n: '*' }))[0]!.n);

  beforeAll(async () => {
    ns = await createTestNamespace('hookslot');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
  });

  afterAll(async () => {
    await Promise.all(started.map((p) => p.stop()));
    await ns.cleanup();
  });

  it('deliveries waiting for the only POST slot are not taken over by a second consumer', async () => {
    const receiver = await startUnavailableReceiver();
    try {
      // Four events in one message, as the relay sends them: a consumer with --prefetch 1 holds all four.
      const events: AccountingEvent[] = Array.from({ length: 4 }, (_, i) => ({
        eventId: randomUUID(),
        transactionId: randomUUID(),
        accountId: 1,
        accountSeq: i + 1,
        type: 'deposit',
        outcome: 'applied',
        reason: null,
        amountMinor: 100n,
        currency: 'EUR',
        balanceAfterMinor: 100n * BigInt(i + 1),
        occurredAt: new Date().toISOString(),
      }));
      const channel = await ns.amqp.createConfirmChannel();
      channel.sendToQueue(ns.topology.accountingQueue, encodeAccountingEvents(events), {
        persistent: true,
        contentType: 'application/json',
        type: ACCOUNTING_EVENTS_TYPE,
        messageId: `${events[0]!.eventId}+${events.length}`,
      });
      await channel.waitForConfirms();
      await channel.close();

      const args = [
        'accounting',
        '--webhook',
        receiver.url,
        ...FAST_RETRIES,
        '--webhook-orphan-after',
        String(ORPHAN_AFTER_S),
        '--prefetch',
        '1',
        '--json',
      ];
      const first = start(args);
      // One event holds the slot and is retried; the three others wait for it.
      await waitFor(
        async () => (await pendingDeliveries()) === 4 && receiver.posts.length > 1,
        30_000,
        'four deliveries pending, one being retried',
      );
      const other = start(args);
      await new Promise((r) => setTimeout(r, (ORPHAN_AFTER_S * 3 + 1) * 1_000));

      const sent = new Set(receiver.posts.map((p) => p.eventId));
      expect(sent.size, 'events POSTed while only one slot was free (the others taken over by the second consumer?)').toBe(1);
      for (const id of sent) {
        const attempts = receiver.posts.filter((p) => p.eventId === id).map((p) => p.attempt);
        expect(attempts, `attempt numbers of ${id}`).toEqual(attempts.map((_, i) => i + 1));
      }
      expect(await pendingDeliveries()).toBe(4);
      expect(await first.stop()).toBe(0);
      expect(await other.stop()).toBe(0);
    } finally {
      receiver.server.closeAllConnections();
      await new Promise<void>((resolve) => receiver.server.close(() => resolve()));
    }
  });
});
