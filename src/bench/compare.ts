/**
 * `txsim bench compare`: every headline figure of two bench JSON reports side by side, whether each
 * got better or worse, and whether any got worse past a threshold — for a user's CI. Pure: the
 * command reads the files and prints; everything decided here is unit-tested.
 *
 * The reports are read as untyped JSON, not as `BenchReport`: a report written by an older or newer
 * txsim lacks some figures or has more, and both must still compare (a figure missing on one side
 * is shown as missing, not compared).
 */

import { medianOf } from '../stats/median.js';

/** Which direction of a figure is an improvement. */
export type Better = 'higher' | 'lower';

/**
 * How a figure can fail the comparison: `threshold` when it got worse by more than the threshold;
 * `zero` when the after value is above zero at all (lost, duplicated); `true` when the after value
 * is false (drained, verified). `zero` and `true` look at the after report alone, and fail when it
 * lacks the figure.
 */
export type FailRule = 'threshold' | 'zero' | 'true';

export type Verdict = 'better' | 'worse' | 'same' | 'missing';

/** One row of the comparison. */
export interface FigureChange {
  /** Stable id, the report's own path where there is one (`confirmLatencyMs.p99`), for scripts. */
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  readonly better: Better;
  readonly rule: FailRule;
  /** null: the figure is not in that report (or, for CPU and RSS, was not measured: 0). */
  readonly before: number | null;
  readonly after: number | null;
  /** after − before; null when either is missing. */
  readonly change: number | null;
  /** change / |before|; null when either is missing or before is 0 (no ratio of nothing). */
  readonly changeRatio: number | null;
  readonly verdict: Verdict;
  /** This figure fails the comparison (the command exits non-zero). */
  readonly failed: boolean;
  /** Why it failed, in words; null when it did not. */
  readonly failure: string | null;
}

/** An option of the bench run that differs between the two reports. */
export interface SettingDifference {
  readonly setting: string;
  readonly before: unknown;
  readonly after: unknown;
}

export interface BenchComparison {
  readonly before: { readonly name: string; readonly runId: string | null };
  readonly after: { readonly name: string; readonly runId: string | null };
  /** 0.05 = 5 %. */
  readonly thresholdRatio: number;
  readonly settingsDiffer: readonly SettingDifference[];
  readonly warnings: readonly string[];
  readonly figures: readonly FigureChange[];
  /** Keys of the failed figures, in table order. */
  readonly failures: readonly string[];
  readonly ok: boolean;
}

/** A parsed bench JSON report: only its shape as JSON is assumed. */
export type BenchJsonValue = Readonly<Record<string, unknown>>;

export interface NamedReport {
  /** How the report is named in the output (its file name). */
  readonly name: string;
  readonly report: BenchJsonValue;
}

/** A threshold above 1,000 % would pass anything: almost certainly a typo. */
const THRESHOLD_RATIO_MAX = 10;

/**
 * `5%` or `0.05` → 0.05. A bare number above 1 is refused rather than guessed at (`5` could mean
 * 5 % or 500 %). Returns null for bad syntax; the caller turns that into a usage error naming the flag.
 */
export function parseThreshold(value: string): number | null {
  const text = value.trim();
  const percent = /^(\d+(?:\.\d+)?|\.\d+)\s*%$/.exec(text);
  if (percent) {
    const ratio = Number(percent[1]) / 100;
    return ratio <= THRESHOLD_RATIO_MAX ? ratio : null;
  }
  if (!/^(\d+(?:\.\d+)?|\.\d+)$/.test(text)) return null;
  const ratio = Number(text);
  return ratio <= 1 ? ratio : null;
}

/** What is wrong with a parsed JSON value as a bench report, or null: it needs `options`, the rest may be missing. */
export function benchReportProblem(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const options = (raw as Record<string, unknown>).options;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) return 'no "options" object';
  return null;
}

/** How one figure is read from a report and judged. */
export interface FigureSpec {
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  readonly better: Better;
  readonly rule: FailRule;
  /**
   * A change no larger than this is "same" whatever the ratio: the report rounds (latency to whole
   * ms, CPU to whole %, per-second samples to the second), so one step of rounding is not evidence.
   */
  readonly resolution: number;
  /** The value, or null when the report does not have it. `other` is the report it is compared with. */
  readonly read: (report: BenchJsonValue, other: BenchJsonValue) => number | null;
}

/** The figures of two reports, each judged against `thresholdRatio`, and the settings they differ in. */
export function compareBenchReports(before: NamedReport, after: NamedReport, thresholdRatio: number): BenchComparison {
  const figures = figureSpecs(before.report, after.report).map((spec) =>
    judge(spec, spec.read(before.report, after.report), spec.read(after.report, before.report), thresholdRatio),
  );
  const settingsDiffer = settingDifferences(before.report, after.report);
  const warnings =
    settingsDiffer.length > 0
      ? [
          `the reports come from different settings (${settingsDiffer
            .map((d) => `${d.setting} ${settingText(d.before)} → ${settingText(d.after)}`)
            .join(', ')}); compared anyway`,
        ]
      : [];
  const failures = figures.filter((f) => f.failed).map((f) => f.key);
  return {
    before: { name: before.name, runId: stringAt(before.report, 'runId') },
    after: { name: after.name, runId: stringAt(after.report, 'runId') },
    thresholdRatio,
    settingsDiffer,
    warnings,
    figures,
    failures,
    ok: failures.length === 0,
  };
}

/** Judges one figure: the change, its ratio, better / worse / same, and whether it fails. */
export function judge(
  spec: Pick<FigureSpec, 'key' | 'label' | 'unit' | 'better' | 'rule' | 'resolution'>,
  before: number | null,
  after: number | null,
  thresholdRatio: number,
): FigureChange {
  const { key, label, unit, better, rule } = spec;
  const base = { key, label, unit, better, rule, before, after };
  // Lost, duplicated, drained and verified are judged on the after report alone ("always a failure,
  // whatever the threshold"): a baseline without them (an older report, a hand-made one) must not let
  // an after run that lost messages pass. Only the verdict, a comparison, needs both sides.
  const absolute = rule === 'threshold' ? null : absoluteFailure(rule, label, after);
  if (before === null || after === null) {
    return { ...base, change: null, changeRatio: null, verdict: 'missing', failed: absolute !== null, failure: absolute };
  }
  const change = round(after - before, 3);
  const changeRatio = before !== 0 ? round(change / Math.abs(before), 4) : change === 0 ? 0 : null;
  const improved = better === 'higher' ? change > 0 : change < 0;
  let verdict: Verdict;
  if (change === 0) verdict = 'same';
  else if (rule !== 'threshold') verdict = improved ? 'better' : 'worse';
  // Within the threshold, or within one step of the report's rounding, is noise: "same".
  else if (Math.abs(change) <= spec.resolution || (changeRatio !== null && Math.abs(changeRatio) <= thresholdRatio)) verdict = 'same';
  else verdict = improved ? 'better' : 'worse';

  const failure =
    rule !== 'threshold'
      ? absolute
      : verdict === 'worse'
        ? `${label} ${formatNumber(before)} → ${formatNumber(after)} ${unit} (${changeRatio === null ? `from 0` : formatRatio(changeRatio)}, worse past ${formatThreshold(thresholdRatio)})`
        : null;
  return { ...base, change, changeRatio, verdict, failed: failure !== null, failure };
}

/**
 * Why the after value fails a `zero` or `true` rule, or null. An after report without the figure fails
 * too: a run that cannot show it lost nothing, drained and verified has not shown it.
 */
function absoluteFailure(rule: 'zero' | 'true', label: string, after: number | null): string | null {
  if (after === null) return `${label}: not in the after report (it must show ${rule === 'zero' ? '0' : 'yes'})`;
  if (rule === 'zero' && after > 0) return `${formatNumber(after)} ${label} in the after report (must be 0)`;
  if (rule === 'true' && after === 0) return `${label}: no in the after report`;
  return null;
}

/** The figures both reports are compared on, in table order: throughput, cost, latency, CPU, memory, correctness. */
function figureSpecs(before: BenchJsonValue, after: BenchJsonValue): FigureSpec[] {
  return [
    figure('endToEndRatePerS', 'end-to-end throughput', 'tx/s', 'higher', 1, (r) => numberAt(r, 'endToEndRatePerS')),
    figure('publishRatePerS', 'publish rate', 'msg/s', 'higher', 1, (r) => numberAt(r, 'publishRatePerS')),
    figure('seconds.outcomesPerSMedian', 'outcomes/s (median second)', 'tx/s', 'higher', 1, medianOutcomesPerS),
    figure('cpuUsPerTx', 'CPU per transaction (all measured)', 'µs', 'lower', 1, cpuUsPerTx),
    figure('workerCpuUsPerTx', 'worker CPU per transaction', 'µs', 'lower', 1, (r) =>
      perTx(r, positive(numberAt(r, 'cpuPctAvg.workers') ?? numberAt(r, 'workerCpuPctAvg'))),
    ),
    // Newer figures, listed when either report has them (a report without one shows it as missing,
    // never as a regression): the ceiling and efficiency (--ceiling), CPU per applied tx as measured.
    ...[
      figure('ceiling', 'ceiling (same load, no txsim logic)', 'tx/s', 'higher', 1, (r) => positive(numberAt(r, 'ceiling'))),
      figure('efficiency', 'efficiency (end to end ÷ ceiling)', 'ratio', 'higher', 0.01, (r) => numberAt(r, 'efficiency')),
      // Measured over the whole run by the report itself (older reports lack it: missing).
      figure('cpuUsPerAppliedTx.total', 'CPU per applied tx, measured (total)', 'µs', 'lower', 1, (r) =>
        positive(numberAt(r, 'cpuUsPerAppliedTx.total')),
      ),
      ...unionKeys(objectAt(before, 'cpuUsPerAppliedTx.components'), objectAt(after, 'cpuUsPerAppliedTx.components')).map((component) =>
        figure(`cpuUsPerAppliedTx.components.${component}`, `CPU per applied tx, ${component}`, 'µs', 'lower', 1, (r) =>
          positive(numberAt(r, `cpuUsPerAppliedTx.components.${component}`)),
        ),
      ),
    ].filter((spec) => spec.read(before, after) !== null || spec.read(after, before) !== null),
    ...latencyFigures(before, after),
    figure('drainS', 'drain time (last sent → last outcome)', 's', 'lower', 1, drainS),
    ...unionKeys(objectAt(before, 'cpuPctAvg'), objectAt(after, 'cpuPctAvg')).map((component) =>
      // 0 is what the sampler reports for a component it found no process of (not running here).
      figure(`cpuPctAvg.${component}`, `CPU ${component}`, '% of a core', 'lower', 1, (r) =>
        positive(numberAt(r, `cpuPctAvg.${component}`)),
      ),
    ),
    figure('workerRssMbMax', 'worker RSS max', 'MB', 'lower', 1, (r) => positive(numberAt(r, 'workerRssMbMax'))),
    figure('workerRssMbLast', 'worker RSS at the end', 'MB', 'lower', 1, (r) => positive(numberAt(r, 'workerRssMbLast'))),
    { ...figure('lost', 'lost', 'tx', 'lower', 0, (r) => numberAt(r, 'lost')), rule: 'zero' },
    { ...figure('duplicated', 'duplicated', 'tx', 'lower', 0, (r) => numberAt(r, 'duplicated')), rule: 'zero' },
    { ...figure('drained', 'drained', 'yes/no', 'higher', 0, (r) => flagAt(r, 'drained')), rule: 'true' },
    { ...figure('verifyOk', 'verify', 'yes/no', 'higher', 0, (r) => flagAt(r, 'verifyOk')), rule: 'true' },
  ];
}

function figure(key: string, label: string, unit: string, better: Better, resolution: number, read: FigureSpec['read']): FigureSpec {
  return { key, label, unit, better, rule: 'threshold', resolution, read };
}

/** Percentiles compared: the median, the tail and the worst. */
const PERCENTILES = [
  ['p50', 'p50'],
  ['p99', 'p99'],
  ['max', 'max'],
] as const;

/** Names for the latency objects bench has always written; others are named from their key. */
const LATENCY_LABELS: Readonly<Record<string, string>> = {
  confirmLatencyMs: 'confirm latency',
  endToEndLatencyMs: 'created → committed latency',
};

/**
 * p50 / p99 / max of every latency percentile object in either report: top-level ones
 * (`confirmLatencyMs`) and ones grouped one level down (per-hop latency, `hopLatencyMs.queueWait`),
 * so a report with more latencies compares them without a change here.
 */
function latencyFigures(before: BenchJsonValue, after: BenchJsonValue): FigureSpec[] {
  const paths = [...new Set([...percentilePaths(before), ...percentilePaths(after)])];
  // Bench's own two first, the rest in the order found.
  const rank = (p: string) => (p in LATENCY_LABELS ? Object.keys(LATENCY_LABELS).indexOf(p) : Number.MAX_SAFE_INTEGER);
  paths.sort((a, b) => rank(a) - rank(b));
  return paths.flatMap((path) =>
    PERCENTILES.map(([field, name]) =>
      // Latency is rounded to whole ms by the histogram.
      figure(`${path}.${field}`, `${latencyLabel(path)} ${name}`, 'ms', 'lower', 1, (r) => numberAt(r, `${path}.${field}`)),
    ),
  );
}

/** Percentile objects up to two levels down (`hopLatencyMs.hops.relay`): deeper is not a headline figure. */
function percentilePaths(report: BenchJsonValue): string[] {
  const out: string[] = [];
  const walk = (value: unknown, path: string, depth: number) => {
    if (isPercentiles(value)) out.push(path);
    else if (isObject(value) && depth < 2) for (const [inner, v] of Object.entries(value)) walk(v, `${path}.${inner}`, depth + 1);
  };
  for (const [key, value] of Object.entries(report)) {
    // Not latencies of the run as a whole: the settings, the per-second samples, the ceiling run's own figures.
    if (key === 'options' || key === 'seconds' || key === 'ceilingRun') continue;
    walk(value, key, 0);
  }
  return out;
}

function isPercentiles(value: unknown): boolean {
  return isObject(value) && 'p50' in value && 'p99' in value && (typeof value.p50 === 'number' || value.p50 === null);
}

function latencyLabel(path: string): string {
  const known = LATENCY_LABELS[path];
  if (known) return known;
  const [outer = '', ...inner] = path.split('.');
  const outerWords = words(outer.replace(/LatencyMs$|Ms$/, ''));
  // `hopLatencyMs.hops.end_to_end` → `hop latency: end to end` (the grouping key `hops` says nothing).
  const last = inner.at(-1);
  return last === undefined ? `${outerWords} latency` : `${outerWords} latency: ${words(last.replace(/Ms$/, '')).replace(/_/g, ' ')}`;
}

/** `queueWait` → `queue wait`. */
function words(camel: string): string {
  return camel.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
}

/**
 * CPU µs per transaction: CPU % of one core × 10,000 / tx/s. Only components measured in both
 * reports count, so a broker sampled in one run and not in the other does not read as a change.
 */
function cpuUsPerTx(report: BenchJsonValue, other: BenchJsonValue): number | null {
  const cpu = objectAt(report, 'cpuPctAvg');
  const otherCpu = objectAt(other, 'cpuPctAvg');
  if (!cpu) return null;
  let pct = 0;
  for (const [component, value] of Object.entries(cpu)) {
    const theirs = otherCpu?.[component];
    if (typeof value === 'number' && value > 0 && (!otherCpu || (typeof theirs === 'number' && theirs > 0))) pct += value;
  }
  return perTx(report, pct > 0 ? pct : null);
}

function perTx(report: BenchJsonValue, cpuPct: number | null): number | null {
  const rate = numberAt(report, 'endToEndRatePerS');
  if (cpuPct === null || rate === null || rate <= 0) return null;
  return round((cpuPct * 10_000) / rate, 1);
}

/** Outcomes (applied + rejected) per second over the seconds that had any (their median, as every median of the bench tooling): the steady rate, not diluted by start-up and tail. */
function medianOutcomesPerS(report: BenchJsonValue): number | null {
  const rates = secondsOf(report)
    .map((s) => (numberAt(s, 'applied') ?? 0) + (numberAt(s, 'rejected') ?? 0))
    .filter((n) => n > 0);
  return rates.length === 0 ? null : medianOf(rates);
}

/**
 * How long the workers took to finish after publishing stopped: the report's own `drainS` when it
 * has one, else from the per-second samples (last second with an outcome − last second with a send),
 * so to the nearest sample.
 */
function drainS(report: BenchJsonValue): number | null {
  const own = numberAt(report, 'drainS');
  if (own !== null) return own;
  let lastSentT: number | null = null;
  let lastOutcomeT: number | null = null;
  for (const s of secondsOf(report)) {
    const t = numberAt(s, 't');
    if (t === null) continue;
    if ((numberAt(s, 'sent') ?? 0) > 0) lastSentT = t;
    if ((numberAt(s, 'applied') ?? 0) + (numberAt(s, 'rejected') ?? 0) > 0) lastOutcomeT = t;
  }
  if (lastSentT === null || lastOutcomeT === null) return null;
  return round(Math.max(0, lastOutcomeT - lastSentT), 1);
}

/**
 * The run options that differ. The seed is left out: `bench` picks a random one per run, and a
 * different stream of the same shape is the same benchmark.
 */
export function settingDifferences(before: BenchJsonValue, after: BenchJsonValue): SettingDifference[] {
  const a = objectAt(before, 'options') ?? {};
  const b = objectAt(after, 'options') ?? {};
  return unionKeys(a, b)
    .filter((key) => key !== 'seed' && JSON.stringify(a[key]) !== JSON.stringify(b[key]))
    .map((setting) => ({ setting, before: a[setting] ?? null, after: b[setting] ?? null }));
}

function settingText(value: unknown): string {
  return value === null || value === undefined ? '(none)' : typeof value === 'string' ? value : JSON.stringify(value);
}

// ---- the text table ----

/** The comparison as text lines: a header, the table, and a closing line saying what failed. */
export function renderComparison(c: BenchComparison): string[] {
  const headers = ['figure', 'unit', 'before', 'after', 'change', 'change %', 'verdict'];
  const rows = c.figures.map((f) => [
    f.label,
    f.unit,
    valueText(f, f.before),
    valueText(f, f.after),
    f.change === null ? '' : f.rule === 'true' ? '' : signed(f.change),
    f.verdict === 'missing' || f.rule === 'true' ? '' : f.changeRatio === null ? 'n/a' : formatRatio(f.changeRatio),
    verdictText(f),
  ]);
  const rightAligned = [false, false, true, true, true, true, false];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (rightAligned[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [
    `bench compare: ${c.before.name} → ${c.after.name}, threshold ${formatThreshold(c.thresholdRatio)}`,
    '',
    line(headers),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
  ];
  const failed = c.figures.filter((f) => f.failed);
  if (failed.length === 0) out.push(`ok: nothing worse past ${formatThreshold(c.thresholdRatio)}, nothing lost or duplicated`);
  else out.push(`FAILED (${failed.length}):`, ...failed.map((f) => `  ✗ ${f.failure}`));
  return out;
}

function valueText(f: FigureChange, value: number | null): string {
  if (value === null) return 'missing';
  if (f.rule === 'true') return value ? 'yes' : 'no';
  return formatNumber(value);
}

function verdictText(f: FigureChange): string {
  const text =
    f.verdict !== 'missing'
      ? f.verdict
      : f.before === null && f.after === null
        ? 'missing in both'
        : `missing in ${f.before === null ? 'before' : 'after'}`;
  return f.failed ? `${text} ✗` : text;
}

/** `0.05` → `5%`, `0.125` → `12.5%`. */
export function formatThreshold(ratio: number): string {
  return `${round(ratio * 100, 2)}%`;
}

/** `-0.2` → `-20.0%`, `0.031` → `+3.1%`. */
function formatRatio(ratio: number): string {
  return `${ratio > 0 ? '+' : ''}${(ratio * 100).toFixed(1)}%`;
}

function signed(n: number): string {
  return `${n > 0 ? '+' : ''}${formatNumber(n)}`;
}

function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : String(round(n, 1));
}

// ---- reading untyped JSON ----

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function valueAt(report: Readonly<Record<string, unknown>>, path: string): unknown {
  let value: unknown = report;
  for (const key of path.split('.')) value = isObject(value) ? value[key] : undefined;
  return value;
}

function numberAt(report: Readonly<Record<string, unknown>>, path: string): number | null {
  const value = valueAt(report, path);
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function stringAt(report: BenchJsonValue, path: string): string | null {
  const value = valueAt(report, path);
  return typeof value === 'string' ? value : null;
}

function flagAt(report: BenchJsonValue, path: string): number | null {
  const value = valueAt(report, path);
  return typeof value === 'boolean' ? Number(value) : null;
}

function objectAt(report: BenchJsonValue, path: string): Record<string, unknown> | null {
  const value = valueAt(report, path);
  return isObject(value) ? value : null;
}

function secondsOf(report: BenchJsonValue): Record<string, unknown>[] {
  const seconds = report.seconds;
  return Array.isArray(seconds) ? seconds.filter(isObject) : [];
}

/** CPU and RSS of 0 mean "not measured here" (no such process found), not a perfect score. */
function positive(n: number | null): number | null {
  return n !== null && n > 0 ? n : null;
}

function unionKeys(a: Record<string, unknown> | null, b: Record<string, unknown> | null): string[] {
  return [...new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])];
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
