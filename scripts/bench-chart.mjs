// Renders bench JSON report(s) to a PNG of the headline chart (outcomes per second of every run), through
// the HTML report (src/bench/html-report.ts) in Debian's headless Chromium — for BENCHMARKS.md.
// Usage: npm run build && node scripts/bench-chart.mjs <out.png> <bench.json>...   (e.g. .txsim/bench/*.json)
// Env: TXSIM_CHROMIUM (default /usr/bin/chromium); nothing downloads a browser.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [out, ...inputs] = process.argv.slice(2);
if (!out || !out.endsWith('.png') || inputs.length === 0) {
  console.error('usage: node scripts/bench-chart.mjs <out.png> <bench.json>...');
  process.exit(2);
}
const chromiumPath = process.env.TXSIM_CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(chromiumPath)) {
  console.error(`bench-chart: no Chromium at ${chromiumPath}: apt-get install -y chromium (as root), or set TXSIM_CHROMIUM`);
  process.exit(3);
}
const reportModule = new URL('../dist/bench/html-report.js', import.meta.url);
if (!existsSync(reportModule)) {
  console.error('bench-chart: dist/ is missing: run npm run build first');
  process.exit(3);
}
const { readBenchReports, renderBenchHtml } = await import(reportModule.href);

const dir = mkdtempSync(join(tmpdir(), 'txsim-bench-chart-'));
const html = join(dir, 'report.html');
writeFileSync(html, renderBenchHtml(readBenchReports(inputs)));
const context = await chromium.launchPersistentContext(join(dir, 'profile'), {
  executablePath: chromiumPath,
  headless: true,
  viewport: { width: 1200, height: 800 },
  deviceScaleFactor: 2,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--no-first-run',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(pathToFileURL(html).href);
  await page.locator('body[data-rendered="true"]').waitFor({ timeout: 15_000 });
  if (errors.length > 0) throw new Error(`the report failed to render: ${errors.join('; ')}`);
  await page.locator('#headline-box').screenshot({ path: out });
  console.log(`bench-chart: wrote ${out} (headline chart of ${inputs.length} report${inputs.length === 1 ? '' : 's'})`);
} finally {
  await context.close();
  rmSync(dir, { recursive: true, force: true });
}
