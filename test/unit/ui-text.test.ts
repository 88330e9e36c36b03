import { describe, expect, it } from 'vitest';
import { cell, formatAgo, formatCount, formatDuration, formatMs, formatRate, sparkline } from '../../src/ui/text.js';

describe('sparkline', () => {
  it('scales to the largest value, blank for zero, lowest bar for any positive value', () => {
    expect(sparkline([0, 1, 2, 4, 8], 5)).toBe(' ▁▂▄█');
    expect(sparkline([0.01, 100], 2)).toBe('▁█');
  });

  it('keeps the newest values at the right edge, padding short histories on the left', () => {
    expect(sparkline([8, 8], 5)).toBe('   ██');
    expect(sparkline([1, 2, 3, 4, 5, 6, 7, 8, 8, 8], 3)).toBe('███');
  });

  it('uses a shared scale when given one (so a slow worker looks slow beside a fast one)', () => {
    expect(sparkline([1, 1], 2, 8)).toBe('▁▁');
    expect(sparkline([16], 1, 8)).toBe('█');
  });

  it('is all blank when nothing happened, and empty at width 0', () => {
    expect(sparkline([0, 0, 0], 3)).toBe('   ');
    expect(sparkline([1, 2], 0)).toBe('');
  });
});

describe('cells and numbers', () => {
  it('pads, aligns and truncates with an ellipsis', () => {
    expect(cell('ab', 4)).toBe('ab  ');
    expect(cell('ab', 4, 'right')).toBe('  ab');
    expect(cell('abcdef', 4)).toBe('abc…');
  });

  it('formats rates, counts, latencies and ages compactly', () => {
    expect(formatRate(null)).toBe('-');
    expect(formatRate(12.34)).toBe('12.3');
    expect(formatRate(1234.5)).toBe('1235');
    expect(formatCount(99_999)).toBe('99999');
    expect(formatCount(1_234_567)).toBe('1235k');
    expect(formatCount(12_345_678)).toBe('12.35M');
    expect(formatMs(12.4)).toBe('12');
    expect(formatMs(5, 0)).toBe('-');
    expect(formatMs(25_000)).toBe('25s');
    expect(formatAgo(400)).toBe('0.4s');
    expect(formatAgo(42_000)).toBe('42s');
    expect(formatAgo(180_000)).toBe('3m');
    expect(formatDuration(65_000)).toBe('1m05s');
    expect(formatDuration(3 * 3_600_000 + 7 * 60_000)).toBe('3h07m');
  });
});
