import { isIP } from 'node:net';
import { minorUnitExponentOf } from '../domain/currency-exponents.js';
import { UsageError } from '../errors.js';

/**
 * Flag parsers. Each names the flag and the bad value in its error, so a wrong flag gets a usage
 * message rather than a stack trace.
 */

export function parseIntFlag(flag: string, value: string | undefined, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`${flag}: "${value}" is not an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag}: ${value} must be between ${min} and ${max}`);
  return n;
}

/** An amount of money in minor units, read from its digits as a bigint (never through a float), between `min` and `max`. */
export function parseMinorFlag(flag: string, value: string | undefined, fallback: bigint, min: bigint, max: bigint): bigint {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`${flag}: "${value}" is not a whole number of minor units`);
  const n = BigInt(value.trim());
  if (n < min || n > max) throw new UsageError(`${flag}: ${value} must be between ${min} and ${max} (minor units)`);
  return n;
}

export function parseFractionFlag(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
    throw new UsageError(`${flag}: "${value}" must be a fraction between 0 and 1`);
  return n;
}

export function parseNumberFlag(flag: string, value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min) throw new UsageError(`${flag}: "${value}" must be a number ≥ ${min}`);
  return n;
}

/** `min..max` of positive integers (money in minor units, for instance). */
export function parseRangeFlag(flag: string, value: string | undefined, fallback: readonly [number, number]): [number, number] {
  if (value === undefined) return [fallback[0], fallback[1]];
  const match = /^(\d+)\.\.(\d+)$/.exec(value.trim());
  if (!match) throw new UsageError(`${flag}: "${value}" must look like min..max, e.g. 100..250000`);
  const min = Number(match[1]);
  const max = Number(match[2]);
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 1 || max < min) {
    throw new UsageError(`${flag}: "${value}" needs 1 ≤ min ≤ max`);
  }
  return [min, max];
}

/** `a-b,c,d-e` → sorted unique positive integers (account ids). Bounded to keep memory sane. */
export function parseIdListFlag(flag: string, value: string, maxCount = 1_000_000): number[] {
  const ids = new Set<number>();
  for (const part of value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new UsageError(`${flag}: "${part}" is not an id or a range like 1-100`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (from < 1 || to < from) throw new UsageError(`${flag}: "${part}" must be positive and ascending`);
    if (to - from + ids.size >= maxCount) throw new UsageError(`${flag}: more than ${maxCount} ids`);
    for (let id = from; id <= to; id++) ids.add(id);
  }
  if (ids.size === 0) throw new UsageError(`${flag}: "${value}" lists no ids`);
  return [...ids].sort((a, b) => a - b);
}

/** `deposit=40,withdrawal=30,card_payment=30` → weights by key; keys must be from `allowed`. */
export function parseWeightsFlag<K extends string>(
  flag: string,
  value: string | undefined,
  allowed: readonly K[],
  fallback: Record<K, number>,
): Record<K, number> {
  if (value === undefined) return { ...fallback };
  const out = Object.fromEntries(allowed.map((k) => [k, 0])) as Record<K, number>;
  for (const part of value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [key, weight] = part.split('=');
    if (!key || !allowed.includes(key as K)) throw new UsageError(`${flag}: "${key}" is not one of ${allowed.join(', ')}`);
    const n = Number(weight);
    if (weight === undefined || !Number.isFinite(n) || n < 0)
      throw new UsageError(`${flag}: weight "${weight}" for ${key} must be a number ≥ 0`);
    out[key as K] = n;
  }
  if (Object.values<number>(out).every((w) => w === 0)) throw new UsageError(`${flag}: all weights are zero`);
  return out;
}

/** A currency code (any case), which must be an active ISO 4217 currency: its accounts must be able to take amounts. */
export function parseCurrencyFlag(flag: string, value: string | undefined, fallback: string): string {
  const currency = (value ?? fallback).toUpperCase();
  if (!/^[A-Z]{3}$/.test(currency)) throw new UsageError(`${flag}: "${value}" is not a 3-letter currency code`);
  if (minorUnitExponentOf(currency) === null)
    throw new UsageError(`${flag}: "${value}" is not an active ISO 4217 currency (e.g. EUR, USD, JPY)`);
  return currency;
}

/** A duration `250ms`, `1s`, `1.5s`, `2m` (or bare milliseconds) → whole milliseconds within min..max. */
export function parseDurationFlag(flag: string, value: string | undefined, fallbackMs: number, minMs: number, maxMs: number): number {
  if (value === undefined) return fallbackMs;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m) throw new UsageError(`${flag}: "${value}" is not a duration (e.g. 500ms, 1s, 2m)`);
  const unitMs = m[2] === 's' ? 1_000 : m[2] === 'm' ? 60_000 : 1;
  const ms = Math.round(Number(m[1]) * unitMs);
  if (ms < minMs || ms > maxMs) throw new UsageError(`${flag}: ${value} must be between ${minMs} ms and ${maxMs} ms`);
  return ms;
}

/** The names a proxy list may use for whole ranges, as Fastify's `trustProxy` (proxy-addr) reads them. */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'] as const;

/**
 * A comma-separated list of reverse proxies' addresses: IPs, CIDR ranges (`10.0.0.0/8`, `fd00::/8`) or
 * the names `loopback`, `linklocal`, `uniquelocal`. Checked here, so a typo is a usage message and not a
 * proxy trusted by accident or a server that fails to start.
 */
export function parseProxyListFlag(flag: string, value: string | undefined): string[] {
  if (value === undefined) return [];
  const entries = value.split(',').map((entry) => entry.trim());
  for (const entry of entries) {
    if ((PROXY_RANGE_NAMES as readonly string[]).includes(entry)) continue;
    const [address = '', prefix, ...rest] = entry.split('/');
    const family = isIP(address);
    const prefixMax = family === 6 ? 128 : 32;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= prefixMax);
    if (family === 0 || !prefixOk || rest.length > 0)
      throw new UsageError(
        `${flag}: "${entry}" is not an IP address, a CIDR range or one of ${PROXY_RANGE_NAMES.join(', ')} (e.g. --trust-proxy 10.0.0.5,loopback)`,
      );
  }
  return entries;
}
