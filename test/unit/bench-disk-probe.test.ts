import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskSyncProbe } from '../../src/bench/disk-probe.js';
import { parseDiskProbeFlag } from '../../src/commands/bench.js';
import { UsageError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'txsim-disk-probe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the disk probe (a real file, real fdatasync)', () => {
  it('flushes every interval while it runs, reports ordered percentiles, and removes its file', async () => {
    const probe = await DiskSyncProbe.start(dir, 20);
    expect(readdirSync(dir)).toEqual([`.txsim-disk-probe-${process.pid}`]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    const intervalMax = probe.takeIntervalMaxMs();
    expect(intervalMax).toBeGreaterThan(0);
    const figures = await probe.stop();
    // 400 ms at one probe every 20 ms, one at a time: some, and never more than the ticks.
    expect(figures.samples).toBeGreaterThanOrEqual(3);
    expect(figures.samples).toBeLessThanOrEqual(21);
    expect(figures).toMatchObject({ dir, intervalMs: 20 });
    expect(figures.p50Ms).toBeGreaterThan(0);
    expect(figures.p50Ms).toBeLessThanOrEqual(figures.p99Ms);
    expect(figures.p99Ms).toBeLessThanOrEqual(figures.maxMs);
    expect(figures.maxMs).toBeGreaterThanOrEqual(Math.floor(intervalMax! * 100) / 100);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a directory it cannot write in fails at the start, naming the path', async () => {
    await expect(DiskSyncProbe.start(join(dir, 'missing'))).rejects.toThrow(/cannot create .*missing/);
  });
});

describe('bench --disk-probe', () => {
  it('a writable directory (default: the current one), or off', () => {
    expect(parseDiskProbeFlag(undefined)).toBe('.');
    expect(parseDiskProbeFlag(dir)).toBe(dir);
    expect(parseDiskProbeFlag('off')).toBeNull();
  });

  it('a missing directory or a file is a usage error naming the flag', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    try {
      expect(() => parseDiskProbeFlag(join(dir, 'missing'))).toThrow(UsageError);
      expect(() => parseDiskProbeFlag(join(dir, 'missing'))).toThrow(/--disk-probe: .*ENOENT/);
      expect(() => parseDiskProbeFlag(file)).toThrow(/--disk-probe: .*not a directory/);
    } finally {
      rmSync(file);
    }
  });
});
