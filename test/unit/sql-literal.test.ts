import { describe, expect, it } from 'vitest';
import { sqlList, sqlLiteral, sqlTuple } from '../../src/db/sql-literal.js';

describe('sql literals for the batch path', () => {
  it('escapes strings the way mysql2 does, so a hostile merchant name stays one value', () => {
    expect(sqlLiteral("O'Brien; DROP TABLE accounts; --")).toBe("'O\\'Brien; DROP TABLE accounts; --'");
    expect(sqlLiteral('back\\slash\n\0')).toBe("'back\\\\slash\\n\\0'");
    expect(sqlLiteral('Café ☕')).toBe("'Café ☕'");
  });

  it('writes integers exactly, bigints beyond 2^53 included, and refuses anything else numeric', () => {
    expect(sqlLiteral(42)).toBe('42');
    expect(sqlLiteral(-7)).toBe('-7');
    expect(sqlLiteral(9223372036854775807n)).toBe('9223372036854775807');
    expect(() => sqlLiteral(1.5)).toThrow(RangeError);
    expect(() => sqlLiteral(2 ** 53)).toThrow(RangeError);
    expect(() => sqlLiteral(Number.NaN)).toThrow(RangeError);
  });

  it('writes dates as UTC DATETIME(3) and null as NULL', () => {
    expect(sqlLiteral(new Date('2026-11-22T13:05:09.007Z'))).toBe("'2026-11-22 13:05:09.007'");
    expect(sqlLiteral(null)).toBe('NULL');
  });

  it('builds tuples and IN lists, and refuses an empty IN list', () => {
    expect(sqlTuple(['a', 1, null, 2n])).toBe("('a', 1, NULL, 2)");
    expect(sqlList([3, 1])).toBe('3, 1');
    expect(() => sqlList([])).toThrow(RangeError);
  });
});
