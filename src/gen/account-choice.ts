import { UsageError } from '../errors.js';

/**
 * Which account each generated transaction goes to (`--accounts-dist`). Pure: the chooser turns
 * the generator's seeded random numbers into an index into the run's accounts (sorted by id, so
 * rank 1 of a Zipf distribution is the lowest id).
 */
export type AccountsDist =
  | { readonly kind: 'uniform' }
  /** P(rank k) ∝ 1 / k^exponent, as in TigerBeetle's and YCSB's skewed workloads. */
  | { readonly kind: 'zipf'; readonly exponent: number }
  /** `share` of the traffic on the first `setSize` accounts, the rest uniform over all (the old `--hot-accounts`). */
  | { readonly kind: 'hot'; readonly share: number; readonly setSize: number };

/** Largest Zipf exponent: beyond it nearly every draw is rank 1 anyway. */
const ZIPF_EXPONENT_MAX = 10;
/** Largest hot set (the same bound as `--hot-set`). */
const HOT_SET_MAX = 1_000_000;

/** `uniform`, `zipf:1.1`, `hot:0.5/3` → a distribution; anything else is a UsageError naming the part. */
export function parseAccountsDist(text: string): AccountsDist {
  const flag = '--accounts-dist';
  const spec = text.trim();
  if (spec === 'uniform') return { kind: 'uniform' };
  const zipf = /^zipf:(.*)$/.exec(spec);
  if (zipf) {
    const exponent = Number(zipf[1]);
    if (zipf[1]!.trim() === '' || !Number.isFinite(exponent) || exponent <= 0 || exponent > ZIPF_EXPONENT_MAX) {
      throw new UsageError(`${flag}: exponent "${zipf[1]}" must be a number > 0 and ≤ ${ZIPF_EXPONENT_MAX}, e.g. zipf:1.1`);
    }
    return { kind: 'zipf', exponent };
  }
  const hot = /^hot:(.*)$/.exec(spec);
  if (hot) {
    const m = /^([^/]*)\/(.*)$/.exec(hot[1]!);
    if (!m) throw new UsageError(`${flag}: "${hot[1]}" must look like <share>/<n>, e.g. hot:0.5/3`);
    const share = Number(m[1]);
    if (m[1]!.trim() === '' || !Number.isFinite(share) || share < 0 || share > 1) {
      throw new UsageError(`${flag}: share "${m[1]}" must be a fraction between 0 and 1`);
    }
    const setSize = Number(m[2]);
    if (!/^\d+$/.test(m[2]!.trim()) || setSize < 1 || setSize > HOT_SET_MAX) {
      throw new UsageError(`${flag}: hot set size "${m[2]}" must be an integer between 1 and ${HOT_SET_MAX}`);
    }
    return { kind: 'hot', share, setSize };
  }
  throw new UsageError(`${flag}: "${spec}" is not uniform, zipf:<exponent> or hot:<share>/<n>`);
}

/** The distribution as `--accounts-dist` spells it (stored with the run, compared on a re-used seed). */
export function describeAccountsDist(dist: AccountsDist): string {
  switch (dist.kind) {
    case 'uniform':
      return 'uniform';
    case 'zipf':
      return `zipf:${dist.exponent}`;
    case 'hot':
      return `hot:${dist.share}/${dist.setSize}`;
  }
}

/**
 * P(rank k) for k = 1..n (index k − 1) of a Zipf distribution with this exponent: 1/k^s over the
 * generalized harmonic number H(n, s).
 */
export function zipfProbabilities(n: number, exponent: number): Float64Array {
  const p = new Float64Array(n);
  let total = 0;
  for (let k = 1; k <= n; k++) total += p[k - 1] = 1 / Math.pow(k, exponent);
  for (let i = 0; i < n; i++) p[i]! /= total;
  return p;
}

/**
 * An account chooser for `accountCount` accounts: given the generator's random source, the index
 * of the account. It always draws exactly two numbers, whatever the distribution, so the rest of a
 * message (amount, merchant, poison) comes from the same numbers under every distribution, and
 * `uniform` and `hot:` streams are the ones gen produced before `--accounts-dist` existed.
 *
 * Zipf draws by inversion: the cumulative distribution is computed once (n doubles) and each draw is
 * a binary search, O(log n) — exact, unlike the approximations that skip the table.
 */
export function createAccountChooser(dist: AccountsDist, accountCount: number): (random: () => number) => number {
  if (!(Number.isSafeInteger(accountCount) && accountCount > 0)) throw new RangeError(`no accounts to choose from (${accountCount})`);
  switch (dist.kind) {
    case 'uniform':
      return (random) => {
        random(); // the hot roll of a `hot:` distribution, drawn to keep the streams aligned
        return Math.floor(random() * accountCount);
      };
    case 'hot': {
      const hotCount = Math.max(1, Math.min(dist.setSize, accountCount));
      return (random) => {
        const pool = random() < dist.share ? hotCount : accountCount;
        return Math.floor(random() * pool);
      };
    }
    case 'zipf': {
      const cdf = zipfProbabilities(accountCount, dist.exponent);
      for (let i = 1; i < accountCount; i++) cdf[i]! += cdf[i - 1]!;
      cdf[accountCount - 1] = 1; // no float dust left above the last rank
      return (random) => {
        const u = random();
        random(); // the second draw every chooser makes
        // First rank whose cumulative probability exceeds u.
        let lo = 0;
        let hi = accountCount - 1;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (cdf[mid]! > u) hi = mid;
          else lo = mid + 1;
        }
        return lo;
      };
    }
  }
}
