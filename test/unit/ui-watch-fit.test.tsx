import chalk from 'chalk';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { colorsAllowed } from '../../src/ui/use-color.js';
import { hiddenParts, planLayout } from '../../src/ui/watch-state.js';
import { frameOf as show, queueReading, unmountFrame, watchStore } from '../helpers/watch-frames.js';

/**
 * `watch` at the edges: NO_COLOR, terminals too small for every panel (free rows are used, what is
 * left out is said), and a worker that is gone (no live in-flight count or latency).
 */

const reading = queueReading(
  [
    ['txsim.transactions.process', 'process', 1234],
    ['txsim.retry.250ms', 'retry', 2],
    ['txsim.retry.1000ms', 'retry', 1],
    ['txsim.errors', 'errors', 88],
    ['txsim.dead', 'dead', 4],
    ['txsim.accounting.statements', 'accounting', 10],
  ],
  { unacked: 0, consumers: 3, inPerS: 1, outPerS: 1 },
);

/** Workers w1..wN that reported for a few seconds; `gone` ones said goodbye (a clean stop). */
const store = (workers: number, gone: readonly string[] = []) => watchStore({ workers, gone, reading }).store;

afterEach(unmountFrame);

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
