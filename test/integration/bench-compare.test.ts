import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchComparison } from '../../src/bench/compare.js';
import { runTxsim } from '../helpers/txsim.js';

/**
 * `txsim bench compare` as a user's CI runs it: the built CLI on saved bench reports (the fixtures,
 * and copies of them with a planted change), judged by exit code and output. It reads files only,
 * so it needs no services.
 */
const FIXTURE = new URL('../fixtures/bench-batched-3w.json', import.meta.url).pathname;
const PER_MESSAGE = new URL('../fixtures/bench-per-message-3w.json', import.meta.url).pathname;
const BASELINE = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {
  endToEndRatePerS: number;
  lost: number;
  options: Record<string, unknown>;
  endToEndLatencyMs: Record<string, number>;
};

describe('txsim bench compare', () => {
  const dir = mkdtempSync(join(tmpdir(), 'txsim-bench-compare-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes a copy of the fixture with `edit` applied, returns its path. */
  const planted = (name: string, edit: (r: typeof BASELINE) => void): string => {
    const copy = structuredClone(BASELINE);
    edit(copy);
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(copy));
    return path;
  };
  const compare = (args: string[]) => runTxsim(['bench', 'compare', ...args], process.env, 30_000);

  it('identical reports: exit 0, every figure the same', async () => {
    const r = await compare([FIXTURE, FIXTURE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^end-to-end throughput\s+tx\/s\s+3567\s+3567\s+0\s+0\.0%\s+same$/m);
    expect(r.stdout).toMatch(/^created → committed latency p99\s+ms\s+142\s+142\s+0\s+0\.0%\s+same$/m);
    expect(r.stdout).not.toMatch(/\s(worse|better)( ✗)?$/m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('ok: nothing worse past 5%, nothing lost or duplicated');
  });

  it('a planted regression (throughput −20 %): exit 8, the figure named in the table and on stderr', async () => {
    const after = planted('slower.json', (r) => {
      r.endToEndRatePerS = Math.round(r.endToEndRatePerS * 0.8);
    });
    const r = await compare([FIXTURE, after]);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stdout).toMatch(/^end-to-end throughput\s+tx\/s\s+3567\s+2854\s+-713\s+-20\.0%\s+worse ✗$/m);
    expect(r.stdout).toContain('  ✗ end-to-end throughput 3567 → 2854 tx/s (-20.0%, worse past 5%)');
    expect(r.stderr).toMatch(/^txsim: bench compare: \d+ figures failed \(threshold 5%\): end-to-end throughput, /m);
    // A threshold wider than the drop lets it through.
    const lenient = await compare([FIXTURE, after, '--threshold', '0.25']);
    expect(lenient.code, lenient.stderr).toBe(0);
  });

  it('an improvement: exit 0, marked better', async () => {
    const after = planted('faster.json', (r) => {
      r.endToEndRatePerS = Math.round(r.endToEndRatePerS * 1.2);
      r.endToEndLatencyMs.p99 = 100;
    });
    const r = await compare([FIXTURE, after]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^end-to-end throughput\s+tx\/s\s+3567\s+4280\s+\+713\s+\+20\.0%\s+better$/m);
    expect(r.stdout).toMatch(/^created → committed latency p99\s+ms\s+142\s+100\s+-42\s+-29\.6%\s+better$/m);
  });

  it('a lost transaction in after fails whatever the threshold', async () => {
    const after = planted('lossy.json', (r) => {
      r.lost = 1;
    });
    const r = await compare([FIXTURE, after, '--threshold', '100%']);
    expect(r.code).toBe(8);
    expect(r.stdout).toContain('1 lost in the after report (must be 0)');
    expect(r.stderr).toMatch(/1 figure failed .*: lost$/m);
  });

  it('reports of different settings: a warning naming what differs, and still compared', async () => {
    const r = await compare([FIXTURE, PER_MESSAGE]);
    expect(r.stderr).toContain('txsim: warning: the reports come from different settings (count 72793 → 18879); compared anyway');
    expect(r.code).toBe(8);
    expect(r.stdout).toMatch(/^end-to-end throughput\s+tx\/s\s+3567\s+771\s/m);
  });

  it('--json: the comparison as one document, the failed figures by key', async () => {
    const after = planted('slower-json.json', (r) => {
      r.endToEndRatePerS = Math.round(r.endToEndRatePerS * 0.8);
    });
    const r = await compare([FIXTURE, after, '--json']);
    expect(r.code).toBe(8);
    const doc = JSON.parse(r.stdout) as BenchComparison;
    expect(doc.ok).toBe(false);
    expect(doc.failures).toContain('endToEndRatePerS');
    expect(doc.figures.find((f) => f.key === 'endToEndRatePerS')).toMatchObject({ before: 3567, after: 2854, changeRatio: -0.1999 });
  });

  it('figures missing in one report are shown as missing, not failed', async () => {
    const older = planted('older.json', (r) => {
      delete (r as Partial<typeof r> & Record<string, unknown>).cpuPctAvg;
    });
    const r = await compare([older, FIXTURE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^CPU broker\s+% of a core\s+missing\s+78\s+missing in before$/m);
  });

  it('bad threshold syntax, a missing file, or a file that is not a report: usage error (exit 2)', async () => {
    for (const threshold of ['5', 'five', '-5%']) {
      const r = await compare([FIXTURE, FIXTURE, '--threshold', threshold]);
      expect(r.code, threshold).toBe(2);
      expect(r.stderr).toContain(`--threshold: "${threshold}" must be a percentage like 5% or a fraction`);
    }
    const missing = await compare([FIXTURE, join(dir, 'nope.json')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.json: not a readable JSON file/);
    const notReport = join(dir, 'not-a-report.json');
    writeFileSync(notReport, '[1, 2, 3]');
    const wrong = await compare([notReport, FIXTURE]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/not-a-report\.json: not a txsim bench report/);
    const one = await compare([FIXTURE]);
    expect(one.code).toBe(2);
  });
});
