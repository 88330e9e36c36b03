import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Page, WebSocketRoute } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WEB_DIR } from '../../src/serve/routes-dashboard.js';
import { queueRead, queueReadFailed, queueView, type QueueReading, type QueueState } from '../../src/watch/queue-depths.js';
import { emptyStats, receiveSnapshot, stopHearing, viewOf, type StatsState } from '../../src/watch/stats-aggregator.js';
import { snapshot } from '../unit/stats-fixtures.js';
import { launchBrowser, saveScreenshot, type Browser } from './browser.js';

// The dashboard page (web/, unchanged) in a real Chromium, fed hand-made frames over a routed
// WebSocket: no serve, broker or database, so the states that are hard to bring about for real —
// a management API that fails after answering, a worker gone, the server deaf to the workers —
// are rendered exactly. The frames' worker rows and queue part come from the same functions serve uses.

const ORIGIN = 'http://txsim.test';
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot'));
const START_MS = 1_000_000;

const reading: QueueReading = {
  source: 'management-api',
  atMs: START_MS,
  apiError: null,
  queues: [
    { name: 'd.transactions.process', role: 'process', exists: true, ready: 1234, unacked: 3, consumers: 2, inPerS: 61.5, outPerS: 60.2 },
    { name: 'd.errors', role: 'errors', exists: true, ready: 88, unacked: 0, consumers: 0, inPerS: 3.1, outPerS: 0 },
  ],
};

/** A frame as DashboardStats sends it, from an aggregator state and a queue state. */
function frameOf(stats: StatsState, queues: QueueState, nowMs: number) {
  const view = viewOf(stats, nowMs);
  return {
    type: 'frame',
    atMs: nowMs,
    point: { atMs: nowMs, appliedPerS: 0, rejectedPerS: 0, retriedPerS: 0, processedPerS: 0, p50Ms: null, p99Ms: null, maxMs: null },
    workers: view.rows.map(({ history: _history, ...row }) => row),
    totals: view.totals,
    rejectReasons: view.rejectReasons,
    invalidSnapshots: 0,
    ...queueView(queues, nowMs),
    broker: { state: 'connected', detail: null },
  };
}

/** w1 active; w2 said goodbye (gone), both holding 7 deliveries in their last snapshot. */
function workers(): StatsState {
  let state = receiveSnapshot(emptyStats(), snapshot('w1', { inFlight: 7, prefetchCount: 50 }), START_MS);
  state = receiveSnapshot(state, snapshot('w2', { inFlight: 7, prefetchCount: 50, stopping: true }), START_MS);
  return state;
}

function inPage<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate<T>(expression);
}

interface Row {
  status: string;
  unheard: string | null;
  statusText: string;
  inFlight: string;
  p50: string;
  p99: string;
}

const rowOf = (page: Page, id: string) =>
  inPage<Row>(
    page,
    `(() => {
      const tr = document.querySelector('#workers tbody tr[data-worker-id="${id}"]');
      return {
        status: tr.dataset.status,
        unheard: tr.dataset.unheard ?? null,
        statusText: tr.querySelector('.status').textContent,
        inFlight: tr.querySelector('.in-flight')?.textContent ?? tr.children[8].textContent,
        p50: tr.children[9].textContent,
        p99: tr.children[10].textContent,
      };
    })()`,
  );

describe('the dashboard page rendering frames', () => {
  let browser: Browser;
  let page: Page;
  let socket: WebSocketRoute | null = null;
  let framesSent = 0;

  /** Sends a frame and waits until the page has rendered it. */
  async function show(frame: ReturnType<typeof frameOf>): Promise<void> {
    socket!.send(JSON.stringify(frame));
    framesSent++;
    const expected = framesSent;
    await page.waitForFunction(`window.txsimDashboard.frames >= ${expected}`, undefined, { timeout: 5_000 });
  }

  beforeAll(async () => {
    browser = await launchBrowser();
    page = await browser.newPage();
    // The page's files from web/ and uPlot's package, as serve sends them; the session says --no-auth.
    await page.route(`${ORIGIN}/**`, async (route) => {
      const path = new URL(route.request().url()).pathname;
      const files: Record<string, [string, string]> = {
        '/': [join(WEB_DIR, 'index.html'), 'text/html'],
        '/web/dashboard.js': [join(WEB_DIR, 'dashboard.js'), 'text/javascript'],
        '/web/dashboard-view.js': [join(WEB_DIR, 'dashboard-view.js'), 'text/javascript'],
        '/web/dashboard.css': [join(WEB_DIR, 'dashboard.css'), 'text/css'],
        '/vendor/uPlot.esm.js': [join(UPLOT_DIR, 'uPlot.esm.js'), 'text/javascript'],
        '/vendor/uPlot.min.css': [join(UPLOT_DIR, 'uPlot.min.css'), 'text/css'],
      };
      if (path === '/web/currency-exponents.js')
        return route.fulfill({ contentType: 'text/javascript', body: 'export const EXPONENTS = { JPY: 0 };' });
      if (path === '/v1/dashboard/session')
        return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ namespace: 'd', noAuth: true, tickMs: 1000 }) });
      const file = files[path];
      if (!file) return route.fulfill({ status: 404, body: 'not found' });
      return route.fulfill({ contentType: file[1], body: await readFile(file[0]) });
    });
    await page.routeWebSocket(`ws://txsim.test/v1/dashboard/ws`, (ws) => {
      socket = ws;
      ws.send(JSON.stringify({ type: 'hello', namespace: 'd', history: [], frame: null, feedBatchMax: 200 }));
    });
    await page.goto(`${ORIGIN}/`);
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
  });

  afterEach(async (context) => {
    if (context.task.result?.state === 'fail') await saveScreenshot(page, `dashboard-frames ${context.task.name}`);
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('shows - for a gone worker’s in-flight and latency, and keeps a live worker’s', async () => {
    await show(frameOf(workers(), queueRead(reading, START_MS), START_MS + 500));
    expect(await rowOf(page, 'w1')).toMatchObject({ status: 'active', statusText: 'active', inFlight: '7/50', p50: '12', p99: '40' });
    expect(await rowOf(page, 'w2')).toMatchObject({ status: 'gone', statusText: 'gone', inFlight: '–', p50: '–', p99: '–' });
  });

  it('marks the queue depths stale, with their age and the error, and shows no rates, when the latest read failed', async () => {
    await show(frameOf(workers(), queueRead(reading, START_MS), START_MS + 500));
    expect(await page.locator('#queues-source').textContent()).toBe('management API');
    expect(await page.locator('#queues tbody tr[data-role="process"]').textContent()).toContain('61.5');

    const failed = queueReadFailed(queueRead(reading, START_MS), 'rabbitmq-management unreachable: ECONNREFUSED');
    await show(frameOf(workers(), failed, START_MS + 20_000));
    expect(await page.locator('#queues-source').textContent()).toBe(
      'stale: last read 20 s ago: rabbitmq-management unreachable: ECONNREFUSED',
    );
    expect(await page.locator('#queues').getAttribute('data-stale')).toBe('true');
    const cells = await inPage<string[]>(
      page,
      `[...document.querySelectorAll('#queues tbody tr[data-role="process"] td')].map((td) => td.textContent)`,
    );
    // ready, unacked and consumers as last read; in/s and out/s unknown.
    expect(cells).toEqual(['process', '1,234', '3', '–', '–', '2']);

    await show(frameOf(workers(), queueRead(reading, START_MS + 21_000), START_MS + 21_000));
    expect(await page.locator('#queues-source').textContent()).toBe('management API');
    expect(await page.locator('#queues').getAttribute('data-stale')).toBe('false');
  });

  it('shows ? for every worker while the server cannot hear them, and no total rate', async () => {
    const deaf = stopHearing(workers(), START_MS + 1_000);
    await show(frameOf(deaf, queueRead(reading, START_MS + 30_000), START_MS + 30_000));
    expect(await rowOf(page, 'w1')).toMatchObject({ status: 'active', unheard: 'true', statusText: '?', inFlight: '–', p99: '–' });
    expect(await page.locator('#workers-total .rate').textContent()).toBe('–');
    expect(await page.locator('#kpi-rate').textContent()).toBe('–');
    expect(browser.errors).toEqual([]);
  });
});
