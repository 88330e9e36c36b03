import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderBenchHtml, type BenchJson } from '../../src/bench/html-report.js';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/bench-batched-3w.json', import.meta.url), 'utf8')) as BenchJson;

describe('bench HTML report: latency per hop', () => {
  it('lists each hop of each run in flow order', () => {
    const hop = (p50: number) => ({ count: 10, p50, p90: p50 + 1, p99: p50 + 2, p999: p50 + 3, max: p50 + 4 });
    const report: BenchJson = {
      ...fixture,
      hopLatencyMs: { hops: { end_to_end: hop(30), queue_wait: hop(3), commit: hop(9) }, exact: true },
    };
    const html = renderBenchHtml([{ name: 'with-hops', report }]);
    const table = /<table id="hops">(.*?)<\/table>/s.exec(html)?.[1] ?? '';
    const hops = [...table.matchAll(/<tr><td>with-hops<\/td><td>(\w+)<\/td><td class="n">10<\/td><td class="n">(\d+)<\/td>/g)].map((m) => [
      m[1],
      m[2],
    ]);
    expect(hops).toEqual([
      ['queue_wait', '3'],
      ['commit', '9'],
      ['end_to_end', '30'],
    ]);
  });

  it('has no hop table for reports written before hops existed', () => {
    expect(renderBenchHtml([{ name: 'old', report: fixture }])).not.toContain('id="hops"');
  });
});
