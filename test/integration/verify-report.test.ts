import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, spawnProcess } from '../helpers/txsim.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
/** util-linux `script` runs a command on a pseudo-terminal: how a user at a terminal sees verify. */
const hasScript = existsSync('/usr/bin/script');

// verify as a user reads it: not OK while ids are still queued (exit 7), totals per currency,
// plurals, and a namespace that was never set up.

describe('verify with ids still queued and no worker', () => {
  let ns: TestNamespace;
  let runId: string;

  beforeAll(async () => {
    ns = await createTestNamespace('vpend');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(20);
    const gen = await runTxsim(['gen', '200', '--seed', 'vpend', '--json'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    runId = (JSON.parse(gen.stdout) as { runId: string }).runId;
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  it('does not say OK when the wait runs out: exit 7, a line saying what is pending, examples labelled still queued', async () => {
    const started = Date.now();
    const r = await runTxsim(['verify', '--run', runId, '--wait', '3'], ns.env);
    expect(r.code, r.stdout + r.stderr).toBe(7);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
    expect(r.stdout).not.toMatch(/^OK/m);
    expect(r.stdout).toMatch(/^PENDING: no violation so far, but 200 ids of the run still queued/m);
    expect(r.stdout).toMatch(/^still queued, e\.g\. /m);
    expect(r.stdout).not.toMatch(/^lost, e\.g\./m);
    expect(r.stderr).toMatch(/not verified yet: 200 ids of the run still queued after waiting 3 s/);
    // Not a terminal: no waiting line, only the one-line error.
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it.skipIf(!hasScript)('on a terminal, a waiting line shows the pending count while it waits', async () => {
    const command = `${process.execPath} ${CLI} verify --run ${runId} --wait 3`;
    const r = await spawnProcess('/usr/bin/script', ['-qec', command, '/dev/null'], { env: ns.env, timeoutMs: 60_000 }).done;
    expect(r.stdout).toMatch(/waiting: 200 ids of the run still queued \(\d+ s left\)/);
    expect(r.stdout).toMatch(/PENDING: no violation so far/);
  });

  it('--json carries the pending state', async () => {
    const r = await runTxsim(['verify', '--run', runId, '--json'], ns.env);
    expect(r.code).toBe(7);
    const report = JSON.parse(r.stdout) as Record<string, unknown> & { run: Record<string, unknown> };
    expect(report).toMatchObject({ ok: false, status: 'pending', pending: { runIds: 200, statementLines: 0 } });
    expect(report.run).toMatchObject({ pending: 200, lost: 0, lostExamples: [] });
    expect((report.run.queuedExamples as string[]).length).toBe(5);
  });
});

describe('verify totals and wording', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('vtot');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(2, { firstId: 1, currency: 'EUR', openingBalanceMinor: 10_000n });
    await ns.seed(1, { firstId: 3, currency: 'USD', openingBalanceMinor: 2_500n });
    await ns.seed(1, { firstId: 4, currency: 'GBP', openingBalanceMinor: 700n });
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  it('totals per currency, never one sum across currencies', async () => {
    const r = await runTxsim(['verify'], ns.env);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const line = r.stdout.split('\n').find((l) => l.includes('customer accounts holding'))!;
    expect(line).toMatch(/^4 customer accounts holding /);
    expect(line).toMatch(/200\.00 EUR in 2 EUR accounts/);
    expect(line).toMatch(/25\.00 USD in 1 USD account\b/);
    expect(line).toMatch(/7\.00 GBP in 1 GBP account\b/);
    expect(line).not.toMatch(/232\.00/);
    const json = JSON.parse((await runTxsim(['verify', '--json'], ns.env)).stdout) as { totals: Record<string, unknown> };
    expect(json.totals.byCurrency).toEqual([
      { currency: 'EUR', customerAccounts: 2, customerBalanceMinor: '20000' },
      { currency: 'GBP', customerAccounts: 1, customerBalanceMinor: '700' },
      { currency: 'USD', customerAccounts: 1, customerBalanceMinor: '2500' },
    ]);
    expect(json.totals).not.toHaveProperty('customerBalanceMinor');
  });

  it('one violation reads "1 violation"', async () => {
    // A balance off its entries by one cent: exactly one row breaks balance_equals_entries.
    await ns.db('accounts').where('id', 4).increment('balance_minor', 1);
    try {
      const r = await runTxsim(['verify'], ns.env);
      expect(r.code).toBe(4);
      expect(r.stdout).toMatch(/\b1 violation\b/);
      expect(r.stdout).not.toMatch(/VIOLATIONS/);
    } finally {
      await ns.db('accounts').where('id', 4).decrement('balance_minor', 1);
    }
  });
});

describe('a namespace that was never set up', () => {
  it('says the database is missing and to run txsim setup; the URL is not doubled', async () => {
    const name = `never_${randomBytes(4).toString('hex')}`;
    const server = new URL(loadConfig(process.env, {}).databaseUrl);
    server.pathname = '';
    const bare: NodeJS.ProcessEnv = { ...process.env, TXSIM_NAMESPACE: name, DATABASE_URL: server.toString() };
    // The database named by the namespace, and by the URL's path (where the path used to be printed twice).
    for (const env of [bare, { ...bare, DATABASE_URL: `${server.toString().replace(/\/$/, '')}/${name}` }]) {
      const r = await runTxsim(['verify'], env, 30_000);
      expect(r.code, r.stderr).toBe(5);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(`database ${name} does not exist on mysql://[^ /]+:\\d+ \\(the server answered\\): run \`txsim setup\``),
      );
      expect(lines[0]).not.toMatch(/unreachable/);
      expect(lines[0]).not.toContain(`/${name}`);
    }
  });
});
