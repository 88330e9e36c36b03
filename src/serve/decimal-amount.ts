import { minorUnitExponentOf } from '../domain/currency-exponents.js';
import { MAX_AMOUNT_MINOR } from '../domain/transaction.js';

/**
 * Decimal amounts from outside (the webhook-ingest contract's `"amount": 100.50`) converted to integer
 * minor units from their text, never through a float: `0.1 + 0.2` is not money. A JSON number is
 * taken as the digits it was written with (see `parseJsonKeepingNumberText`), so `100.50` and
 * `"100.50"` are the same amount.
 */

export type DecimalResult = { readonly ok: true; readonly amountMinor: number } | { readonly ok: false; readonly reason: string };

/**
 * Decimal places of a currency's minor unit, from the ISO 4217 table (EUR 2, JPY 0, BHD 3, CLF 4), or
 * null for a code that is not an active ISO 4217 currency. Not from `Intl.NumberFormat`: CLDR's display
 * digits differ from ISO 4217 (COP, IDR, IQD …) and Intl accepts any three letters.
 */
export function minorDigitsOf(currency: string): number | null {
  // Lower case stays accepted, as it was through Intl; ASCII only, since 'ı'.toUpperCase() is 'I'.
  if (!/^[A-Za-z]{3}$/.test(currency)) return null;
  return minorUnitExponentOf(currency.toUpperCase());
}

const DECIMAL = /^(\d+)(?:\.(\d+))?$/;
const EXPONENT = /^(\d+)(?:\.(\d+))?[eE]([+-]?\d{1,3})$/;

/**
 * `"100.50"`, EUR → 10050. Refuses a sign, more decimals than the currency has (`1.005` EUR), zero,
 * and anything above the contract's limit. Exponent notation (`1e3`) is accepted when it denotes an
 * exact amount in minor units, since JSON allows it for numbers.
 */
export function decimalToMinor(text: string, currency: string): DecimalResult {
  const digits = minorDigitsOf(currency);
  if (digits === null) return { ok: false, reason: `currency ${currency} is not an ISO 4217 code` };
  const trimmed = text.trim();
  if (trimmed.startsWith('-')) return { ok: false, reason: 'amount must be positive' };
  let whole: string;
  let fraction: string;
  const plain = DECIMAL.exec(trimmed);
  const scientific = plain ? null : EXPONENT.exec(trimmed);
  if (plain) {
    whole = plain[1] ?? '';
    fraction = plain[2] ?? '';
  } else if (scientific) {
    // Shift the decimal point by the exponent on the digit string itself.
    const mantissa = `${scientific[1] ?? ''}${scientific[2] ?? ''}`;
    const point = (scientific[1] ?? '').length + Number(scientific[3]);
    if (point > 40) return { ok: false, reason: `amount ${trimmed} is too large` };
    const padded = point <= 0 ? `${'0'.repeat(1 - point)}${mantissa}` : mantissa.padEnd(point, '0');
    const at = point <= 0 ? 1 : point;
    whole = padded.slice(0, at);
    fraction = padded.slice(at);
  } else {
    return { ok: false, reason: `amount ${JSON.stringify(text.slice(0, 40))} is not a decimal number` };
  }
  fraction = fraction.replace(/0+$/, '');
  if (fraction.length > digits)
    return { ok: false, reason: `amount ${trimmed} has more than ${digits} decimal${digits === 1 ? '' : 's'} for ${currency}` };
  const minor = BigInt(whole + fraction.padEnd(digits, '0'));
  if (minor <= 0n) return { ok: false, reason: 'amount must be positive' };
  if (minor > BigInt(MAX_AMOUNT_MINOR)) return { ok: false, reason: `amount ${trimmed} is more than ${MAX_AMOUNT_MINOR} minor units` };
  return { ok: true, amountMinor: Number(minor) };
}
