import chalk from 'chalk';
import { render } from 'ink-testing-library';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { WatchFeedStore } from '../../src/watch/watch.js';
import type { QueueDepth, QueueReading } from '../../src/watch/queue-depths.js';
import { colorsAllowed } from '../../src/ui/use-color.js';
import { WatchApp } from '../../src/ui/WatchApp.js';
import { hiddenParts, planLayout, initialUiState } from '../../src/ui/watch-state.js';
import { snapshot } from './stats-fixtures.js';

/**
 * `watch` at the edges: NO_COLOR, terminals too small for every panel (free rows are used, what is
 * left out is said), and a worker that is gone (no live in-flight count or latency).
 */

const endpoints = { amqp: 'amqp://guest:***@127.0.0.1:5672', database: 'mysql://root@127.0.0.1:3306/txsim' };
const START_MS = 1_000_000;

const queue = (name: string, role: QueueDepth['role'], ready: number): QueueDepth => ({
  name,
  role,
  exists: true,
  ready,
  unacked: 0,
  consumers: 3,
  inPerS: 1,
  outPerS: 1,
});
const reading: QueueReading = {
  source: 'management-api',
  atMs: START_MS,
  apiError: null,
  queues: [
    queue('txsim.transactions.process', 'process', 1234),
    queue('txsim.retry.250ms', 'retry', 2),
    queue('txsim.retry.1000ms', 'retry', 1),
    queue('txsim.errors', 'errors', 88),
    queue('txsim.dead', 'dead', 4),
    queue('txsim.accounting.statements', 'accounting', 10),
  ],
};

/** Workers w1..wN that reported for a few seconds; `gone` ones said goodbye (a clean stop). */
function store(workers: number, gone: readonly string[] = []) {
  let nowMs = START_MS + 60_000;
  const s = new WatchFeedStore({ staleAfterMs: 3_000, goneAfterMs: 15_000, forgetAfterMs: 300_000 }, () => nowMs);
  for (let seq = 1; seq <= 3; seq++) {
    for (let i = 1; i <= workers; i++) {
      const id = `w${i}`;
      s.onSnapshot(snapshot(id, { seq, inFlight: 7, prefetchCount: 50, stopping: seq === 3 && gone.includes(id) }), nowMs);
    }
    s.refresh();
    nowMs += 1_000;
  }
  s.setQueues(reading, null);
  s.setBroker('connected');
  s.refresh();
  return s;
}

let unmount: (() => void) | null = null;
afterEach(() => {
  unmount?.();
  unmount = null;
});

function show(feed: WatchFeedStore, size: { columns: number; rows: number }, extra: { colors?: boolean; selectedId?: string } = {}) {
  const r = render(
    <WatchApp
      feed={feed}
      namespace="txsim"
      endpoints={endpoints}
      startedAtMs={START_MS}
      size={size}
      colors={extra.colors}
      initialState={{ ...initialUiState, selectedId: extra.selectedId ?? null }}
    />,
  );
  unmount = r.unmount;
  return r.lastFrame()!;
}

describe('NO_COLOR', () => {
  // ink-testing-library's stdout is no terminal, so chalk would print no colour anyway: force it on
  // to see that the app itself leaves colours out.
  const level = chalk.level;
  beforeAll(() => void (chalk.level = 3));
  afterAll(() => void (chalk.level = level));
  // eslint-disable-next-line no-control-regex
  const COLOUR = /\u001b\[(?:3[0-7]|9[0-7]|38;)/;

  it('is read as no-color.org says: set and not empty', () => {
    expect(colorsAllowed({})).toBe(true);
    expect(colorsAllowed({ NO_COLOR: '' })).toBe(true);
    expect(colorsAllowed({ NO_COLOR: '1' })).toBe(false);
  });

  it('colours the status cells normally, and none at all with colours off (emphasis stays)', () => {
    expect(show(store(3), { columns: 80, rows: 24 })).toMatch(COLOUR);
    unmount?.();
    const plain = show(store(3), { columns: 80, rows: 24 }, { colors: false, selectedId: 'w1' });
    expect(plain).not.toMatch(COLOUR);
    expect(plain).toContain('active');
  });
});

describe('a small terminal', () => {
  it('uses the rows a dropped panel freed: part of the queue panel and the total throughput line', () => {
    const counts = { workers: 3, retryQueues: 2 };
    const l = planLayout({ columns: 80, rows: 15 }, counts, false);
    // Without the whole queue panel the frame would be 9 lines in a budget of 14.
    expect(l.queueRows).toBe('merged');
    expect(l.queueRowsMax).toBe(4);
    expect(l.workerRowsMax).toBe(3);
    expect(hiddenParts(l, counts, false)).toEqual(['throughput', '1 queue row']);
  });

  it('fills the frame up to one free line and says what it left out', () => {
    const frame = show(store(3), { columns: 80, rows: 15 });
    const lines = frame.split('\n');
    expect(lines.length).toBe(14);
    // The backlog and where failures pile up are kept; the least important queue row goes.
    expect(frame).toMatch(/^ {2}process +1234/m);
    expect(frame).toMatch(/^ {2}errors +88/m);
    expect(frame).toMatch(/^ {2}dead +4/m);
    expect(frame).not.toMatch(/^ {2}accounting/m);
    expect(lines[lines.length - 1]).toMatch(/^hidden: throughput, 1 queue row \(too small\) · q quit/);
  });

  it('says so when the details pane does not fit', () => {
    const frame = show(store(3), { columns: 100, rows: 12 }, { selectedId: 'w2' });
    expect(frame.split('\n').length).toBeLessThanOrEqual(11);
    expect(frame).toMatch(/^hidden: details, .*\(too small\)/m);
  });

  it('says nothing at 80×24, where everything fits', () => {
    expect(show(store(3), { columns: 80, rows: 24 })).not.toContain('hidden');
  });
});

describe('a gone worker', () => {
  it('shows no in-flight count or latency in the table, only its counts', () => {
    const frame = show(store(2, ['w2']), { columns: 130, rows: 30 });
    const w1 = frame.split('\n').find((l) => l.startsWith('w1 '))!;
    const w2 = frame.split('\n').find((l) => l.startsWith('w2 '))!;
    expect(w1).toContain('7/50');
    expect(w1).toMatch(/ 12 +40 /);
    expect(w2).toContain('gone');
    expect(w2).not.toContain('7/50');
    expect(w2).not.toMatch(/ 12 +40 /);
    expect(w2).toMatch(/ - +- +- +- +\S+$/);
  });

  it('shows no live figures in the details pane either', () => {
    const frame = show(store(2, ['w2']), { columns: 130, rows: 30 }, { selectedId: 'w2' });
    expect(frame).toContain('in-flight -');
    expect(frame).toContain('worker gone: no live latency');
    expect(frame).not.toContain('p50 12');
  });
});
