import { minorUnitExponentOf } from './currency-exponents.js';

/**
 * Money is integer minor units. In memory a balance is a `bigint` (sums can outgrow 2^53); an
 * amount from a message is a `number` the schema bounds to ≤ 10^12, converted here and nowhere else.
 */

/** Converts a bounded message amount to bigint, refusing anything that is not a safe positive integer. */
export function toMinor(amountMinor: number): bigint {
  if (!Number.isSafeInteger(amountMinor)) throw new RangeError(`amount ${amountMinor} is not a safe integer of minor units`);
  return BigInt(amountMinor);
}

/** Parses a BIGINT as it arrives from mysql2 (`bigNumberStrings`) or from SUM() (a decimal string). */
export function parseMinor(value: string | number | bigint | null): bigint {
  if (value === null) return 0n;
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return toMinor(value);
  // SUM() over BIGINT is DECIMAL and may print as "123.000" on some servers: only whole units are money here.
  const match = /^(-?\d+)(?:\.0+)?$/.exec(value.trim());
  if (!match?.[1]) throw new RangeError(`"${value}" is not a whole number of minor units`);
  return BigInt(match[1]);
}

/**
 * Formats minor units for people with the currency's ISO 4217 decimals: `123456, 'EUR'` → `1,234.56 EUR`,
 * `500, 'JPY'` → `500 JPY`, `1234, 'KWD'` → `1.234 KWD`; 2 decimals without a currency or for an unknown one
 * (display only).
 */
export function formatMinor(amountMinor: bigint | number, currency?: string): string {
  return `${formatAmount(amountMinor, currency)}${currency ? ` ${currency}` : ''}`;
}

/** The number alone, for a column beside the currency's own: `500, 'JPY'` → `500`, `1234, 'KWD'` → `1.234`. */
export function formatAmount(amountMinor: bigint | number, currency?: string): string {
  const digits = currency ? (minorUnitExponentOf(currency) ?? 2) : 2;
  const scale = 10n ** BigInt(digits);
  const value = BigInt(amountMinor);
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const units = (abs / scale).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const fraction = digits === 0 ? '' : `.${(abs % scale).toString().padStart(digits, '0')}`;
  return `${negative ? '-' : ''}${units}${fraction}`;
}
