import { createServer } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, spawnTxsim, startWorker, waitFor, type RunResult, type WorkerProcess } from '../helpers/txsim.js';
import { launchBrowser, saveScreenshot, type Browser } from './browser.js';

// The dashboard of `txsim serve` in a real Chromium, against a real serve, real workers and a real
// `gen` run on the real RabbitMQ and database.

interface Serve {
  readonly child: ReturnType<typeof spawnTxsim>['child'];
  readonly done: Promise<RunResult>;
  output(): string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Runs a JavaScript expression in the page. Page code is a string: the test program has Node's
 * types, not the DOM's, and the browser never sees TypeScript.
 */
function inPage<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate<T>(expression);
}

interface WorkersTable {
  readonly rows: { id: string; status: string; rate: string | null; applied: string | null }[];
  readonly totalRate: string | null;
  readonly totalApplied: string | null;
}

/** What the page shows of the workers table, read in one go (one frame renders it all at once). */
function workersTable(page: Page): Promise<WorkersTable> {
  return inPage(
    page,
    `({
      rows: [...document.querySelectorAll('#workers tbody tr[data-worker-id]')].map((tr) => ({
        id: tr.dataset.workerId,
        status: tr.dataset.status,
        rate: tr.querySelector('.rate').textContent,
        applied: tr.querySelector('.applied').textContent,
      })),
      totalRate: document.querySelector('#workers-total .rate')?.textContent ?? null,
      totalApplied: document.querySelector('#workers-total .applied')?.textContent ?? null,
    })`,
  );
}

const frames = (page: Page) => inPage<number>(page, 'window.txsimDashboard.frames');

const number = (text: string | null) => (text === null || text === '–' ? NaN : Number(text.replace(/,/g, '')));

describe('the dashboard in Chromium', () => {
  let ns: TestNamespace;
  let browser: Browser;
  let page: Page;
  let port: number;
  let url: string;
  let admin: string;
  let serve: Serve | null = null;
  const workers: WorkerProcess[] = [];
  let gen: ReturnType<typeof spawnTxsim> | null = null;

  async function startServe(): Promise<Serve> {
    // A short heartbeat: a revoked token's socket is closed at the next one.
    const started = spawnTxsim(['serve', '--port', String(port), '--heartbeat', '1000'], ns.env, 600_000);
    let out = '';
    started.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    started.child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes('listening on'), 30_000, `serve to listen: ${out}`);
    return { child: started.child, done: started.done, output: () => out };
  }

  async function stopServe(): Promise<void> {
    if (!serve) return;
    serve.child.kill('SIGTERM');
    await serve.done;
    serve = null;
  }

  async function post(body: Record<string, unknown>): Promise<{ id: string; status: number }> {
    const response = await fetch(`${url}/v1/transactions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { id: ((await response.json()) as { id: string }).id, status: response.status };
  }

  beforeAll(async () => {
    ns = await createTestNamespace('dash');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(20);
    const created = await runTxsim(['tokens', 'create', '--admin', '--json'], ns.env);
    expect(created.code, created.stderr).toBe(0);
    admin = (JSON.parse(created.stdout) as { token: string }).token;
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    serve = await startServe();
    browser = await launchBrowser();
    page = await browser.newPage();
  });

  afterEach(async (context) => {
    if (context.task.result?.state === 'fail') {
      const path = await saveScreenshot(page, `dashboard ${context.task.name}`);
      if (path) console.error(`screenshot of the failed test: ${path}\nserve output:\n${serve?.output() ?? '(not running)'}`);
    }
  });

  afterAll(async () => {
    gen?.child.kill('SIGTERM');
    await gen?.done.catch(() => {});
    await Promise.all(workers.map((w) => w.kill()));
    await browser?.close();
    await stopServe();
    await ns?.cleanup();
  });

  it('refuses a wrong token and a non-admin token, then connects with the admin token', async () => {
    await page.goto(`${url}/#token=txsim_0000000000000000_wrongwrongwrongwrongwrongwrongwrongwrongwro`);
    await page.locator('#login[open]').waitFor({ timeout: 10_000 });
    expect(await page.locator('#login-msg').textContent()).toContain('refused');
    expect(await page.locator('#conn').getAttribute('data-state')).toBe('refused');
    // The WebSocket itself refuses it too, before the upgrade: the page's check is not the only lock.
    expect((await fetch(`${url}/v1/dashboard/session?token=nope`)).status).toBe(401);

    const account = await runTxsim(['tokens', 'create', '--account', '1', '--json'], ns.env);
    const accountToken = (JSON.parse(account.stdout) as { token: string }).token;
    await page.fill('#token', accountToken);
    await page.click('#login-submit');
    await page.locator('#login[open]').waitFor({ timeout: 10_000 });
    await waitFor(async () => ((await page.locator('#login-msg').textContent()) ?? '').includes('not an admin token'), 10_000, 'the 403');

    await page.fill('#token', admin);
    await page.click('#login-submit');
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('#login').getAttribute('open')).toBeNull();
    expect(await page.locator('#namespace').textContent()).toContain(ns.name);
  });

  it('shows the workers of a real run with live rates that add up to the total', async () => {
    workers.push(startWorker('w1', ns.env), startWorker('w2', ns.env));
    gen = spawnTxsim(['gen', '200000', '--rate', '40', '--seed', 'dash', '--accounts', '1-15', '--no-progress'], ns.env, 600_000);
    await waitFor(
      async () => {
        const seen = await workersTable(page);
        return seen.rows.length === 2 && seen.rows.every((r) => r.status === 'active' && number(r.rate) > 0);
      },
      30_000,
      'both workers active with a rate',
      250,
    );
    // The same frame, several times over: the rows' rates and applied counts add up to the total row.
    for (let i = 0; i < 3; i++) {
      const t = await workersTable(page);
      expect(t.rows.map((r) => r.id)).toEqual(['w1', 'w2']);
      const rates = t.rows.map((r) => number(r.rate));
      expect(Math.round(rates.reduce((a, b) => a + b, 0) * 10) / 10).toBe(number(t.totalRate));
      expect(t.rows.map((r) => number(r.applied)).reduce((a, b) => a + b, 0)).toBe(number(t.totalApplied));
      expect(number(t.totalRate)).toBeGreaterThan(0);
      await page.waitForTimeout(1_100);
    }
    // The throughput chart draws applied/s from real deltas; the queues and KPIs are filled in.
    await waitFor(
      () => inPage<boolean>(page, 'window.txsimDashboard.lastFrame.point.appliedPerS > 0'),
      10_000,
      'a frame with applied/s above 0',
    );
    expect(await page.locator('#chart-throughput canvas').count()).toBe(1);
    expect(await page.locator('#chart-latency canvas').count()).toBe(1);
    await page.locator('#queues tbody tr[data-role="process"]').waitFor({ timeout: 10_000 });
    expect(number(await page.locator('#kpi-applied').textContent())).toBeGreaterThan(0);
    await page.locator('#recent tbody tr[data-outcome="applied"]').first().waitFor({ timeout: 10_000 });
  });

  it('lists a transaction posted through the API, opens its timeline, and pauses the list', async () => {
    const posted = await post({ type: 'deposit', accountId: 7, amountMinor: 4321, currency: 'EUR' });
    expect(posted.status).toBe(202);
    const row = page.locator(`#recent tbody tr[data-id="${posted.id}"]`);
    await row.waitFor({ timeout: 15_000 });
    await page.locator(`#recent tbody tr[data-id="${posted.id}"][data-outcome="applied"]`).waitFor({ timeout: 15_000 });
    expect(await row.textContent()).toContain('43.21 EUR');
    await row.click();
    await page.locator(`#tx-detail[data-id="${posted.id}"][data-status="applied"]`).waitFor({ timeout: 10_000 });
    const states = await inPage<string[]>(page, `[...document.querySelectorAll('#tx-timeline li')].map((li) => li.dataset.state)`);
    expect(states).toEqual(['accepted', 'queued', 'applied']);

    await page.click('#pause');
    const held = await post({ type: 'deposit', accountId: 8, amountMinor: 1234, currency: 'EUR' });
    await waitFor(async () => ((await page.locator('#recent-held').textContent()) ?? '').includes('new'), 10_000, 'the held count');
    await page.waitForTimeout(2_000);
    expect(await page.locator(`#recent tbody tr[data-id="${held.id}"]`).count()).toBe(0);
    await page.click('#pause');
    await page.locator(`#recent tbody tr[data-id="${held.id}"]`).waitFor({ timeout: 10_000 });
  });

  it('shows an account: balance, statement and its live feed', async () => {
    // Account 18 is outside gen's accounts (1-15): only this test moves its balance.
    await page.fill('#account-id', '18');
    await page.click('#account-form button');
    await page.locator('#account-balance').waitFor({ timeout: 10_000 });
    expect(await page.locator('#account-balance').textContent()).toBe('1,000.00 EUR');
    await page.locator('#statement tbody tr').first().waitFor({ timeout: 5_000 });
    const posted = await post({ type: 'deposit', accountId: 18, amountMinor: 550, currency: 'EUR' });
    await page.locator(`#account-live li[data-id="${posted.id}"][data-event="applied"]`).waitFor({ timeout: 15_000 });
    // The balance follows the live feed: the balance after this deposit, as the API reads it.
    const view = (await (await fetch(`${url}/v1/transactions/${posted.id}`, { headers: { authorization: `Bearer ${admin}` } })).json()) as {
      balanceAfterMinor: string;
    };
    expect(view.balanceAfterMinor).toBe('100550');
    await waitFor(async () => (await page.locator('#account-balance').textContent()) === '1,005.50 EUR', 5_000, 'the new balance');
  });

  it("formats money with each currency's ISO 4217 decimals, from the server's table", async () => {
    // As text, so that the page's own import() runs (vitest would rewrite one in a function).
    const formatted = await page.evaluate<string[]>(`(async () => {
      const view = await import('/web/dashboard-view.js');
      return ['1234:EUR', '1234:JPY', '1234:KWD', '500:IQD', '12:CLF'].map((c) => view.formatMinor(...c.split(':')));
    })()`);
    expect(formatted).toEqual(['12.34 EUR', '1,234 JPY', '1.234 KWD', '0.500 IQD', '0.0012 CLF']);
  });

  it('is readable on a narrow window: nothing wider than the screen', async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    await page.waitForTimeout(500);
    const { scrollWidth, innerWidth } = await inPage<{ scrollWidth: number; innerWidth: number }>(
      page,
      '({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })',
    );
    expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('turns a killed worker stale, then gone', async () => {
    await workers[1]!.kill();
    const statusOf = async () => (await workersTable(page)).rows.find((r) => r.id === 'w2')?.status;
    await waitFor(async () => (await statusOf()) === 'stale', 10_000, 'w2 stale', 250);
    await waitFor(async () => (await statusOf()) === 'gone', 25_000, 'w2 gone', 250);
    expect((await workersTable(page)).rows.find((r) => r.id === 'w1')?.status).toBe('active');
  });

  it('shows the lost connection and recovers by itself after serve restarts', async () => {
    const framesBefore = await frames(page);
    await stopServe();
    await page.locator('#conn[data-state="down"]').waitFor({ timeout: 10_000 });
    await page.locator('#banner:not([hidden])').waitFor({ timeout: 5_000 });
    expect(await page.locator('#banner').textContent()).toContain('Reconnecting');
    serve = await startServe();
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 20_000 });
    expect(await page.locator('#banner').isHidden()).toBe(true);
    await waitFor(async () => (await frames(page)) > framesBefore + 2, 10_000, 'frames after the restart');
    await waitFor(async () => (await workersTable(page)).rows.some((r) => r.id === 'w1' && r.status === 'active'), 10_000, 'w1 again');
    expect(browser.errors.filter((e) => !e.includes('WebSocket') && !e.includes('Failed to load resource'))).toEqual([]);
  });

  it('asks for a token again when its own is revoked while it is connected', async () => {
    const created = await runTxsim(['tokens', 'create', '--admin', '--json'], ns.env);
    const revocable = JSON.parse(created.stdout) as { id: string; token: string };
    await page.goto(`${url}/?again#token=${revocable.token}`); // a new load: the hash alone would not reload the page
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
    expect((await runTxsim(['tokens', 'revoke', revocable.id], ns.env)).code).toBe(0);
    await page.locator('#login[open]').waitFor({ timeout: 15_000 });
    expect(await page.locator('#login-msg').textContent()).toContain('token revoked');
    expect(await page.locator('#conn').getAttribute('data-state')).toBe('refused');
  });
});
