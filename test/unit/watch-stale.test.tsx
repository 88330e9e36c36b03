import { afterEach, describe, expect, it } from 'vitest';
import { plainLines, WatchFeedStore } from '../../src/watch/watch.js';
import { frameOf, queueReading, START_MS, STALENESS, unmountFrame, watchStore } from '../helpers/watch-frames.js';
import { snapshot } from './stats-fixtures.js';

/**
 * `watch` when what it shows is not current: a queue read that fails (the last depths stay, marked
 * stale with their age and the error, rates '-'), its own broker connection down (workers do not
 * age, status '?'), a gone worker in the plain lines, and a terminal narrower than 80 columns.
 */

const API_DOWN = 'rabbitmq-management unreachable at http://guest:***@127.0.0.1:15672: ECONNREFUSED';

const reading = queueReading(
  [
    ['txsim.transactions.process', 'process', 1234],
    ['txsim.retry.250ms', 'retry', 2],
    ['txsim.errors', 'errors', 88],
    ['txsim.dead', 'dead', 4],
    ['txsim.accounting.statements', 'accounting', 10],
  ],
  { unacked: 3, consumers: 2, inPerS: 61.5, outPerS: 60.2 },
);

/** Workers w1..wN reporting for three seconds, the queues read; `gone` ones said goodbye. */
const setup = (workers = 3, gone: readonly string[] = []) => watchStore({ workers, gone, reading });

afterEach(unmountFrame);

const totalLine = (lines: string[]) => lines.find((l) => l.includes('kind=total'))!;

describe('a queue read that fails after a good one', () => {
  it('keeps the depths but marks them stale with their age and the error; rates unknown', () => {
    const { store, advance } = setup();
    advance(20_000);
    store.setQueues(null, API_DOWN);
    const data = store.refresh();
    expect(data.queuesStale).toBe(true);
    expect(data.queuesAgeMs).toBe(20_000);
    expect(data.queueError).toBe(API_DOWN);
    expect(data.queues!.queues[0]).toMatchObject({ ready: 1234, unacked: 3, inPerS: null, outPerS: null });

    const frame = frameOf(store);
    expect(frame).toMatch(/^queues \(stale\) +ready +unacked +in\/s +out\/s consumers/m);
    expect(frame).toContain(`  last read 20s ago: ${API_DOWN}`.slice(0, 79));
    expect(frame).toMatch(/^ {2}process +1234 +3 +- +- +2$/m);
    expect(frame).not.toContain('queues via management API');
  });

  it('prints queues=stale with the age and the error in the plain lines, and no depths that look current', () => {
    const { store, advance } = setup();
    advance(20_000);
    store.setQueues(null, API_DOWN);
    const line = totalLine(plainLines(store.refresh(), new Date(0)));
    expect(line).toContain(`queues=stale queue_age_ms=20000 queue_error=${JSON.stringify(API_DOWN)}`);
    expect(line).not.toMatch(/ process=/);
  });

  it('says why there is no reading at all, in the plain lines too', () => {
    const store = new WatchFeedStore(STALENESS, () => START_MS);
    store.setQueues(null, API_DOWN);
    const data = store.refresh();
    expect(data.queuesStale).toBe(false);
    expect(totalLine(plainLines(data, new Date(0)))).toMatch(/queues=unavailable queue_error="rabbitmq-management unreachable/);
    expect(frameOf(store)).toContain(`  ${API_DOWN}`.slice(0, 60));
  });

  it('is current again after the next good read', () => {
    const { store, advance } = setup();
    advance(20_000);
    store.setQueues(null, API_DOWN);
    store.refresh();
    advance(1_000);
    store.setQueues(reading, null);
    const data = store.refresh();
    expect(data.queuesStale).toBe(false);
    expect(data.queueError).toBeNull();
    expect(totalLine(plainLines(data, new Date(0)))).toContain('queues=management-api process=1234/3');
    expect(frameOf(store)).toMatch(/^ {2}process +1234 +3 +61\.5 +60\.2 +2$/m);
  });

  it('turns stale without an error when no read has come back for a while (a hung read)', () => {
    const { store, advance } = setup();
    advance(11_000);
    const data = store.refresh();
    expect(data.queuesStale).toBe(true);
    expect(data.queueError).toBeNull();
    expect(frameOf(store)).toContain('  last read 11s ago');
  });
});

describe('a gone worker in the plain lines', () => {
  it('prints no in-flight count or latency, only its counts', () => {
    const { store } = setup(2, ['w2']);
    const lines = plainLines(store.refresh(), new Date(0));
    const w1 = lines.find((l) => l.includes('id="w1"'))!;
    const w2 = lines.find((l) => l.includes('id="w2"'))!;
    expect(w1).toContain('in_flight=7/50 p50_ms=12 p99_ms=40');
    expect(w2).toContain('status=gone');
    expect(w2).toContain('in_flight=- p50_ms=- p99_ms=-');
    expect(w2).toContain('applied=100');
  });
});

describe('while watch’s own broker connection is down', () => {
  it('does not age the workers: their status is ? (not stale, not gone), rates and totals unknown', () => {
    const { store, advance } = setup(2);
    store.deaf();
    store.setBroker('reconnecting', 'connection closed');
    advance(20_000);
    const data = store.refresh();
    expect(data.stats.rows.map((r) => [r.workerId, r.status, r.unheard])).toEqual([
      ['w1', 'active', true],
      ['w2', 'active', true],
    ]);
    const frame = frameOf(store);
    expect(frame).toMatch(/^w1 +\? +- +100 +4 +2 +0 +- +- +21s$/m);
    expect(frame).not.toMatch(/^w\d +(stale|gone)/m);
    expect(frame).toMatch(/^total +2\/2 +- +200 /m);
    const lines = plainLines(data, new Date(0));
    expect(lines.find((l) => l.includes('id="w1"'))).toContain('status=unknown last_status=active tx_per_s=-');
    expect(totalLine(lines)).toContain('tx_per_s=- ');
  });

  it('ages them again once subscribed, the outage not counted; a worker that kept working never looked gone', () => {
    const { store, advance, at } = setup(2);
    store.deaf();
    advance(20_000);
    store.refresh();
    store.hearing();
    advance(500);
    store.onSnapshot(snapshot('w1', { seq: 4, counts: { applied: 900 } }), at());
    advance(1_000);
    const rows = store.refresh().stats.rows;
    // w1 reported again; w2 has not yet, but its silence is 1 s before the outage and 1.5 s since: 2.5 s.
    expect(rows.map((r) => [r.workerId, r.status, r.unheard])).toEqual([
      ['w1', 'active', false],
      ['w2', 'active', false],
    ]);
    advance(1_000);
    expect(store.refresh().stats.rows.find((r) => r.workerId === 'w2')!.status).toBe('stale');
  });
});

describe('a 60-column terminal', () => {
  it('leaves whole columns out (never a cut p50/p99) and says which in the footer', () => {
    const { store } = setup(3);
    const frame = frameOf(store, { columns: 60, rows: 30 });
    const lines = frame.split('\n');
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(60);
    const header = lines.find((l) => l.startsWith('worker '))!;
    expect(header).toMatch(/^worker +status +tx\/s +applied rejected p50 ms p99 ms$/);
    expect(lines.find((l) => l.startsWith('w1 '))).toMatch(/^w1 +active +10\.0 +100 +4 +12 +40$/);
    // No table or queue line is cut with an ellipsis; the queue panel lost its consumers column whole.
    for (const line of lines.filter((l) => /^(worker|w\d|total|queues| {2}\w)/.test(l))) expect(line).not.toContain('…');
    expect(frame).toMatch(/^queues via management API +ready +unacked +in\/s +out\/s$/m);
    // The footer itself is cut at 60 columns: what was left out comes first.
    expect(lines[lines.length - 1]).toMatch(/^hidden: columns seen\/parked\/retried\/queue consumers \(too sm/);
  });

  it('hides nothing at 80 columns', () => {
    const { store } = setup(3);
    expect(frameOf(store, { columns: 80, rows: 30 })).not.toContain('hidden');
  });
});
