import { describe, expect, it } from 'vitest';
import { decimalToMinor, minorDigitsOf, parseJsonKeepingNumberText } from '../../src/serve/decimal-amount.js';

describe('decimalToMinor', () => {
  it.each([
    ['0.1', 'EUR', 10],
    ['100.50', 'EUR', 10_050],
    ['100.5', 'EUR', 10_050],
    ['100', 'EUR', 10_000],
    ['1e3', 'EUR', 100_000],
    ['1.5e1', 'EUR', 1_500],
    ['1E-2', 'EUR', 1],
    ['0.29', 'EUR', 29], // 0.29 * 100 is 28.999999999999996 as a float
    ['1.10', 'JPY', null],
    ['110', 'JPY', 110],
    ['1.234', 'BHD', 1_234],
    ['10000000000', 'EUR', 1_000_000_000_000],
  ])('%s %s → %s', (text, currency, expected) => {
    const result = decimalToMinor(text, currency);
    if (expected === null) expect(result.ok).toBe(false);
    else expect(result).toEqual({ ok: true, amountMinor: expected });
  });

  it.each([
    ['1.005', 'EUR', 'amount 1.005 has more than 2 decimals for EUR'],
    ['1e-3', 'EUR', 'amount 1e-3 has more than 2 decimals for EUR'],
    ['-1', 'EUR', 'amount must be positive'],
    ['0', 'EUR', 'amount must be positive'],
    ['0.00', 'EUR', 'amount must be positive'],
    ['10000000000.01', 'EUR', 'amount 10000000000.01 is more than 1000000000000 minor units'],
    ['1e400', 'EUR', 'amount 1e400 is too large'],
    ['12abc', 'EUR', 'amount "12abc" is not a decimal number'],
    ['', 'EUR', 'amount "" is not a decimal number'],
    ['1', 'XYZ1', 'currency XYZ1 is not an ISO 4217 code'],
  ])('refuses %s %s: %s', (text, currency, reason) => {
    expect(decimalToMinor(text, currency)).toEqual({ ok: false, reason });
  });

  it('knows the minor digits of currencies', () => {
    expect([minorDigitsOf('EUR'), minorDigitsOf('JPY'), minorDigitsOf('KWD')]).toEqual([2, 0, 3]);
  });
});

describe('parseJsonKeepingNumberText', () => {
  const keep = new Set(['amount']);
  it('keeps the text of kept numbers and parses the others', () => {
    expect(parseJsonKeepingNumberText('{"amount": 100.50, "source_account": 7, "nested": {"amount": 1e3}, "s": "1.5"}', keep)).toEqual({
      amount: '100.50',
      source_account: 7,
      nested: { amount: '1e3' },
      s: '1.5',
    });
  });
  it('leaves numbers inside strings and escapes alone', () => {
    expect(parseJsonKeepingNumberText('{"note":"a \\"12.30\\" b","amount":"12.30"}', keep)).toEqual({
      note: 'a "12.30" b',
      amount: '12.30',
    });
  });
  it('keeps huge and negative numbers exact', () => {
    expect(parseJsonKeepingNumberText('{"amount":123456789012345678901234.5,"x":[-1,2.5]}', keep)).toEqual({
      amount: '123456789012345678901234.5',
      x: [-1, 2.5],
    });
  });
  it('rejects what JSON rejects', () => {
    for (const bad of ['{"amount":01}', '{"amount":1.}', '{"amount":-}', '{"amount":', '{"a":"unterminated}'])
      expect(() => parseJsonKeepingNumberText(bad, keep), bad).toThrow();
  });
});
