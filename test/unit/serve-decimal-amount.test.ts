import { afterEach, describe, expect, it, vi } from 'vitest';
import { ISO_4217_MINOR_UNITS, minorUnitExponentOf } from '../../src/domain/currency-exponents.js';
import { parseJsonKeepingNumberText } from '../../src/domain/json-number-text.js';
import { decimalToMinor, minorDigitsOf } from '../../src/serve/decimal-amount.js';

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
    // ISO 4217 minor units where CLDR (Intl) shows fewer digits: COP and IQD got 0 through Intl on Node 20.
    ['1500.50', 'COP', 150_050],
    ['1500', 'JPY', 1_500],
    ['1.234', 'KWD', 1_234],
    ['1.5', 'IQD', 1_500],
    ['12.5', 'IDR', 1_250],
    ['1.2345', 'CLF', 12_345],
    ['1', 'CLF', 10_000],
    ['1.5', 'UYW', 15_000],
    ['100.50', 'eur', 10_050], // lower case was accepted through Intl and still is
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
    ['1.5', 'JPY', 'amount 1.5 has more than 0 decimals for JPY'],
    ['1.5', 'jpy', 'amount 1.5 has more than 0 decimals for jpy'],
    ['1.2345', 'KWD', 'amount 1.2345 has more than 3 decimals for KWD'],
    ['1.23456', 'CLF', 'amount 1.23456 has more than 4 decimals for CLF'],
    // Well-formed but not in the list: Intl gave each of these 2 digits.
    ['1', 'ZZZ', 'currency ZZZ is not an ISO 4217 code'],
    ['1', 'XAU', 'currency XAU is not an ISO 4217 code'], // no minor unit: not money
    ['1', 'XTS', 'currency XTS is not an ISO 4217 code'],
    ['1', 'XXX', 'currency XXX is not an ISO 4217 code'],
    ['1', 'HRK', 'currency HRK is not an ISO 4217 code'], // withdrawn
    ['1', 'EU', 'currency EU is not an ISO 4217 code'],
    ['1', 'EURO', 'currency EURO is not an ISO 4217 code'],
    ['1', ' EUR', 'currency  EUR is not an ISO 4217 code'],
    ['1', '', 'currency  is not an ISO 4217 code'],
    ['1', 'ıdr', 'currency ıdr is not an ISO 4217 code'], // 'ı'.toUpperCase() is 'I'; Intl refused it too
  ])('refuses %s %s: %s', (text, currency, reason) => {
    expect(decimalToMinor(text, currency)).toEqual({ ok: false, reason });
  });

  it('knows the minor digits of currencies', () => {
    expect([minorDigitsOf('EUR'), minorDigitsOf('JPY'), minorDigitsOf('KWD')]).toEqual([2, 0, 3]);
    expect(['COP', 'IDR', 'HUF', 'IQD', 'CLF', 'kwd', 'ZZZ', 'constructor'].map(minorDigitsOf)).toEqual([2, 2, 2, 3, 4, 3, null, null]);
  });

  describe('without Intl', () => {
    afterEach(() => vi.restoreAllMocks());
    it('does not ask the ICU build for digits', () => {
      vi.spyOn(Intl, 'NumberFormat').mockImplementation(() => {
        throw new Error('Intl.NumberFormat must not decide minor units');
      });
      expect(decimalToMinor('1500.50', 'COP')).toEqual({ ok: true, amountMinor: 150_050 });
      expect(decimalToMinor('1', 'ZZZ')).toEqual({ ok: false, reason: 'currency ZZZ is not an ISO 4217 code' });
    });
  });
});

describe('ISO 4217 minor units', () => {
  const codesWith = (exponent: number) => [...ISO_4217_MINOR_UNITS].filter(([, e]) => e === exponent).map(([code]) => code);

  it('lists every active code once, upper case, with an exponent of 0, 2, 3 or 4', () => {
    // 165 codes in four groups: a code listed twice would leave the map smaller.
    expect(ISO_4217_MINOR_UNITS.size).toBe(165);
    for (const [code, exponent] of ISO_4217_MINOR_UNITS) {
      expect(code).toMatch(/^[A-Z]{3}$/);
      expect([0, 2, 3, 4]).toContain(exponent);
    }
    expect(codesWith(0).join(' ')).toBe('BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF');
    expect(codesWith(3)).toEqual(['BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND']);
    expect(codesWith(4)).toEqual(['CLF', 'UYW']);
  });

  it('leaves out codes without a minor unit and withdrawn codes', () => {
    const left = 'XAU XAG XPT XPD XDR XBA XBB XBC XBD XSU XUA XTS XXX BGN ANG ZWL SLL HRK CUC'.split(' ');
    expect(left.map(minorUnitExponentOf)).toEqual(left.map(() => null));
    expect(['XCG', 'ZWG', 'SLE', 'VED', 'XAD'].map(minorUnitExponentOf)).toEqual([2, 2, 2, 2, 2]);
  });

  it('is case-sensitive and has no prototype keys', () => {
    expect([minorUnitExponentOf('eur'), minorUnitExponentOf('toString'), minorUnitExponentOf('__proto__')]).toEqual([null, null, null]);
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
