import { describe, expect, it } from 'vitest';
import { formatMinor, parseMinor, toMinor } from '../../src/domain/money.js';

describe('money', () => {
  it('converts bounded message amounts to bigint and refuses fractions and unsafe integers', () => {
    expect(toMinor(1_000_000_000_000)).toBe(1_000_000_000_000n);
    expect(() => toMinor(1.5)).toThrow(RangeError);
    expect(() => toMinor(2 ** 53)).toThrow(RangeError);
  });

  it('parses BIGINT strings and SUM() decimals exactly, beyond 2^53', () => {
    expect(parseMinor('9223372036854775807')).toBe(9223372036854775807n);
    expect(parseMinor('-12345.000')).toBe(-12345n);
    expect(parseMinor(null)).toBe(0n);
    expect(() => parseMinor('12.50')).toThrow(RangeError);
  });

  it('formats minor units with thousands separators and currency', () => {
    expect(formatMinor(123456n, 'EUR')).toBe('1,234.56 EUR');
    expect(formatMinor(-5n)).toBe('-0.05');
    expect(formatMinor(100_000_000_000_00n)).toBe('100,000,000,000.00');
    // The currency's own decimals (ISO 4217): none for yen, three for dinars, two for an unknown code.
    expect(formatMinor(1_500n, 'JPY')).toBe('1,500 JPY');
    expect(formatMinor(-1_234n, 'KWD')).toBe('-1.234 KWD');
    expect(formatMinor(12n, 'CLF')).toBe('0.0012 CLF');
    expect(formatMinor(150n, 'ZZZ')).toBe('1.50 ZZZ');
  });
});
