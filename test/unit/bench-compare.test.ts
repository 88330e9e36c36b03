import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  benchReportProblem,
  compareBenchReports,
  formatThreshold,
  judge,
  parseThreshold,
  renderComparison,
  settingDifferences,
  type BenchJsonValue,
  type FigureChange,
  type FigureSpec,
} from '../../src/bench/compare.js';

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')) as Record<string, unknown>;
const BATCHED = fixture('bench-batched-3w.json');

/** A bench report as JSON a test edits freely, fields bench does not write included. */
interface EditableReport {
  [key: string]: unknown;
  options: Record<string, unknown>;
  endToEndRatePerS: number;
  confirmLatencyMs?: Record<string, number>;
  endToEndLatencyMs: Record<string, number>;
  cpuPctAvg?: Record<string, number>;
  workerRssMbMax?: number;
  seconds: { t: number; sent: number }[];
}

/** A deep copy of the batched fixture with `edit` applied. */
function variant(edit: (r: EditableReport) => void): Record<string, unknown> {
  const copy = structuredClone(BATCHED) as EditableReport;
  edit(copy);
  return copy;
}

const compare = (before: BenchJsonValue, after: BenchJsonValue, thresholdRatio = 0.05) =>
  compareBenchReports({ name: 'before.json', report: before }, { name: 'after.json', report: after }, thresholdRatio);
const figureOf = (figures: readonly FigureChange[], key: string) => {
  const f = figures.find((x) => x.key === key);
  expect(f, key).toBeDefined();
  return f!;
};

const rate: Pick<FigureSpec, 'key' | 'label' | 'unit' | 'better' | 'rule' | 'resolution'> = {
  key: 'r',
  label: 'rate',
  unit: 'tx/s',
  better: 'higher',
  rule: 'threshold',
  resolution: 1,
};
const latency = { ...rate, key: 'l', label: 'latency', unit: 'ms', better: 'lower' as const };

describe('parseThreshold', () => {
  it('takes a percentage or a fraction', () => {
    expect(parseThreshold('5%')).toBe(0.05);
    expect(parseThreshold(' 12.5 % ')).toBe(0.125);
    expect(parseThreshold('0%')).toBe(0);
    expect(parseThreshold('0.05')).toBe(0.05);
    expect(parseThreshold('.1')).toBe(0.1);
    expect(parseThreshold('1')).toBe(1);
    expect(parseThreshold('0')).toBe(0);
    expect(parseThreshold('150%')).toBe(1.5);
  });

  it('refuses bad syntax, a negative, and a bare number above 1 (5 could mean 5 % or 500 %)', () => {
    for (const bad of ['', '%', 'five', '5', '1.5', '-5%', '-0.05', '5%%', '0.05%x', '1e-2', '5 percent', '2000%']) {
      expect(parseThreshold(bad), bad).toBeNull();
    }
  });

  it('prints back as a percentage', () => {
    expect(formatThreshold(0.05)).toBe('5%');
    expect(formatThreshold(0.125)).toBe('12.5%');
  });
});

describe('judge: direction, threshold, resolution', () => {
  it('higher is better: a drop past the threshold is worse and fails, a rise is better', () => {
    const drop = judge(rate, 1000, 800, 0.05);
    expect(drop).toMatchObject({ change: -200, changeRatio: -0.2, verdict: 'worse', failed: true });
    expect(drop.failure).toBe('rate 1000 → 800 tx/s (-20.0%, worse past 5%)');
    expect(judge(rate, 1000, 1200, 0.05)).toMatchObject({ change: 200, changeRatio: 0.2, verdict: 'better', failed: false, failure: null });
  });

  it('lower is better: a rise past the threshold is worse, a fall is better', () => {
    expect(judge(latency, 100, 130, 0.05)).toMatchObject({ verdict: 'worse', failed: true });
    expect(judge(latency, 100, 70, 0.05)).toMatchObject({ verdict: 'better', failed: false });
  });

  it('a change within the threshold is "same" either way; just past it is not', () => {
    expect(judge(rate, 1000, 950, 0.05)).toMatchObject({ changeRatio: -0.05, verdict: 'same', failed: false });
    expect(judge(rate, 1000, 949, 0.05)).toMatchObject({ verdict: 'worse', failed: true });
    expect(judge(rate, 1000, 1050, 0.05)).toMatchObject({ verdict: 'same' });
    expect(judge(rate, 1000, 949, 0.1)).toMatchObject({ verdict: 'same', failed: false });
  });

  it('threshold 0: any change beyond one step of rounding counts', () => {
    expect(judge(rate, 1000, 998, 0)).toMatchObject({ verdict: 'worse', failed: true });
    expect(judge(rate, 1000, 1000, 0)).toMatchObject({ verdict: 'same', failed: false });
  });

  it('one step of the report’s rounding is "same" even when it is a large ratio (p50 4 → 5 ms)', () => {
    expect(judge(latency, 4, 5, 0.05)).toMatchObject({ changeRatio: 0.25, verdict: 'same', failed: false });
    expect(judge(latency, 4, 6, 0.05)).toMatchObject({ changeRatio: 0.5, verdict: 'worse', failed: true });
  });

  it('from 0: no ratio, judged by direction', () => {
    const f = judge(latency, 0, 10, 0.05);
    expect(f).toMatchObject({ change: 10, changeRatio: null, verdict: 'worse', failed: true });
    expect(f.failure).toContain('from 0');
    expect(judge(latency, 0, 0, 0.05)).toMatchObject({ change: 0, changeRatio: 0, verdict: 'same' });
  });

  it('missing on either side: shown, not compared, never a failure', () => {
    for (const [before, after] of [
      [null, 800],
      [1000, null],
      [null, null],
    ] as const) {
      expect(judge(rate, before, after, 0.05)).toMatchObject({
        before,
        after,
        change: null,
        changeRatio: null,
        verdict: 'missing',
        failed: false,
      });
    }
  });

  it('lost / duplicated: any count above zero in after fails, whatever before was and whatever the threshold', () => {
    const lost = { ...latency, key: 'lost', label: 'lost', unit: 'tx', rule: 'zero' as const, resolution: 0 };
    expect(judge(lost, 0, 0, 0.05)).toMatchObject({ verdict: 'same', failed: false });
    expect(judge(lost, 0, 1, 10)).toMatchObject({ verdict: 'worse', failed: true, failure: '1 lost in the after report (must be 0)' });
    // Fewer than before is better, and still a failure: a run that loses anything is not OK.
    expect(judge(lost, 5, 2, 0.05)).toMatchObject({ verdict: 'better', failed: true });
    expect(judge(lost, 5, 0, 0.05)).toMatchObject({ verdict: 'better', failed: false });
  });

  it('drained / verify: false in after fails', () => {
    const drained = { ...rate, key: 'drained', label: 'drained', unit: 'yes/no', rule: 'true' as const, resolution: 0 };
    expect(judge(drained, 1, 0, 0.05)).toMatchObject({ verdict: 'worse', failed: true, failure: 'drained: no in the after report' });
    expect(judge(drained, 0, 0, 0.05)).toMatchObject({ verdict: 'same', failed: true });
    expect(judge(drained, 0, 1, 0.05)).toMatchObject({ verdict: 'better', failed: false });
  });

  it('lost / duplicated / drained / verify: decided from after alone — a before without them still fails a bad after', () => {
    const lost = { ...latency, key: 'lost', label: 'lost', unit: 'tx', rule: 'zero' as const, resolution: 0 };
    const drained = { ...rate, key: 'drained', label: 'drained', unit: 'yes/no', rule: 'true' as const, resolution: 0 };
    // An older or hand-made baseline lacks the figure: no comparison (missing), but the after value still decides.
    expect(judge(lost, null, 3, 10)).toMatchObject({
      verdict: 'missing',
      change: null,
      failed: true,
      failure: '3 lost in the after report (must be 0)',
    });
    expect(judge(drained, null, 0, 10)).toMatchObject({ verdict: 'missing', failed: true, failure: 'drained: no in the after report' });
    expect(judge(lost, null, 0, 0.05)).toMatchObject({ verdict: 'missing', failed: false, failure: null });
    expect(judge(drained, null, 1, 0.05)).toMatchObject({ verdict: 'missing', failed: false, failure: null });
  });

  it('lost / duplicated / drained / verify missing in after: a failure (the after run has not shown it is clean)', () => {
    const lost = { ...latency, key: 'lost', label: 'lost', unit: 'tx', rule: 'zero' as const, resolution: 0 };
    const verify = { ...rate, key: 'verifyOk', label: 'verify', unit: 'yes/no', rule: 'true' as const, resolution: 0 };
    expect(judge(verify, 1, null, 0.05)).toMatchObject({
      verdict: 'missing',
      failed: true,
      failure: 'verify: not in the after report (it must show yes)',
    });
    expect(judge(verify, null, null, 0.05)).toMatchObject({ verdict: 'missing', failed: true });
    expect(judge(lost, 0, null, 0.05)).toMatchObject({
      verdict: 'missing',
      failed: true,
      failure: 'lost: not in the after report (it must show 0)',
    });
  });
});

describe('compareBenchReports on bench reports', () => {
  it('identical reports: every figure same, ok, no warning', () => {
    const c = compare(BATCHED, structuredClone(BATCHED));
    expect(c.ok).toBe(true);
    expect(c.failures).toEqual([]);
    expect(c.warnings).toEqual([]);
    expect(c.settingsDiffer).toEqual([]);
    expect(c.figures.filter((f) => f.verdict !== 'same')).toEqual([]);
    expect(c.before).toEqual({ name: 'before.json', runId: 'fixture-batched-3w' });
  });

  it('compares every headline figure the report has, each with its direction', () => {
    const c = compare(BATCHED, BATCHED);
    const byKey = Object.fromEntries(c.figures.map((f) => [f.key, f]));
    const expected: Record<string, [number, 'higher' | 'lower']> = {
      endToEndRatePerS: [3567, 'higher'],
      publishRatePerS: [3640, 'higher'],
      'confirmLatencyMs.p50': [4, 'lower'],
      'confirmLatencyMs.p99': [21, 'lower'],
      'confirmLatencyMs.max': [95, 'lower'],
      'endToEndLatencyMs.p50': [27, 'lower'],
      'endToEndLatencyMs.p99': [142, 'lower'],
      'endToEndLatencyMs.max': [512, 'lower'],
      'cpuPctAvg.workers': [180, 'lower'],
      'cpuPctAvg.broker': [78, 'lower'],
      'cpuPctAvg.database': [70, 'lower'],
      'cpuPctAvg.gen': [30, 'lower'],
      workerRssMbMax: [118, 'lower'],
      workerRssMbLast: [114, 'lower'],
      lost: [0, 'lower'],
      duplicated: [0, 'lower'],
      drained: [1, 'higher'],
      verifyOk: [1, 'higher'],
      // Derived: (180 + 78 + 70 + 30) % × 10,000 / 3,567 tx/s; 180 × 10,000 / 3,567.
      cpuUsPerTx: [1003.6, 'lower'],
      workerCpuUsPerTx: [504.6, 'lower'],
      // Median of the 19 busy seconds' applied + rejected; the last send and the last outcome are both at t = 19.
      'seconds.outcomesPerSMedian': [4109, 'higher'],
      drainS: [0, 'lower'],
    };
    for (const [key, [value, better]] of Object.entries(expected)) {
      expect(byKey[key], key).toMatchObject({ before: value, after: value, better });
    }
    expect(c.figures.map((f) => f.key).sort()).toEqual(Object.keys(expected).sort());
  });

  it('a planted regression: throughput −20 % fails naming the figure; the rest stays same', () => {
    const after = variant((r) => {
      r.endToEndRatePerS = Math.round(r.endToEndRatePerS * 0.8);
    });
    const c = compare(BATCHED, after);
    expect(c.ok).toBe(false);
    expect(figureOf(c.figures, 'endToEndRatePerS')).toMatchObject({ before: 3567, after: 2854, verdict: 'worse', failed: true });
    // CPU per transaction is derived from the throughput: the same CPU for fewer transactions costs more each.
    expect(c.failures).toEqual(['endToEndRatePerS', 'cpuUsPerTx', 'workerCpuUsPerTx']);
    expect(figureOf(c.figures, 'publishRatePerS').verdict).toBe('same');
  });

  it('an improvement everywhere passes, marked better', () => {
    const after = variant((r) => {
      r.endToEndRatePerS *= 1.3;
      r.endToEndLatencyMs.p99 = 90;
      r.cpuPctAvg!.database = 50;
    });
    const c = compare(BATCHED, after);
    expect(c.ok).toBe(true);
    expect(figureOf(c.figures, 'endToEndRatePerS').verdict).toBe('better');
    expect(figureOf(c.figures, 'endToEndLatencyMs.p99')).toMatchObject({ change: -52, verdict: 'better' });
    expect(figureOf(c.figures, 'cpuPctAvg.database').verdict).toBe('better');
  });

  it('latency up past the threshold fails (lower is better)', () => {
    const c = compare(
      BATCHED,
      variant((r) => {
        r.confirmLatencyMs!.p99 = 30;
      }),
    );
    expect(c.failures).toEqual(['confirmLatencyMs.p99']);
  });

  it('lost or duplicated above zero in after fails even when nothing else changed', () => {
    const c = compare(
      BATCHED,
      variant((r) => {
        r.duplicated = 1;
        r.verifyOk = false;
      }),
    );
    expect(c.failures).toEqual(['duplicated', 'verifyOk']);
    // …but only in after: a baseline that lost messages does not fail a clean after run.
    expect(
      compare(
        variant((r) => {
          r.lost = 3;
        }),
        BATCHED,
      ).ok,
    ).toBe(true);
  });

  it('a baseline without lost / duplicated / drained / verifyOk does not let a bad after run pass', () => {
    const older = variant((r) => {
      delete r.lost;
      delete r.duplicated;
      delete r.drained;
      delete r.verifyOk;
    });
    const bad = variant((r) => {
      r.lost = 2;
      r.duplicated = 1;
      r.drained = false;
      r.verifyOk = false;
    });
    const c = compare(older, bad);
    expect(c.ok).toBe(false);
    expect(c.failures).toEqual(['lost', 'duplicated', 'drained', 'verifyOk']);
    expect(figureOf(c.figures, 'lost')).toMatchObject({ before: null, after: 2, verdict: 'missing', failed: true });
    const text = renderComparison(c).join('\n');
    expect(text).toMatch(/^lost\s+tx\s+missing\s+2\s+missing in before ✗$/m);
    expect(text).toContain('  ✗ 2 lost in the after report (must be 0)');
    expect(text).toContain('  ✗ drained: no in the after report');
    // The same baseline against a clean after run: nothing to fail.
    expect(compare(older, BATCHED).ok).toBe(true);
  });

  it('an after report without drained / verifyOk fails, whatever the baseline', () => {
    const unproven = variant((r) => {
      delete r.drained;
      delete r.verifyOk;
    });
    const c = compare(BATCHED, unproven);
    expect(c.ok).toBe(false);
    expect(c.failures).toEqual(['drained', 'verifyOk']);
    expect(renderComparison(c).join('\n')).toMatch(/^verify\s+yes\/no\s+yes\s+missing\s+missing in after ✗$/m);
  });

  it('figures missing in one report are shown as missing and not compared', () => {
    const older = variant((r) => {
      delete r.cpuPctAvg;
      delete r.workerRssMbMax;
      delete r.confirmLatencyMs;
    });
    // Only the missing figures differ, and they must not fail the comparison.
    const c = compare(older, BATCHED);
    expect(c.ok).toBe(true);
    expect(figureOf(c.figures, 'cpuPctAvg.broker')).toMatchObject({ before: null, after: 78, verdict: 'missing', failed: false });
    expect(figureOf(c.figures, 'workerRssMbMax')).toMatchObject({ before: null, verdict: 'missing' });
    expect(figureOf(c.figures, 'confirmLatencyMs.p99')).toMatchObject({ before: null, after: 21, verdict: 'missing' });
    const text = renderComparison(c).join('\n');
    expect(text).toMatch(/CPU broker\s.*missing\s+78\s+missing in before/);
  });

  it('a CPU or RSS of 0 means not measured (no such process here): missing, not a 100 % change', () => {
    const noBroker = variant((r) => {
      r.cpuPctAvg!.broker = 0;
    });
    const c = compare(noBroker, BATCHED);
    expect(figureOf(c.figures, 'cpuPctAvg.broker')).toMatchObject({ before: null, verdict: 'missing', failed: false });
    // The per-transaction total counts only components measured in both, so it does not jump either.
    expect(figureOf(c.figures, 'cpuUsPerTx')).toMatchObject({ before: 785, after: 785, verdict: 'same' }); // (180 + 70 + 30) × 10,000 / 3,567;
    expect(c.ok).toBe(true);
  });

  it('more latencies (per hop) in a newer report are compared without a change to the module', () => {
    const hop = (p50: number) => ({ count: 10, p50, p90: p50, p99: p50 * 2, p999: p50 * 2, max: p50 * 3 });
    const before = variant((r) => {
      r.hopLatencyMs = { queueWait: hop(10), commit: hop(3) };
      r.relayLatencyMs = hop(5);
    });
    const after = variant((r) => {
      r.hopLatencyMs = { queueWait: hop(20), commit: hop(3) };
    });
    const c = compare(before, after);
    expect(figureOf(c.figures, 'hopLatencyMs.queueWait.p50')).toMatchObject({
      label: 'hop latency: queue wait p50',
      unit: 'ms',
      better: 'lower',
      verdict: 'worse',
      failed: true,
    });
    expect(figureOf(c.figures, 'hopLatencyMs.commit.max').verdict).toBe('same');
    expect(figureOf(c.figures, 'relayLatencyMs.p99')).toMatchObject({ label: 'relay latency p99', after: null, verdict: 'missing' });
    // Bench's own latencies stay first.
    expect(c.figures.filter((f) => f.unit === 'ms')[0]!.key).toBe('confirmLatencyMs.p50');
  });

  it('the real per-hop shape (hopLatencyMs.hops.<hop>), the relay hop, the ceiling and measured CPU per tx: a figure only one report has is missing, never a regression', () => {
    const hop = (p50: number) => ({ count: 10, p50, p90: p50, p99: p50 * 2, p999: p50 * 2, max: p50 * 3 });
    // An older report: no relay hop (bench ran --no-relay), no ceiling, no measured CPU per tx.
    const before = variant((r) => {
      r.hopLatencyMs = { hops: { queue_wait: hop(10), end_to_end: hop(30) }, exact: true };
    });
    const after = variant((r) => {
      r.hopLatencyMs = { hops: { queue_wait: hop(10), relay: hop(400), end_to_end: hop(90) }, exact: true };
      r.ceiling = 5_000;
      r.efficiency = 0.713;
      r.ceilingRun = {
        txPerS: 5_000,
        messages: 100,
        elapsedS: 0.1,
        publishRatePerS: 9_000,
        consumers: 3,
        messageBytesAvg: 160,
        queue: 'q',
      };
      r.cpuUsPerAppliedTx = { components: { workers: 80, broker: 70, relay: null }, total: 150 };
    });
    const c = compare(before, after);
    expect(figureOf(c.figures, 'hopLatencyMs.hops.relay.p99')).toMatchObject({
      label: 'hop latency: relay p99',
      before: null,
      verdict: 'missing',
      failed: false,
    });
    expect(figureOf(c.figures, 'hopLatencyMs.hops.end_to_end.p50')).toMatchObject({
      label: 'hop latency: end to end p50',
      verdict: 'worse',
      failed: true,
    });
    expect(figureOf(c.figures, 'ceiling')).toMatchObject({ before: null, after: 5_000, verdict: 'missing', failed: false });
    expect(figureOf(c.figures, 'efficiency')).toMatchObject({ before: null, after: 0.713, verdict: 'missing', failed: false });
    expect(figureOf(c.figures, 'cpuUsPerAppliedTx.total')).toMatchObject({ before: null, verdict: 'missing', failed: false });
    // Not measured in either (the relay runs inside the workers): not a row at all.
    expect(c.figures.some((f) => f.key === 'cpuUsPerAppliedTx.components.relay')).toBe(false);
    expect(figureOf(c.figures, 'cpuUsPerAppliedTx.components.workers')).toMatchObject({ before: null, after: 80, verdict: 'missing' });
    expect(c.failures).toEqual([
      'hopLatencyMs.hops.end_to_end.p50',
      'hopLatencyMs.hops.end_to_end.p99',
      'hopLatencyMs.hops.end_to_end.max',
    ]);
    // Both with a ceiling: efficiency down past the threshold fails.
    const lower = variant((r) => {
      Object.assign(r, { ceiling: 5_000, efficiency: 0.6 });
    });
    const higher = variant((r) => {
      Object.assign(r, { ceiling: 5_000, efficiency: 0.8 });
    });
    expect(figureOf(compare(higher, lower).figures, 'efficiency')).toMatchObject({ verdict: 'worse', failed: true });
  });

  it('derives drain time from the per-second samples when the report has none, and prefers its own', () => {
    const slowDrain = variant((r) => {
      // Sending stops at t = 15; outcomes continue to t = 19.
      for (const s of r.seconds) if (s.t > 15) s.sent = 0;
    });
    const c = compare(BATCHED, slowDrain);
    expect(figureOf(c.figures, 'drainS')).toMatchObject({ before: 0, after: 4, changeRatio: null, verdict: 'worse', failed: true });
    const own = variant((r) => {
      r.drainS = 2.5;
    });
    expect(figureOf(compare(own, own).figures, 'drainS').before).toBe(2.5);
  });
});

describe('settings', () => {
  it('names every option that differs, but not the seed', () => {
    const other = variant((r) => {
      r.options.workers = 4;
      r.options.count = 1000;
      r.options.seed = 'another';
      r.options.via = 'http';
    });
    expect(settingDifferences(BATCHED, other)).toEqual([
      { setting: 'workers', before: 3, after: 4 },
      { setting: 'count', before: 72793, after: 1000 },
      { setting: 'via', before: null, after: 'http' },
    ]);
    const c = compare(BATCHED, other);
    expect(c.warnings).toEqual([
      'the reports come from different settings (workers 3 → 4, count 72793 → 1000, via (none) → http); compared anyway',
    ]);
    // Still compared.
    expect(c.ok).toBe(true);
    expect(c.figures.length).toBeGreaterThan(10);
  });
});

describe('benchReportProblem', () => {
  it('needs a JSON object with options; everything else may be missing', () => {
    expect(benchReportProblem(BATCHED)).toBeNull();
    expect(benchReportProblem({ options: {} })).toBeNull();
    expect(benchReportProblem([])).toBe('not a JSON object');
    expect(benchReportProblem(null)).toBe('not a JSON object');
    expect(benchReportProblem({ seconds: [] })).toBe('no "options" object');
  });

  it('a report with nothing but options compares as all missing, and passes', () => {
    const c = compare({ options: {} }, BATCHED);
    expect(c.ok).toBe(true);
    expect(c.figures.every((f) => f.verdict === 'missing')).toBe(true);
  });
});

describe('renderComparison', () => {
  it('a table with before, after, change, change % and verdict; the failures named at the end', () => {
    const after = variant((r) => {
      r.endToEndRatePerS = 2854;
    });
    const lines = renderComparison(compare(BATCHED, after));
    expect(lines[0]).toBe('bench compare: before.json → after.json, threshold 5%');
    expect(lines).toContainEqual(expect.stringMatching(/^figure\s+unit\s+before\s+after\s+change\s+change %\s+verdict$/));
    expect(lines).toContainEqual(expect.stringMatching(/^end-to-end throughput\s+tx\/s\s+3567\s+2854\s+-713\s+-20\.0%\s+worse ✗$/));
    expect(lines).toContainEqual(expect.stringMatching(/^verify\s+yes\/no\s+yes\s+yes\s+same$/));
    expect(lines).toContain('FAILED (3):');
    expect(lines).toContain('  ✗ end-to-end throughput 3567 → 2854 tx/s (-20.0%, worse past 5%)');
  });

  it('says ok when nothing failed', () => {
    expect(renderComparison(compare(BATCHED, BATCHED)).at(-1)).toBe('ok: nothing worse past 5%, nothing lost or duplicated');
  });
});
