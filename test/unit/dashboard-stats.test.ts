import { afterEach, describe, expect, it } from 'vitest';
import { topologyFor } from '../../src/amqp/topology.js';
import { pino } from 'pino';
import { DashboardStats, DASHBOARD_DEFAULTS, type DashboardFrame } from '../../src/serve/dashboard-stats.js';
import { FeedBatch, FEED_BATCH_MAX } from '../../src/serve/routes-dashboard.js';
import type { QueueReading } from '../../src/watch/queue-depths.js';
import { receiveSnapshot, type StatsState } from '../../src/watch/stats-aggregator.js';
import { snapshot } from './stats-fixtures.js';

/**
 * The dashboard's server side without a broker: its frames (a failed queue read marks the last
 * reading stale; a gone worker's row has no in-flight count or latency) and the feed batches (every
 * event that never reaches the page is counted).
 */

const reading: QueueReading = {
  source: 'management-api',
  atMs: 0,
  apiError: null,
  queues: [{ name: 'd.transactions.process', role: 'process', exists: true, ready: 40, unacked: 2, consumers: 1, inPerS: 9, outPerS: 8 }],
};

/** The test reaches into two private fields: the aggregator state (no broker to bring snapshots) and the queue reader. */
interface Internals {
  stats: StatsState;
  reader: { read(): Promise<QueueReading> };
}

let open: DashboardStats | null = null;
afterEach(async () => {
  await open?.close();
  open = null;
});

function dashboard(reads: (() => Promise<QueueReading>)[]) {
  let nowMs = 100_000;
  const stats = new DashboardStats(
    {
      amqpUrl: 'amqp://guest:guest@127.0.0.1:1',
      rabbitmqApiUrl: 'http://guest:guest@127.0.0.1:1',
      topology: topologyFor('d', [250]),
      clientName: 'test',
      ...DASHBOARD_DEFAULTS,
    },
    pino({ level: 'silent' }),
    () => nowMs,
  );
  open = stats;
  const internals = stats as unknown as Internals;
  // Once the scripted reads are used up, a read hangs (the one-at-a-time guard then skips further ticks' reads).
  internals.reader = { read: () => (reads.shift() ?? (() => new Promise<QueueReading>(() => {})))() };
  stats.subscribe(() => {});
  return { stats, internals, advance: (ms: number) => void (nowMs += ms), now: () => nowMs };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

describe('dashboard frames', () => {
  it('keep the last queue reading when a read fails, marked stale with its age and the error, without rates', async () => {
    const { stats, advance } = dashboard([() => Promise.resolve(reading), () => Promise.reject(new Error('API down: ECONNREFUSED'))]);
    stats.tick();
    await settle();
    let frame: DashboardFrame = stats.tick(); // the second read starts here and fails
    expect(frame).toMatchObject({ queuesStale: false, queueError: null, queuesAgeMs: 0 });
    expect(frame.queues!.queues[0]).toMatchObject({ ready: 40, inPerS: 9 });
    await settle();
    advance(20_000);
    frame = stats.tick();
    expect(frame).toMatchObject({ queuesStale: true, queueError: 'API down: ECONNREFUSED', queuesAgeMs: 20_000 });
    expect(frame.queues!.queues[0]).toMatchObject({ ready: 40, unacked: 2, inPerS: null, outPerS: null });
  });

  it('send a gone worker’s row without in-flight count or latency, a live one with them', () => {
    const { stats, internals, now } = dashboard([() => new Promise(() => {})]);
    internals.stats = receiveSnapshot(internals.stats, snapshot('w1', { inFlight: 7, prefetchCount: 50 }), now());
    internals.stats = receiveSnapshot(internals.stats, snapshot('w2', { inFlight: 7, prefetchCount: 50, stopping: true }), now());
    const rows = stats.tick().workers as { workerId: string; status: string; inFlight: number | null; endToEndMs: { count: number } }[];
    expect(rows.map((r) => [r.workerId, r.status, r.inFlight, r.endToEndMs.count])).toEqual([
      ['w1', 'active', 7, 100],
      ['w2', 'gone', null, 0],
    ]);
  });
});

describe('dashboard feed batches', () => {
  const event = (i: number) => JSON.stringify({ transactionId: `t${i}` });
  const parse = (text: string) => JSON.parse(text) as { dropped: number; events: { transactionId: string }[] };

  it('count a whole batch the socket would not take in the next batch’s dropped', () => {
    const sent: string[] = [];
    let accept = false;
    const batch = new FeedBatch(
      () => {},
      (text) => {
        if (accept) sent.push(text);
        return accept;
      },
    );
    for (let i = 0; i < 3; i++) batch.send(event(i));
    batch.flush(); // skipped: the socket is more than 1 MB behind
    accept = true;
    batch.send(event(3));
    batch.flush();
    expect(sent.map(parse)).toEqual([{ type: 'tx', dropped: 3, events: [{ transactionId: 't3' }] }]);
    batch.flush();
    expect(sent).toHaveLength(1); // nothing new, nothing lost: nothing to say
  });

  it('say how many were lost even when nothing new arrived since', () => {
    const sent: string[] = [];
    let accept = false;
    const batch = new FeedBatch(
      () => {},
      (text) => (accept ? sent.push(text) > 0 : false),
    );
    for (let i = 0; i < FEED_BATCH_MAX + 5; i++) batch.send(event(i));
    batch.flush();
    accept = true;
    batch.flush();
    expect(sent.map(parse)).toEqual([{ type: 'tx', dropped: FEED_BATCH_MAX + 5, events: [] }]);
  });
});
