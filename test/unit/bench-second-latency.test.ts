import { describe, expect, it } from 'vitest';
import { withSecondLatencies, type SecondSample } from '../../src/bench/bench.js';

const sample = (t: number): SecondSample => ({
  t,
  sent: 0,
  confirmed: 0,
  applied: 0,
  rejected: 0,
  workerCpuPct: 0,
  brokerCpuPct: 0,
  databaseCpuPct: 0,
  genCpuPct: 0,
  workerRssMb: 0,
});

describe('bench per-second latency', () => {
  it('puts each outcome in the interval that ends at or after it, with that interval’s p50 and p99', () => {
    const seconds = [sample(1), sample(2), sample(3.1)];
    const timeline = [
      // interval (0, 1 s]: 10 ms and 30 ms
      { atUs: 200_000, latencyUs: 10_000 },
      { atUs: 1_000_000, latencyUs: 30_000 },
      // interval (1, 2 s]: one of 100 ms
      { atUs: 1_500_000, latencyUs: 100_000 },
      // interval (2, 3.1 s]: none; an outcome after the last sample counts in the last interval
      { atUs: 9_000_000, latencyUs: 5_000 },
    ];
    const out = withSecondLatencies(seconds, timeline);
    expect(out[0]).toMatchObject({ endToEndP50Ms: 10, endToEndP99Ms: 30 });
    expect(out[1]).toMatchObject({ endToEndP50Ms: 100, endToEndP99Ms: 100 });
    expect(out[2]).toMatchObject({ endToEndP50Ms: 5, endToEndP99Ms: 5 });
  });

  it('leaves an interval with no outcome without latency fields', () => {
    const out = withSecondLatencies([sample(1), sample(2)], [{ atUs: 1_500_000, latencyUs: 7_000 }]);
    expect(out[0]).not.toHaveProperty('endToEndP50Ms');
    expect(out[1]!.endToEndP99Ms).toBe(7);
  });
});
