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
