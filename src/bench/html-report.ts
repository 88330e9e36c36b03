import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';

/**
 * One self-contained HTML file from bench JSON reports (`txsim bench --html`, `txsim bench report
 * <json…> --html`): the headline chart (outcomes per second of every run), per run the per-second
 * throughput, latency (when the samples carry it) and CPU lines, the latency percentile
 * distribution of every run, the average CPU per component, and the summary table. uPlot and the
 * data are inlined: the file opens from disk, offline, with nothing else next to it.
 */

/** The percentiles a bench report keeps (src/stats/histogram.ts `Percentiles`). */
export interface BenchPercentiles {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** One per-second sample; the latency fields are optional (reports written before they existed lack them). */
export interface BenchSecond {
  readonly t: number;
  readonly sent: number;
  readonly confirmed: number;
  readonly applied: number;
  readonly rejected: number;
  readonly workerCpuPct: number;
  readonly brokerCpuPct?: number;
  readonly databaseCpuPct?: number;
  readonly genCpuPct?: number;
  readonly workerRssMb?: number;
  /** Created → committed over the outcomes of this second, when the bench records it. */
  readonly endToEndP50Ms?: number;
  readonly endToEndP99Ms?: number;
  /** p50/p99 per hop of this second, as the workers measured it (absent from older reports). */
  readonly hopsMs?: Readonly<Record<string, { readonly count: number; readonly p50: number; readonly p99: number } | undefined>>;
}

/**
 * The part of the bench JSON report (src/bench/bench.ts `BenchReport`) the HTML uses. Declared here
 * rather than imported so an older or newer report still renders: every field read is checked.
 */
export interface BenchJson {
  readonly options: {
    readonly workers: number;
    readonly batchSizeMax?: number;
    readonly transactionsMax?: number;
    readonly accounts?: number;
    readonly hotShare?: number;
    readonly ratePerS?: number;
  };
  readonly runId?: string;
  readonly published: number;
  readonly publishRatePerS: number;
  readonly endToEndRatePerS: number;
  readonly confirmLatencyMs: BenchPercentiles;
  readonly endToEndLatencyMs: BenchPercentiles;
  /** Per-hop latency as the workers measured it (absent from reports older than it). */
  readonly hopLatencyMs?: { readonly hops?: Readonly<Record<string, BenchPercentiles | undefined>>; readonly exact?: boolean };
  readonly cpuPctAvg?: {
    readonly workers: number;
    readonly broker: number;
    readonly database: number;
    readonly gen: number;
    readonly serve?: number;
  };
  /** A bench through the API (`bench --via http`); absent or null over AMQP. */
  readonly http?: { readonly requestsPerS: number; readonly requestLatencyMs: BenchPercentiles } | null;
  readonly workerCpuPctAvg?: number;
  /** With `bench --ceiling`: the machine's ceiling (tx/s) and end to end ÷ ceiling; null or absent otherwise. */
  readonly ceiling?: number | null;
  readonly efficiency?: number | null;
  /** µs of CPU per applied transaction by component and in total; absent from older reports. */
  readonly cpuUsPerAppliedTx?: { readonly components: Readonly<Record<string, number | null>>; readonly total: number | null };
  /** Idle share (0..1) of the machine over the run. */
  readonly idleShare?: number | null;
  readonly workerRssMbMax?: number;
  readonly verifyOk?: boolean;
  readonly lost?: number;
  readonly duplicated?: number;
  readonly seconds: readonly BenchSecond[];
}

export interface NamedBenchReport {
  /** Shown in legends and the table: the file name without `.json`, or what the caller chose. */
  readonly name: string;
  readonly report: BenchJson;
}

export interface HtmlReportOptions {
  readonly title?: string;
  /** Printed in the header; defaults to now. */
  readonly generatedAt?: Date;
}

/** The charts every report contains, by `data-chart` name (per-run ones are suffixed `-<index>`). */
export const REPORT_CHARTS = ['headline', 'percentiles', 'cpu'] as const;
export const PER_RUN_CHARTS = ['throughput', 'latency', 'hops', 'cpu-time'] as const;

/** Reads bench JSON files; a file that is not a bench report is an error naming it. */
export function readBenchReports(paths: readonly string[]): NamedBenchReport[] {
  return paths.map((path) => {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new Error(`${path}: not a JSON file (${(err as Error).message})`, { cause: err });
    }
    const problem = benchJsonProblem(raw);
    if (problem) throw new Error(`${path}: not a txsim bench report (${problem})`);
    return { name: basename(path).replace(/\.json$/i, ''), report: raw as BenchJson };
  });
}

/** What is wrong with a value as a bench report, or null when it has what the HTML reads. */
export function benchJsonProblem(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null) return 'not an object';
  const r = raw as Record<string, unknown>;
  if (typeof r.options !== 'object' || r.options === null) return 'no options';
  if (!Array.isArray(r.seconds)) return 'no seconds[]';
  for (const key of ['published', 'publishRatePerS', 'endToEndRatePerS']) if (typeof r[key] !== 'number') return `${key} is not a number`;
  for (const key of ['confirmLatencyMs', 'endToEndLatencyMs']) {
    const p = r[key] as Record<string, unknown> | undefined;
    if (typeof p !== 'object' || p === null || typeof p.p50 !== 'number' || typeof p.p99 !== 'number') return `${key} has no percentiles`;
  }
  return null;
}

function uplotAssets(): { js: string; css: string } {
  const dir = dirname(createRequire(import.meta.url).resolve('uplot'));
  return { js: readFileSync(join(dir, 'uPlot.iife.min.js'), 'utf8'), css: readFileSync(join(dir, 'uPlot.min.css'), 'utf8') };
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** JSON inside <script>: `<` escaped so no value can close the tag. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');

/** The summary table: one row per run, the same figures as BENCHMARKS.md. */
function summaryTable(runs: readonly NamedBenchReport[]): string {
  const head = [
    'run',
    'workers',
    'batch × in flight',
    'accounts',
    'rate asked',
    'published',
    'publish msg/s',
    'end-to-end tx/s',
    'ceiling tx/s, efficiency',
    'confirm p99 ms',
    'HTTP req/s, request p50 / p99 ms',
    'e2e p50 / p99 / max ms',
    'CPU % workers / broker / DB / gen',
    'CPU µs per applied tx: total (workers / broker / DB / gen)',
    'machine idle %',
    'verify',
  ];
  const rows = runs.map(({ name, report: r }) => {
    const o = r.options;
    const cpu = r.cpuPctAvg
      ? `${r.cpuPctAvg.workers} / ${r.cpuPctAvg.broker} / ${r.cpuPctAvg.database} / ${r.cpuPctAvg.gen}${r.http ? ` / serve ${r.cpuPctAvg.serve ?? 0}` : ''}`
      : String(r.workerCpuPctAvg ?? '–');
    const verify = r.verifyOk === undefined ? '–' : r.verifyOk ? `OK, ${r.lost ?? 0} lost, ${r.duplicated ?? 0} dup` : 'FAILED';
    const cells = [
      name,
      o.workers,
      o.batchSizeMax !== undefined ? `${o.batchSizeMax} × ${o.transactionsMax ?? '–'}` : '–',
      o.accounts ?? '–',
      o.ratePerS ? o.ratePerS : 'max',
      r.published,
      r.publishRatePerS,
      `<b>${r.endToEndRatePerS}</b>`,
      typeof r.ceiling === 'number'
        ? `${r.ceiling}, ${typeof r.efficiency === 'number' ? `${(r.efficiency * 100).toFixed(1)} %` : '–'}`
        : '–',
      r.confirmLatencyMs.p99,
      // Over HTTP the confirm column is the request latency too: the API answers 202 after the confirm.
      r.http ? `${r.http.requestsPerS}, ${r.http.requestLatencyMs.p50} / ${r.http.requestLatencyMs.p99}` : '–',
      `${r.endToEndLatencyMs.p50} / ${r.endToEndLatencyMs.p99} / ${r.endToEndLatencyMs.max}`,
      cpu,
      cpuPerTxText(r.cpuUsPerAppliedTx),
      typeof r.idleShare === 'number' ? (r.idleShare * 100).toFixed(1) : '–',
      verify,
    ];
    return `<tr>${cells.map((c, i) => `<td${i === 0 ? '' : ' class="n"'}>${i === 7 ? String(c) : escapeHtml(String(c))}</td>`).join('')}</tr>`;
  });
  return `<table id="summary"><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function cpuPerTxText(cpu: BenchJson['cpuUsPerAppliedTx']): string {
  if (!cpu || cpu.total === null) return '–';
  const c = (k: string) => cpu.components[k] ?? '–';
  return `${cpu.total} (${c('workers')} / ${c('broker')} / ${c('database')} / ${c('gen')})`;
}

/** The hops in the order a message passes them (src/stats/hops.ts). */
const HOP_ORDER = ['queue_wait', 'processing', 'commit', 'ack', 'relay', 'statement', 'end_to_end'];

/** Where the time went, per run and hop; empty when no report has per-hop latency. */
function hopTable(runs: readonly NamedBenchReport[]): string {
  const rows = runs.flatMap(({ name, report }) => {
    const hops = report.hopLatencyMs?.hops;
    if (typeof hops !== 'object' || hops === null) return [];
    return Object.entries(hops)
      .filter((e): e is [string, BenchPercentiles] => typeof e[1]?.p50 === 'number' && typeof e[1].p99 === 'number')
      .sort((a, b) => HOP_ORDER.indexOf(a[0]) - HOP_ORDER.indexOf(b[0]))
      .map(([hop, p]) => {
        const cells = [name, hop, p.count, p.p50, p.p90, p.p99, p.p999, p.max].map((c) => escapeHtml(String(c)));
        return `<tr>${cells.map((c, i) => `<td${i < 2 ? '' : ' class="n"'}>${c}</td>`).join('')}</tr>`;
      });
  });
  if (rows.length === 0) return '';
  const head = ['run', 'hop', 'count', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms'];
  return `<h2>Where the time goes: latency per hop</h2>
<div class="scroll"><table id="hops"><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

/**
 * The headline chart's data: one shared x of every sample time of every run (to 0.1 s, as bench writes
 * `t`), then per run its outcomes (applied + rejected) per second at each x, null where it has no
 * sample. Each sample stays at its own time: rounded to whole seconds, the short last interval bench
 * adds as it stops (t = 4.3 after t = 4) landed on the same second and replaced that full second's rate.
 */
export function headlineSeries(
  runs: readonly { readonly seconds: readonly Pick<BenchSecond, 't' | 'applied' | 'rejected'>[] }[],
): (number | null)[][] {
  const at = (t: number) => Math.round(t * 10) / 10;
  const xs = [...new Set(runs.flatMap((r) => r.seconds.map((s) => at(s.t))))].sort((a, b) => a - b);
  return [
    xs,
    ...runs.map((r) => {
      const byT = new Map<number, number>();
      // Two samples at one time (a report edited by hand): the first stays, as a full interval comes first.
      for (const s of r.seconds) if (!byT.has(at(s.t))) byT.set(at(s.t), s.applied + s.rejected);
      return xs.map((x) => byT.get(x) ?? null);
    }),
  ];
}

/** Renders the report. Pure apart from reading uPlot's files from node_modules. */
export function renderBenchHtml(runs: readonly NamedBenchReport[], options: HtmlReportOptions = {}): string {
  if (runs.length === 0) throw new Error('no bench reports to render');
  const title = options.title ?? `txsim bench: ${runs.map((r) => r.name).join(', ')}`;
  const generatedAt = (options.generatedAt ?? new Date()).toISOString();
  const { js, css } = uplotAssets();
  const data = runs.map(({ name, report }) => ({
    name,
    seconds: report.seconds,
    confirm: report.confirmLatencyMs,
    endToEnd: report.endToEndLatencyMs,
    cpu: report.cpuPctAvg ?? { workers: report.workerCpuPctAvg ?? 0, broker: 0, database: 0, gen: 0 },
  }));
  const perRun = runs
    .map(
      (r, i) => `<section class="run"><h2>${escapeHtml(r.name)}</h2><div class="row">
  <figure><figcaption>Throughput per second (msg/s)</figcaption><div class="chart" data-chart="throughput-${i}"></div></figure>
  <figure><figcaption>Latency per second, created → committed (ms)</figcaption><div class="chart" data-chart="latency-${i}"></div></figure>
  <figure><figcaption>p99 per hop per second, as the workers measured it (ms)</figcaption><div class="chart" data-chart="hops-${i}"></div></figure>
  <figure><figcaption>CPU per component (% of one core)</figcaption><div class="chart" data-chart="cpu-time-${i}"></div></figure>
</div></section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeHtml(title)}</title>
<style>${css}</style>
<style>
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 16px; color: #1d232b; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
.muted { color: #6b7480; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; flex: 1 1 420px; min-width: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.chart { min-height: 240px; }
.note { color: #6b7480; padding: 80px 8px; text-align: center; border: 1px dashed #ccc; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin-top: 8px; }
th, td { border-bottom: 1px solid #e1e4e8; padding: 4px 8px; text-align: left; white-space: nowrap; }
td.n { text-align: right; }
.scroll { overflow-x: auto; }
#headline-box { background: #fff; padding: 8px; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="muted">Generated ${escapeHtml(generatedAt)} by txsim from ${runs.length} bench report${runs.length === 1 ? '' : 's'}.</p>
<section id="headline-box"><h2>End-to-end throughput: outcomes (applied + rejected) per second</h2><div class="chart" data-chart="headline"></div></section>
<div class="row">
  <figure><figcaption>Latency percentile distribution (ms; confirm dashed, created → committed solid)</figcaption><div class="chart" data-chart="percentiles"></div></figure>
  <figure><figcaption>Average CPU per component over the busy seconds (% of one core)</figcaption><div class="chart" data-chart="cpu"></div></figure>
</div>
<h2>Summary</h2>
<div class="scroll">${summaryTable(runs)}</div>
${hopTable(runs)}
${perRun}
<script type="application/json" id="bench-data">${scriptJson(data)}</script>
<script type="application/json" id="bench-headline">${scriptJson(headlineSeries(runs.map((r) => r.report)))}</script>
<script>${js}</script>
<script>${RENDER_SCRIPT}</script>
</body>
</html>
`;
}

/** The page's own script: draws every chart from the inlined data. Plain ES2020, no modules (file://). */
const RENDER_SCRIPT = String.raw`
(function () {
  'use strict';
  var runs = JSON.parse(document.getElementById('bench-data').textContent);
  var COLORS = ['#2f6fde', '#1a7f37', '#c62828', '#b26b00', '#8e44ad', '#00838f', '#6d4c41', '#546e7a', '#d81b60', '#7cb342'];
  var color = function (i) { return COLORS[i % COLORS.length]; };
  var charts = (window.txsimCharts = {});
  function box(name) { return document.querySelector('[data-chart="' + name + '"]'); }
  function width(el) { return Math.max(300, el.clientWidth || 600); }
  function plot(name, opts, data) {
    var el = box(name);
    opts.width = width(el);
    opts.height = opts.height || 240;
    charts[name] = new uPlot(opts, data, el);
    return charts[name];
  }
  function note(name, text) {
    var el = box(name);
    el.innerHTML = '';
    var div = document.createElement('div');
    div.className = 'note';
    div.textContent = text;
    el.appendChild(div);
    charts[name] = 'note';
  }
  function line(label, stroke, extra) {
    // spanGaps: runs sample at their own (drifting) seconds, so on a shared time axis each has gaps
    // where another run has a sample; without it every line breaks into pieces.
    var s = { label: label, stroke: stroke, width: 2, points: { show: false }, spanGaps: true };
    for (var k in extra || {}) s[k] = extra[k];
    return s;
  }
  var secondsAxis = { label: 's', values: function (u, vals) { return vals.map(function (v) { return v + ' s'; }); } };
  var zeroBased = { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } };

  // Headline: every run's outcomes per second on one time axis (seconds since its start), from
  // headlineSeries(): one shared x of every sample time, null where a run has none (spanGaps joins them).
  var headline = JSON.parse(document.getElementById('bench-headline').textContent);
  plot('headline', {
    height: 300,
    scales: { x: { time: false }, y: zeroBased },
    axes: [secondsAxis, { size: 60 }],
    series: [{ label: 't' }].concat(runs.map(function (r, i) { return line(r.name, color(i)); })),
  }, headline);

  // Percentile distribution, HDR style: x is log10(1 / (1 - p)), so 90, 99, 99.9 are evenly spaced.
  var ps = [{ p: 50, key: 'p50' }, { p: 90, key: 'p90' }, { p: 99, key: 'p99' }, { p: 99.9, key: 'p999' }, { p: 100, key: 'max' }];
  var px = ps.map(function (q, i) { return q.p === 100 ? 4 : Math.log10(100 / (100 - q.p)); });
  var pdata = [px];
  var pseries = [{ label: 'percentile' }];
  runs.forEach(function (r, i) {
    pdata.push(ps.map(function (q) { return r.endToEnd[q.key]; }));
    pseries.push(line(r.name + ' created→committed', color(i)));
    pdata.push(ps.map(function (q) { return r.confirm[q.key]; }));
    pseries.push(line(r.name + ' confirm', color(i), { dash: [6, 4], width: 1.5 }));
  });
  plot('percentiles', {
    scales: { x: { time: false }, y: { distr: 3 } },
    axes: [
      { splits: function () { return px; }, values: function (u, vals) { return vals.map(function (v) { var i = px.indexOf(v); return i === -1 ? '' : ps[i].p === 100 ? 'max' : ps[i].p + '%'; }); } },
      { size: 60 },
    ],
    series: pseries,
  }, pdata);

  // Average CPU per component: grouped bars, one group per run.
  var comps = [{ key: 'workers', label: 'workers' }, { key: 'broker', label: 'broker' }, { key: 'database', label: 'database' }, { key: 'gen', label: 'gen' }];
  var bars = uPlot.paths.bars({ size: [0.8 / comps.length, 60] });
  var idx = runs.map(function (r, i) { return i; });
  var cdata = [idx];
  var cseries = [{ label: 'run' }];
  comps.forEach(function (c, ci) {
    var offset = (ci - (comps.length - 1) / 2) * (0.8 / comps.length);
    cdata.push(runs.map(function (r) { return r.cpu[c.key] || 0; }));
    cseries.push({ label: c.label, stroke: color(ci), fill: color(ci) + 'cc', width: 1, points: { show: false },
      paths: function (u, sidx, i0, i1) {
        // Each component's bars shifted within its run's slot.
        var xs0 = u.data[0];
        u.data[0] = xs0.map(function (x) { return x + offset; });
        var p = bars(u, sidx, i0, i1);
        u.data[0] = xs0;
        return p;
      } });
  });
  plot('cpu', {
    scales: { x: { time: false, range: [-0.6, runs.length - 0.4] }, y: zeroBased },
    axes: [{ splits: function () { return idx; }, values: function (u, vals) { return vals.map(function (v) { return runs[v] ? runs[v].name : ''; }); } }, { size: 60 }],
    series: cseries,
  }, cdata);

  runs.forEach(function (r, i) {
    var t = r.seconds.map(function (s) { return s.t; });
    var get = function (k) { return r.seconds.map(function (s) { return typeof s[k] === 'number' ? s[k] : null; }); };
    plot('throughput-' + i, {
      scales: { x: { time: false }, y: zeroBased }, axes: [secondsAxis, { size: 60 }],
      series: [{ label: 't' }, line('sent', '#2f6fde'), line('confirmed', '#00838f'), line('applied', '#1a7f37'), line('rejected', '#c62828')],
    }, [t, get('sent'), get('confirmed'), get('applied'), get('rejected')]);
    var hasLatency = r.seconds.some(function (s) { return typeof s.endToEndP99Ms === 'number'; });
    if (hasLatency) {
      plot('latency-' + i, {
        scales: { x: { time: false }, y: zeroBased }, axes: [secondsAxis, { size: 60 }],
        series: [{ label: 't' }, line('p50 ms', '#2f6fde'), line('p99 ms', '#8e44ad')],
      }, [t, get('endToEndP50Ms'), get('endToEndP99Ms')]);
    } else {
      note('latency-' + i, 'This report has no per-second latency (only the run\u2019s percentiles, charted above): p50 ' + r.endToEnd.p50 + ' ms, p99 ' + r.endToEnd.p99 + ' ms.');
    }
    // Per-hop p99 of each second: one line per hop any second has, in flow order.
    var hopOrder = ['queue_wait', 'processing', 'commit', 'ack', 'relay', 'statement', 'end_to_end'];
    var hopsSeen = hopOrder.filter(function (h) { return r.seconds.some(function (s) { return s.hopsMs && s.hopsMs[h]; }); });
    if (hopsSeen.length > 0) {
      plot('hops-' + i, {
        scales: { x: { time: false }, y: zeroBased }, axes: [secondsAxis, { size: 60 }],
        series: [{ label: 't' }].concat(hopsSeen.map(function (h, hi) { return line(h + ' p99', color(hi)); })),
      }, [t].concat(hopsSeen.map(function (h) { return r.seconds.map(function (s) { return s.hopsMs && s.hopsMs[h] ? s.hopsMs[h].p99 : null; }); })));
    } else {
      note('hops-' + i, 'This report has no per-second latency per hop (written before bench recorded it).');
    }
    plot('cpu-time-' + i, {
      scales: { x: { time: false }, y: zeroBased }, axes: [secondsAxis, { size: 60 }],
      series: [{ label: 't' }, line('workers', color(0)), line('broker', color(1)), line('database', color(2)), line('gen', color(3))],
    }, [t, get('workerCpuPct'), get('brokerCpuPct'), get('databaseCpuPct'), get('genCpuPct')]);
  });
  document.body.dataset.rendered = 'true';
})();
`;
