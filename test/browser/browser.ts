import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium package: the tests drive it and never download a browser of their own. */
export const CHROMIUM_PATH = process.env.TXSIM_CHROMIUM ?? '/usr/bin/chromium';

/** Where a failing test leaves its screenshot (git-ignored). */
export const ARTIFACTS_DIR = new URL('../../test-artifacts/', import.meta.url).pathname;

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  readonly context: BrowserContext;
  /** Console errors and uncaught page errors seen so far, in order. */
  readonly errors: string[];
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Starts headless Chromium with a fresh profile. Missing Chromium is a failure, not a skip: CI must
 * run these tests, so the message says how to install it.
 */
export async function launchBrowser(viewport = { width: 1280, height: 800 }): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: the browser tests need it. Install Debian's package as root ` +
        `(\`apt-get install -y chromium\`, which scripts/browser.sh does), or point TXSIM_CHROMIUM at a Chromium binary.`,
    );
  }
  const profile = mkdtempSync(join(tmpdir(), 'txsim-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM_PATH, headless: true, args: ARGS, viewport });
  const errors: string[] = [];
  const watch = (page: Page) => {
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  };
  context.on('page', watch);
  return {
    context,
    errors,
    newPage: () => context.newPage(),
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a full-page screenshot of `page` under test-artifacts/ (called when a test failed). */
export async function saveScreenshot(page: Page | null | undefined, name: string): Promise<string | null> {
  if (!page || page.isClosed()) return null;
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = join(ARTIFACTS_DIR, `${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 100)}.png`);
  await page.screenshot({ path, fullPage: true }).catch(() => {});
  return path;
}
