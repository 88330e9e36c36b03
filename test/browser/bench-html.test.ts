import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PER_RUN_CHARTS, readBenchReports, renderBenchHtml, REPORT_CHARTS } from '../../src/bench/html-report.js';
import { launchBrowser, saveScreenshot, type Browser } from './browser.js';

// The bench HTML report, rendered from fixture JSON reports, opened from disk in a real Chromium.
const FIXTURES = ['bench-batched-3w.json', 'bench-per-message-3w.json'].map((f) => new URL(`../fixtures/${f}`, import.meta.url).pathname);

describe('the bench HTML report in Chromium', () => {
  let browser: Browser;
  let page: Page;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'txsim-bench-html-'));
    browser = await launchBrowser();
    page = await browser.newPage();
  });

  afterEach(async (context) => {
    if (context.task.result?.state === 'fail') await saveScreenshot(page, `bench-html ${context.task.name}`);
  });

  afterAll(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens offline without console errors and draws every chart', async () => {
    const runs = readBenchReports(FIXTURES);
    const file = join(dir, 'report.html');
    writeFileSync(file, renderBenchHtml(runs, { generatedAt: new Date('2026-12-01T00:00:00Z') }));
    // Nothing but the file itself: any request elsewhere would be a dependency the report must not have.
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(pathToFileURL(file).href);
    await page.locator('body[data-rendered="true"]').waitFor({ timeout: 10_000 });

    const expected = [...REPORT_CHARTS, ...runs.flatMap((_r, i) => PER_RUN_CHARTS.map((c) => `${c}-${i}`))];
    const drawn = await page.evaluate<Record<string, string>>(
      `Object.fromEntries(Object.entries(window.txsimCharts).map(([k, v]) => [k, v === 'note' ? 'note' : 'chart']))`,
    );
    expect(Object.keys(drawn).sort()).toEqual([...expected].sort());
    for (const name of expected) {
      const box = page.locator(`[data-chart="${name}"]`);
      // A chart is a canvas with pixels drawn; a run without per-second latency says so instead.
      if (drawn[name] === 'note') expect(await box.textContent()).toContain('no per-second latency');
      else expect(await box.locator('canvas').count(), name).toBe(1);
    }
    // The fixture with per-second latency draws it; the one without gets the note.
    expect(drawn['latency-0']).toBe('chart');
    expect(drawn['latency-1']).toBe('note');
    // Legends name the runs; the summary has one row per run.
    expect(await page.locator('[data-chart="headline"] .u-legend').textContent()).toContain('batched-3w');
    expect(await page.locator('#summary tbody tr').count()).toBe(2);
    expect(await page.locator('#summary').textContent()).toContain('OK, 0 lost, 0 dup');
    expect(requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:'))).toEqual([]);
    expect(browser.errors).toEqual([]);
  });

  it('refuses a file that is not a bench report, naming it', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ hello: 'world' }));
    expect(() => readBenchReports([bad])).toThrow(/bad\.json: not a txsim bench report \(no options\)/);
  });
});
