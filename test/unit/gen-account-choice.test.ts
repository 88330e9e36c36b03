import { describe, expect, it } from 'vitest';
import { createAccountChooser, describeAccountsDist, parseAccountsDist, zipfProbabilities } from '../../src/gen/account-choice.js';
import { mulberry32 } from '../../src/gen/random.js';
import { UsageError } from '../../src/errors.js';

/** Per-index counts of `draws` choices among `n` accounts with a fixed seed. */
function countDraws(spec: string, n: number, draws: number, seed = 42): number[] {
  const choose = createAccountChooser(parseAccountsDist(spec), n);
  const random = mulberry32(seed);
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < draws; i++) counts[choose(random)]!++;
  return counts;
}

/** Pearson's chi-square statistic of observed counts against expected probabilities. */
function chiSquare(observed: number[], probabilities: ArrayLike<number>, draws: number): number {
  return observed.reduce((sum, o, i) => {
    const e = probabilities[i]! * draws;
    return sum + ((o - e) * (o - e)) / e;
  }, 0);
}

describe('account choice: Zipf', () => {
  it('P(rank k) ∝ 1/k^s and sums to 1', () => {
    const p = zipfProbabilities(4, 1);
    const h = 1 + 1 / 2 + 1 / 3 + 1 / 4;
    expect([...p].map((x) => x * h)).toEqual([1, 1 / 2, 1 / 3, 1 / 4].map((x) => expect.closeTo(x, 12) as number));
    expect(zipfProbabilities(1000, 1.3).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  // 100 accounts, s = 1.1, 200,000 draws. Critical chi-square for 99 degrees of freedom at p = 0.001 is 148.2:
  // a correct sampler stays below it for all but one seed in a thousand (this seed is fixed, so the test is
  // deterministic); a sampler off by even one rank, or with s = 1.0, is far above it.
  it('per-account counts follow the distribution: chi-square below the p = 0.001 critical value', () => {
    const n = 100;
    const draws = 200_000;
    const counts = countDraws('zipf:1.1', n, draws);
    const p = zipfProbabilities(n, 1.1);
    expect(chiSquare(counts, p, draws)).toBeLessThan(148.2);
    // And per rank: the ten busiest ranks (expected ≥ 2,400 draws each) within 6 % of their expectation.
    for (let k = 0; k < 10; k++) expect(Math.abs(counts[k]! - p[k]! * draws) / (p[k]! * draws)).toBeLessThan(0.06);
    // The test can fail: the same counts against another exponent are far off.
    expect(chiSquare(counts, zipfProbabilities(n, 1.0), draws)).toBeGreaterThan(1000);
  });

  it('a large account set: ranks far down the tail are still drawn, rank 1 most', () => {
    const counts = countDraws('zipf:0.8', 100_000, 300_000, 7);
    expect(counts[0]).toBe(Math.max(...counts));
    expect(counts.slice(50_000).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });

  it('is seeded: the same seed gives the same choices', () => {
    expect(countDraws('zipf:1.2', 50, 5000, 3)).toEqual(countDraws('zipf:1.2', 50, 5000, 3));
    expect(countDraws('zipf:1.2', 50, 5000, 3)).not.toEqual(countDraws('zipf:1.2', 50, 5000, 4));
  });
});

describe('account choice: uniform and hot', () => {
  it('uniform spreads evenly (chi-square for 49 degrees of freedom below 85.4, p = 0.001)', () => {
    const counts = countDraws('uniform', 50, 100_000);
    expect(chiSquare(counts, new Array<number>(50).fill(1 / 50), 100_000)).toBeLessThan(85.4);
  });

  it('hot:0.5/3 puts half the traffic on the first three, plus their uniform share of the rest', () => {
    const counts = countDraws('hot:0.5/3', 100, 100_000);
    const hot = counts.slice(0, 3).reduce((a, b) => a + b, 0) / 100_000;
    expect(hot).toBeCloseTo(0.5 + 0.5 * 0.03, 2);
  });

  it('every chooser draws exactly two numbers, so the rest of a message is the same under every distribution', () => {
    for (const spec of ['uniform', 'zipf:1', 'hot:0.9/2']) {
      let draws = 0;
      const choose = createAccountChooser(parseAccountsDist(spec), 10);
      choose(() => (draws++, 0.5));
      expect(draws, spec).toBe(2);
    }
  });
});

describe('--accounts-dist syntax', () => {
  it('parses and prints each kind', () => {
    for (const spec of ['uniform', 'zipf:1.1', 'hot:0.5/3']) expect(describeAccountsDist(parseAccountsDist(spec))).toBe(spec);
  });

  it.each([
    ['zipf', /"zipf" is not uniform, zipf:<exponent> or hot:<share>\/<n>/],
    ['zipf:', /exponent ""/],
    ['zipf:0', /exponent "0"/],
    ['zipf:abc', /exponent "abc"/],
    ['hot:0.5', /"0.5" must look like <share>\/<n>/],
    ['hot:1.5/3', /share "1.5"/],
    ['hot:0.5/0', /hot set size "0"/],
    ['normal', /"normal" is not uniform/],
  ])('%j is a usage error naming the bad part', (spec, message) => {
    expect(() => parseAccountsDist(spec)).toThrow(UsageError);
    expect(() => parseAccountsDist(spec)).toThrow(message);
  });
});
