import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it } from 'vitest';
import { WatchFeedStore } from '../../src/watch/watch.js';
import type { QueueDepth, QueueReading } from '../../src/watch/queue-depths.js';
import { WatchApp } from '../../src/ui/WatchApp.js';
import { snapshot } from './stats-fixtures.js';

/**
 * Frames of the TUI rendered with ink-testing-library from fake snapshots fed through the same
 * store `txsim watch` uses, at fixed terminal sizes.
 */

const endpoints = { amqp: 'amqp://guest:***@127.0.0.1:5672', database: 'mysql://root@127.0.0.1:3306/txsim' };
const START_MS = 1_000_000;

function queue(name: string, role: QueueDepth['role'], ready: number, unacked: number | null, inPerS: number | null = null): QueueDepth {
  return { name, role, exists: true, ready, unacked, consumers: 3, inPerS, outPerS: inPerS };
}

const apiReading: QueueReading = {
  source: 'management-api',
  atMs: START_MS,
  apiError: null,
  queues: [
    queue('txsim.transactions.process', 'process', 1234, 57, 612.5),
    queue('txsim.retry.250ms', 'retry', 2, 0, 0.4),
    queue('txsim.retry.1000ms', 'retry', 1, 0, 0.2),
    queue('txsim.errors', 'errors', 88, 0, 3.1),
    queue('txsim.dead', 'dead', 4, 0, 0),
    queue('txsim.accounting.statements', 'accounting', 10, 0, 600),
  ],
};

const amqpReading: QueueReading = {
  ...apiReading,
  source: 'amqp-passive',
  apiError: 'rabbitmq-management unreachable at http://guest:***@127.0.0.1:15672: ECONNREFUSED',
  queues: apiReading.queues.map((q) => ({ ...q, unacked: null, inPerS: null, outPerS: null })),
};

/** A store with three workers that have reported for a few seconds. */
function storeWithWorkers(reading: QueueReading | null = apiReading) {
  let nowMs = START_MS + 60_000;
  const store = new WatchFeedStore({ staleAfterMs: 3_000, goneAfterMs: 15_000, forgetAfterMs: 300_000 }, () => nowMs);
  const rates = { w1: [10, 20, 30, 40], w2: [40, 40, 40, 40], w3: [0, 5, 0, 5] };
  for (let i = 0; i < 4; i++) {
    for (const [id, series] of Object.entries(rates))
      store.onSnapshot(snapshot(id, { rate: series[i]!, seq: i + 1, counts: { applied: 100 * (i + 1) } }), nowMs);
    store.refresh();
    nowMs += 1_000;
  }
  store.setQueues(reading, null);
  store.setBroker('connected');
  store.refresh();
  return {
    store,
    advance: (ms: number) => {
      nowMs += ms;
    },
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 30));

let unmount: (() => void) | null = null;
afterEach(() => {
  unmount?.();
  unmount = null;
});

function show(store: WatchFeedStore, size = { columns: 80, rows: 24 }) {
  const r = render(<WatchApp feed={store} namespace="txsim" endpoints={endpoints} startedAtMs={START_MS} size={size} />);
  unmount = r.unmount;
  return r;
}

describe('WatchApp at 80×24', () => {
  it('header: namespace, uptime, broker state, endpoints without passwords', () => {
    const { lastFrame } = show(storeWithWorkers().store);
    const lines = lastFrame()!.split('\n');
    expect(lines[0]).toMatch(/txsim watch {2}ns txsim {2}up 1m04s {2}sort id {2}broker connected/);
    expect(lines[1]).toContain('amqp amqp://guest:***@127.0.0.1:5672');
    expect(lines[1]).toContain('db mysql://root@127.0.0.1:3306/txsim');
  });

  it('workers table: one row per worker and a totals row whose rate is the sum', () => {
    const frame = show(storeWithWorkers().store).lastFrame()!;
    const row = (id: string) => frame.split('\n').find((l) => l.startsWith(`${id} `))!;
    expect(frame).toMatch(/worker +status +tx\/s +applied rejected retried parked p50 ms p99 ms +seen/);
    expect(row('w1')).toMatch(/^w1 +active +40\.0 +400 +4 +2 +0 +12 +40 +1\.0s$/);
    expect(row('w2')).toMatch(/^w2 +active +40\.0 /);
    expect(row('w3')).toMatch(/^w3 +active +5\.0 /);
    // The fixtures carry no histograms, so the total latency is the worst worker's, marked '~'.
    expect(row('total')).toMatch(/^total +3\/3 +85\.0 +1200 +12 +6 +0 +~12 +~40$/);
  });

  it('throughput sparklines: total and one per worker, newest on the right', () => {
    const frame = show(storeWithWorkers().store).lastFrame()!;
    const spark = (label: string) => frame.split('\n').find((l) => l.startsWith(`${label} `) && l.includes('tx/s') && /[▁-█]/.test(l))!;
    // Total history 50, 65, 70, 85, 85 on a scale of 85: rising to the right.
    expect(spark('total')).toMatch(/▅▇▇██ +85\.0 tx\/s$/);
    expect(spark('w1')).toMatch(/▂▄▆██ +40\.0 tx\/s$/);
    expect(spark('w2')).toMatch(/█████ +40\.0 tx\/s$/);
    // w3 alternates 0 and 5 on the shared scale: blanks and low bars.
    expect(spark('w3')).toMatch(/ ▁ ▁▁ +5\.0 tx\/s$/);
  });

  it('queue panel from the management API, retry steps merged to fit', () => {
    const frame = show(storeWithWorkers().store).lastFrame()!;
    expect(frame).toMatch(/queues via management API +ready +unacked +in\/s +out\/s consumers/);
    expect(frame).toMatch(/ {2}process +1234 +57 +613 +613 +3/);
    expect(frame).toMatch(/ {2}retry ×2 +3 +0 +0\.6 +0\.6 +6/);
    expect(frame).toMatch(/ {2}errors +88 +0 +3\.1/);
    expect(frame).toMatch(/ {2}dead +4 /);
    expect(frame).toMatch(/ {2}accounting +10 /);
  });

  it('says when the numbers come from the AMQP fallback, and why', () => {
    const frame = show(storeWithWorkers(amqpReading).store).lastFrame()!;
    expect(frame).toContain('queues via AMQP (API down)');
    expect(frame).toMatch(/ {2}process +1234 +- +- +- +3/);
    expect(frame).toContain('API: rabbitmq-management unreachable');
  });

  it('top reject reasons and the key legend', () => {
    const frame = show(storeWithWorkers().store).lastFrame()!;
    expect(frame).toContain('top rejects  insufficient_funds 9 · unknown_account 3');
    expect(frame).toContain('q quit  p pause  s sort (id)  ↑↓ details');
  });

  it('fits: no line wider than 80, no more than 23 lines', () => {
    const frame = show(storeWithWorkers().store).lastFrame()!;
    const lines = frame.split('\n');
    expect(lines.length).toBeLessThanOrEqual(23);
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(80);
  });

  it('workers turn stale, then gone, and their rate leaves the total', async () => {
    const { store, advance } = storeWithWorkers();
    const { lastFrame } = show(store);
    advance(4_000);
    store.onSnapshot(snapshot('w1', { rate: 40, seq: 10, counts: { applied: 400 } }), START_MS + 64_000 + 4_000);
    store.refresh();
    await tick();
    let frame = lastFrame()!;
    expect(frame).toMatch(/^w2 +stale +- /m);
    expect(frame).toMatch(/^total +1\/3 +40\.0 /m);
    advance(12_000);
    store.refresh();
    await tick();
    frame = lastFrame()!;
    expect(frame).toMatch(/^w2 +gone +- /m);
    expect(frame).toMatch(/^w1 +stale /m);
  });

  it('before any worker reports it says how to start one', () => {
    const store = new WatchFeedStore({ staleAfterMs: 3_000, goneAfterMs: 15_000, forgetAfterMs: 300_000 }, () => START_MS);
    const frame = show(store).lastFrame()!;
    expect(frame).toContain('no worker has reported yet');
    expect(frame).toContain('queues (reading…)');
    expect(frame).toContain('broker connecting');
  });
});

describe('WatchApp keys', () => {
  it('s cycles the sort order', async () => {
    const { store } = storeWithWorkers();
    const { lastFrame, stdin } = show(store);
    stdin.write('s');
    await tick();
    const frame = lastFrame()!;
    expect(frame).toContain('sort rate');
    const order = frame
      .split('\n')
      .filter((l) => /^w\d /.test(l))
      .map((l) => l.split(' ')[0]);
    // By rate; the first three lines are the table (w1 and w2 tie at 40 → by id).
    expect(order.slice(0, 3)).toEqual(['w1', 'w2', 'w3']);
    stdin.write('s');
    await tick();
    expect(lastFrame()).toContain('sort applied');
  });

  it('p freezes the screen until pressed again', async () => {
    const { store, advance } = storeWithWorkers();
    const { lastFrame, stdin } = show(store);
    stdin.write('p');
    await tick();
    expect(lastFrame()).toMatch(/broker connected +PAUSED/);
    advance(1_000);
    store.onSnapshot(snapshot('w1', { rate: 90, seq: 20, counts: { applied: 999 } }), START_MS + 65_000);
    store.refresh();
    await tick();
    expect(lastFrame()).toMatch(/^w1 +active +40\.0 +400 /m);
    stdin.write('p');
    await tick();
    expect(lastFrame()).not.toContain('PAUSED');
    expect(lastFrame()).toMatch(/^w1 +active +90\.0 +999 /m);
  });

  it('arrows open the details of a worker; esc closes them', async () => {
    const { store } = storeWithWorkers();
    const { lastFrame, stdin } = show(store);
    stdin.write('\u001B[B'); // down
    await tick();
    let frame = lastFrame()!;
    expect(frame).toMatch(/▸ w1 active {2}host-a pid 1002/);
    expect(frame).toMatch(/applied 400 {2}rejected 4 \(insufficient_funds 3, unknown_account 1\) {2}retried 2/);
    expect(frame).toMatch(/created→committed ms +p50 12 {2}p90 26 {2}p99 40/);
    expect(frame).toContain('last error: none');
    expect(frame.split('\n').length).toBeLessThanOrEqual(23);
    stdin.write('\u001B[B');
    await tick();
    expect(lastFrame()).toContain('▸ w2 active');
    stdin.write('\u001B[A'); // up
    await tick();
    expect(lastFrame()).toContain('▸ w1 active');
    stdin.write('\u001B');
    await tick();
    frame = lastFrame()!;
    expect(frame).not.toContain('▸');
    expect(frame).toMatch(/^total +▅▇▇██/m);
  });
});

describe('WatchApp on a big terminal', () => {
  it('adds the wide columns and lists every retry step', () => {
    const frame = show(storeWithWorkers().store, { columns: 140, rows: 50 }).lastFrame()!;
    expect(frame).toMatch(/tx\/s +10s avg +applied +rejected +retried +parked +dup +in-flight +p50 ms +p99 ms +proc p99 +seen/);
    expect(frame).toMatch(/^w1 +active +40\.0 +40\.0 +400 +4 +2 +0 +1 +5\/200 /m);
    expect(frame).toMatch(/ {2}retry 250ms +2 /);
    expect(frame).toMatch(/ {2}retry 1000ms +1 /);
    for (const line of frame.split('\n')) expect([...line].length).toBeLessThanOrEqual(140);
  });
});
