import { readFileSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { headlineSeries, renderBenchHtml, type BenchJson, type BenchSecond } from '../../src/bench/html-report.js';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/bench-batched-3w.json', import.meta.url), 'utf8')) as BenchJson;

/** A per-second sample with `outcomes` applied at `t`. */
const second = (t: number, outcomes: number): BenchSecond => ({
  t,
  sent: outcomes,
  confirmed: outcomes,
  applied: outcomes,
  rejected: 0,
  workerCpuPct: 50,
});

/** A run whose last sample is the short tail bench's sampler adds as it stops (t = 4.3, 250 ms+). */
const withTail: BenchJson = { ...fixture, seconds: [second(1, 1000), second(2, 2000), second(3, 3000), second(4, 4000), second(4.3, 120)] };

/**
 * Runs the report page's own script (the last <script> of the HTML) with just enough of a DOM and of
 * uPlot to hand back the data each chart was drawn with, by chart name.
 */
function chartData(html: string): Record<string, unknown[][]> {
  const scripts = [...html.matchAll(/<script(?: type="application\/json" id="([\w-]+)")?>([\s\S]*?)<\/script>/g)];
  const json = Object.fromEntries(scripts.filter((m) => m[1]).map((m) => [m[1]!, { textContent: m[2]! }]));
  const drawn: Record<string, unknown[][]> = {};
  const element = (name: string) => ({ clientWidth: 600, innerHTML: '', appendChild: () => {}, name });
  function uPlot(this: unknown, _opts: unknown, data: unknown[][], el: { name: string }) {
    drawn[el.name] = data;
  }
  uPlot.paths = { bars: () => () => null };
  const document = {
    getElementById: (id: string) => json[id] ?? null,
    querySelector: (selector: string) => element(/data-chart="([^"]+)"/.exec(selector)![1]!),
    createElement: () => ({}),
    body: { dataset: {} },
  };
  runInNewContext(scripts.at(-1)![2]!, { document, window: {}, uPlot });
  return drawn;
}

describe('bench HTML report: the headline chart', () => {
  it('the short last sample does not replace the full second before it: the point at 4 holds the t = 4 value', () => {
    const [xs, outcomes] = chartData(renderBenchHtml([{ name: 'tail', report: withTail }])).headline!;
    expect(xs!.indexOf(4)).toBeGreaterThanOrEqual(0);
    expect(outcomes![xs!.indexOf(4)]).toBe(4000);
    // The tail keeps a point of its own, at its own time.
    expect(outcomes![xs!.indexOf(4.3)]).toBe(120);
  });

  it('runs sampled at different times share one axis, each null where it has no sample', () => {
    const other: BenchJson = { ...fixture, seconds: [second(1.1, 500), second(2.1, 600), second(2.4, 50)] };
    expect(headlineSeries([withTail, other])).toEqual([
      [1, 1.1, 2, 2.1, 2.4, 3, 4, 4.3],
      [1000, null, 2000, null, null, 3000, 4000, 120],
      [null, 500, null, 600, 50, null, null, null],
    ]);
  });
});
