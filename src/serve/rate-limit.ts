import { isIPv6 } from 'node:net';

/**
 * Token buckets per caller: `ratePerS` requests a second on average, bursts up to `burst`. Pure and
 * clock-injected, so it is tested without waiting. Memory is bounded: past `keysMax` callers the
 * least recently seen bucket is dropped (it is full again by the time that caller returns, or nearly).
 */
export interface RateLimitOptions {
  readonly ratePerS: number;
  readonly burst: number;
  readonly keysMax: number;
}

export type RateDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterS: number };

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly options: RateLimitOptions,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** Spends one token of `key`'s bucket, or says when one will be there. */
  take(key: string): RateDecision {
    if (this.options.ratePerS <= 0) return { allowed: true };
    const now = this.nowMs();
    const bucket = this.buckets.get(key) ?? { tokens: this.options.burst, atMs: now };
    this.buckets.delete(key); // re-inserted last: Map order is recency order
    bucket.tokens = this.refilled(bucket, now);
    bucket.atMs = now;
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.options.keysMax) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterS: this.secondsUntil(1, bucket.tokens) };
  }

  /**
   * Whether `key`'s bucket holds `needed` tokens now, spending none (a caller that spends only when
   * something goes wrong, as the failed-token limit does). A key never seen has a full bucket, and is
   * not remembered.
   */
  peek(key: string, needed = 1): RateDecision {
    if (this.options.ratePerS <= 0) return { allowed: true };
    const bucket = this.buckets.get(key);
    const tokens = bucket ? this.refilled(bucket, this.nowMs()) : this.options.burst;
    return tokens >= needed ? { allowed: true } : { allowed: false, retryAfterS: this.secondsUntil(needed, tokens) };
  }

  private refilled(bucket: { tokens: number; atMs: number }, now: number): number {
    return Math.min(this.options.burst, bucket.tokens + ((now - bucket.atMs) * this.options.ratePerS) / 1000);
  }

  /** Whole seconds (at least 1) until a bucket holding `tokens` holds `needed`. */
  private secondsUntil(needed: number, tokens: number): number {
    return Math.max(1, Math.ceil((needed - tokens) / this.options.ratePerS));
  }
}

/** 16-bit groups of an IPv6 address that name its bucket: the first four, its /64. */
const IPV6_KEY_GROUPS = 4;

/**
 * The bucket key of a client address, for the limits counted per address (logins and registrations,
 * failed token checks). An IPv4 address is a bucket of its own. An IPv6 address counts by its /64:
 * one host is routinely given a whole /64 (SLAAC, privacy addresses, a prefix per customer) and may
 * send from any address in it, so a bucket per address would hand one client 2^64 of them. An
 * IPv4-mapped address (`::ffff:a.b.c.d`, how a dual-stack socket shows an IPv4 peer) is that IPv4
 * address. A zone id is kept (`fe80::/64%eth0`): the same link-local prefix on two interfaces is two
 * links. Anything that is not an IP address is its own key, unchanged.
 */
export function rateKeyOfAddress(address: string): string {
  // Only what Node takes for IPv6 is expanded: at most one `::`, maybe a dotted IPv4 tail and a zone id.
  if (!isIPv6(address)) return address;
  const zoneAt = address.indexOf('%');
  const zone = zoneAt < 0 ? '' : address.slice(zoneAt);
  const groups = ipv6Groups(zoneAt < 0 ? address : address.slice(0, zoneAt));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [high = 0, low = 0] = groups.slice(6);
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  return `${groups
    .slice(0, IPV6_KEY_GROUPS)
    .map((g) => g.toString(16))
    .join(':')}::/64${zone}`;
}

/** The eight 16-bit groups of a valid IPv6 address without a zone id: `::` expanded, a dotted IPv4 tail as two groups. */
function ipv6Groups(address: string): number[] {
  const parts = address.split('::');
  const groupsOf = (part: string | undefined): number[] =>
    !part
      ? []
      : part.split(':').flatMap((piece) => {
          if (!piece.includes('.')) return [parseInt(piece, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number);
          return [(a << 8) | b, (c << 8) | d];
        });
  const head = groupsOf(parts[0]);
  const tail = groupsOf(parts[1]);
  return [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}
