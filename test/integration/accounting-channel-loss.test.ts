import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_HEADERS } from '../../src/accounting/webhook-delivery.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { queueState, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { startTxsim, type TxsimProcess } from './accounting-helpers.js';

const SECRET = 'channel-loss-secret-0123456789';
const GIVE_UP_S = 8;
const TRANSACTIONS = 5;
/** How long before the cut the deliveries have been retrying: the time a restarted give-up clock would add. */
const CUT_AFTER_MS = 3_000;
/** Slack on the give-up: one backoff step (≤ 300 ms here), the last 503, the DB write, the clocks' rounding. */
const GIVE_UP_MARGIN_MS = 1_500;
/** An attempt already on the wire when the outcome was recorded may still arrive this long after it. */
const ON_THE_WIRE_MS = 1_000;

/** One POST the receiver got: its event (the idempotency key), its attempt number, and when, by this machine's clock. */
interface Post {
  readonly eventId: string;
  readonly attempt: number;
  readonly atMs: number;
}

/** A receiver that is down for good: answers every POST 503 and remembers when each came. */
async function startUnavailableReceiver(): Promise<{ server: Server; url: string; posts: Post[] }> {
  const posts: Post[] = [];
  const server = createServer((req, res) => {
    posts.push({
      eventId: String(req.headers[WEBHOOK_HEADERS.idempotencyKey]),
      attempt: Number(req.headers[WEBHOOK_HEADERS.attempt]),
      atMs: Date.now(),
    });
    req.resume();
    req.on('end', () => res.writeHead(503, { 'content-type': 'text/plain' }).end('down for maintenance'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, posts };
}

/** Calls the RabbitMQ management API at RABBITMQ_API_URL (credentials from the URL, sent as basic auth). */
async function managementApi(apiUrl: string, path: string, method: 'GET' | 'DELETE' = 'GET'): Promise<unknown> {
  const base = new URL(apiUrl);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  const response = await fetch(`${base.origin}${path}`, {
    method,
    headers: { authorization, accept: 'application/json', 'x-reason': 'accounting-channel-loss test' },
  });
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
}

interface ConnectionInfo {
  readonly name: string;
  readonly client_properties?: { readonly connection_name?: string };
}

// The broker taking a channel away from `txsim accounting --webhook` (as its consumer_timeout does after 30
// minutes without an ack), while the receiver is down: the broker redelivers, the consumer's new channel
// resumes each delivery's give-up clock where the first one left it, and the dead channel's work stops.
describe('accounting after its channel is lost', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  let receiver: Awaited<ReturnType<typeof startUnavailableReceiver>>;
  let accounting: TxsimProcess | null = null;

  beforeAll(async () => {
    ns = await createTestNamespace('chloss');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(10);
    worker = startWorker('w1', ns.env);
    receiver = await startUnavailableReceiver();
  });

  afterAll(async () => {
    await worker?.stop();
    await accounting?.stop();
    receiver?.server.closeAllConnections();
    await new Promise<void>((resolve) => (receiver ? receiver.server.close(() => resolve()) : resolve()));
    await ns.cleanup();
  });

  it('redelivered events resume their give-up clock, and nothing is POSTed after an outcome is recorded', async () => {
    accounting = startTxsim(
      ['accounting', '--webhook', receiver.url, '--webhook-give-up', String(GIVE_UP_S), '--webhook-backoff-max', '300', '--json'],
      { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET },
    );
    const gen = await runTxsim(['gen', String(TRANSACTIONS), '--seed', 'chloss-1', '--invalid', '0'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const count = async (status?: string) => {
      const query = ns.db('webhook_deliveries');
      if (status) query.where('status', status);
      return Number((await query.count({ n: '*' }))[0]!.n);
    };
    await waitFor(async () => (await count('pending')) === TRANSACTIONS, 30_000, 'every delivery stored and retrying');

    // Cut the accounting's connection from outside, as the broker does at consumer_timeout: its unacked
    // messages go back to the queue and its consumer, reconnected, gets them again.
    await new Promise((r) => setTimeout(r, CUT_AFTER_MS));
    const connectionName = `txsim accounting ${hostname()}-${accounting.child.pid}`;
    let target: ConnectionInfo | undefined;
    await waitFor(
      async () => {
        const connections = (await managementApi(ns.config.rabbitmqApiUrl, '/api/connections')) as ConnectionInfo[];
        target = connections.find((c) => c.client_properties?.connection_name === connectionName);
        return target !== undefined;
      },
      10_000,
      'the accounting connection in the management API',
    );
    const cutAtMs = Date.now();
    await managementApi(ns.config.rabbitmqApiUrl, `/api/connections/${encodeURIComponent(target!.name)}`, 'DELETE');

    // Every event comes back once: its statement line counts the second delivery.
    await waitFor(
      async () => Number((await ns.db('accounting_statements').min({ d: 'deliveries' }))[0]!.d) >= 2,
      15_000,
      'the events redelivered',
    );
    await waitFor(async () => (await count('failed')) === TRANSACTIONS, (GIVE_UP_S + 10) * 1_000, 'every delivery given up on');

    const rows: { event_id: string; status: string; created_at: Date; finished_at: Date }[] = await ns
      .db('webhook_deliveries')
      .select('event_id', 'status', 'created_at', 'finished_at');
    expect(rows).toHaveLength(TRANSACTIONS);
    // Let any attempt still on the wire land before counting what came after the outcomes.
    await new Promise((r) => setTimeout(r, ON_THE_WIRE_MS + 2_000));
    // Every attempt is counted once in its row, those the lost channel made before it stopped included:
    // the row says exactly how many POSTs the receiver got.
    const attemptRows = await ns.db('webhook_deliveries').select<{ event_id: string; attempts: number }[]>('event_id', 'attempts');
    const attempts = new Map(attemptRows.map((r) => [r.event_id, Number(r.attempts)]));
    for (const row of rows) {
      const posted = receiver.posts.filter((p) => p.eventId === row.event_id).length;
      expect(attempts.get(row.event_id), `attempts recorded for ${row.event_id}, which the receiver got ${posted} POSTs of`).toBe(posted);
    }
    for (const row of rows) {
      expect(row.status).toBe('failed');
      const tookMs = row.finished_at.getTime() - row.created_at.getTime();
      // Given up on by the clock that started when the delivery was first stored, not one restarted by
      // the redelivery (which would end near give-up + CUT_AFTER_MS).
      expect(tookMs, `${row.event_id} took ${tookMs} ms`).toBeGreaterThanOrEqual(GIVE_UP_S * 1_000 - GIVE_UP_MARGIN_MS);
      expect(tookMs, `${row.event_id} took ${tookMs} ms`).toBeLessThanOrEqual(GIVE_UP_S * 1_000 + GIVE_UP_MARGIN_MS);
      // Once the outcome is recorded, neither the lost channel's forward nor the redelivered one posts again.
      const late = receiver.posts.filter((p) => p.eventId === row.event_id && p.atMs > row.finished_at.getTime() + ON_THE_WIRE_MS);
      expect(late, `POSTs of ${row.event_id} after its outcome was recorded`).toEqual([]);
      const posts = receiver.posts.filter((p) => p.eventId === row.event_id);
      expect(posts.length).toBeGreaterThan(1);
      // After the cut, one retry loop per event: the lost channel's stopped (its attempt numbers would go on
      // beside the redelivered copy's, which start again at 1).
      const afterCut = posts.filter((p) => p.atMs > cutAtMs + ON_THE_WIRE_MS).map((p) => p.attempt);
      expect(afterCut.length, `POSTs of ${row.event_id} after the cut`).toBeGreaterThan(0);
      expect(afterCut, `attempt numbers of ${row.event_id} after the cut`).toEqual([...afterCut].sort((a, b) => a - b));
      expect(new Set(afterCut).size).toBe(afterCut.length);
    }

    // Everything is acked on the new channel: nothing ready, nothing unacked (the management API's
    // counts lag by its stats interval, hence the wait).
    const queuePath = `/api/queues/${encodeURIComponent(vhostOf(ns.config.amqpUrl))}/${encodeURIComponent(ns.topology.accountingQueue)}`;
    await waitFor(
      async () => {
        const q = (await managementApi(ns.config.rabbitmqApiUrl, queuePath)) as {
          messages_ready?: number;
          messages_unacknowledged?: number;
        };
        return q.messages_ready === 0 && q.messages_unacknowledged === 0;
      },
      15_000,
      'the accounting queue to hold nothing ready or unacked',
      500,
    );
    // And from the broker itself once the consumer is gone: whatever it had not acked would be back now.
    expect(await accounting.stop()).toBe(0);
    await waitFor(async () => (await queueState(ns.amqp, ns.topology.accountingQueue)).consumerCount === 0, 5_000, 'the consumer to go');
    expect((await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount).toBe(0);
  });
});

/** The virtual host of the first AMQP URL ('/' when the path is empty). */
function vhostOf(amqpUrlList: string): string {
  const first = new URL(amqpUrlList.split(',')[0]!.trim());
  return first.pathname.length > 1 ? decodeURIComponent(first.pathname.slice(1)) : '/';
}
