import { describe, expect, it } from 'vitest';
import { countOf, firstRowOf, minorOf, rowsOf } from '../../src/db/rows.js';

describe("mysql2's raw results", () => {
  it('give the rows of [rows, fields], and the first row or undefined', () => {
    const result = [[{ n: '3' }, { n: '4' }], [{ name: 'n' }]];
    expect(rowsOf<{ n: string }>(result)).toEqual([{ n: '3' }, { n: '4' }]);
    expect(firstRowOf<{ n: string }>(result)).toEqual({ n: '3' });
    expect(firstRowOf<{ n: string }>([[], []])).toBeUndefined();
  });

  it('turn counts into numbers, a missing one into 0', () => {
    expect(countOf('12')).toBe(12);
    expect(countOf(5)).toBe(5);
    expect(countOf(null)).toBe(0);
    expect(countOf(undefined)).toBe(0);
  });

  it('turn money from SUM() into bigint exactly, refusing fractions', () => {
    expect(minorOf('9223372036854775807')).toBe(9223372036854775807n);
    expect(minorOf('-14.000')).toBe(-14n);
    expect(minorOf(null)).toBe(0n);
    expect(() => minorOf('1.5')).toThrow(RangeError);
  });
});
