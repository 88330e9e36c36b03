import { describe, expect, it } from 'vitest';
import { BENCH_FULL_MIX, BENCH_V1_MIX } from '../../src/bench/mixes.js';
import { parseBenchMix, secondHopsText, workerNodeOptionsFrom } from '../../src/commands/bench.js';
import { UsageError } from '../../src/errors.js';

describe('bench --mix', () => {
  it('full by default (transfers and card flows too), v1 (the headline figures’ mix), or gen’s syntax', () => {
    expect(parseBenchMix(undefined)).toEqual(BENCH_FULL_MIX);
    expect(parseBenchMix('v1')).toEqual(BENCH_V1_MIX);
    expect(parseBenchMix('v1')).toMatchObject({ deposit: 40, withdrawal: 30, card_payment: 30, transfer: 0, card_authorization: 0 });
    expect(parseBenchMix('full')).toEqual(BENCH_FULL_MIX);
    expect(BENCH_FULL_MIX.transfer).toBeGreaterThan(0);
    expect(BENCH_FULL_MIX.card_authorization).toBeGreaterThan(0);
    // Explicit weights: the types left out weigh 0.
    expect(parseBenchMix('deposit=1,transfer=3')).toMatchObject({ deposit: 1, transfer: 3, withdrawal: 0, card_payment: 0 });
  });

  it('refuses an unknown type or all-zero weights, naming the flag', () => {
    expect(() => parseBenchMix('deposit=1,bogus=2')).toThrow(UsageError);
    expect(() => parseBenchMix('deposit=0')).toThrow(/--mix/);
  });
});

describe('per-second hop text', () => {
  it('p50/p99 of the hops that had values, in flow order', () => {
    expect(
      secondHopsText({
        end_to_end: { count: 9, p50: 30, p99: 61 },
        queue_wait: { count: 9, p50: 3, p99: 9 },
        relay: { count: 9, p50: 40, p99: 90 },
        ack: { count: 9, p50: 1, p99: 2 },
      }),
    ).toBe('queue 3/9 relay 40/90 e2e 30/61 ms');
    expect(secondHopsText({})).toBe('');
    expect(secondHopsText(undefined)).toBe('');
  });
});

describe('bench --worker-node-option', () => {
  it('takes Node.js flags as given, in order (bench puts them after the worker heap cap, so a later one wins)', () => {
    expect(workerNodeOptionsFrom(undefined)).toEqual([]);
    expect(workerNodeOptionsFrom(['--max-old-space-size=4096', '--trace-gc'])).toEqual(['--max-old-space-size=4096', '--trace-gc']);
  });

  it('refuses what is not a flag, so nothing else reaches the worker command line', () => {
    expect(() => workerNodeOptionsFrom(['max-old-space-size=64'])).toThrow(
      /--worker-node-option: "max-old-space-size=64" is not a Node.js flag/,
    );
    expect(() => workerNodeOptionsFrom(['--cpu-prof', 'worker'])).toThrow(UsageError);
    expect(() => workerNodeOptionsFrom(['--eval=x y'])).toThrow(UsageError);
  });
});
