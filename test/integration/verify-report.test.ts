import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { expectValidOutput } from '../helpers/output-schema.js';
import { runTxsim, spawnProcess } from '../helpers/txsim.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
/** util-linux `script` runs a command on a pseudo-terminal: how a user at a terminal sees verify. */
const hasScript = existsSync('/usr/bin/script');

// verify as a user reads it: not OK while ids are still queued (exit 7, naming the queue no worker
// consumes), not OK when the broker cannot be read (exit 3, the books checked all the same), totals
// per currency, plurals, and a namespace that was never set up.

/** A port nothing listens on (bound, then closed): a broker that is not there. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
  await new Promise((r) => server.close(r));
  return port;
}

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

  it('does not say OK when the wait runs out: exit 7, a line saying what is pending and that no worker consumes it', async () => {
    const started = Date.now();
    const r = await runTxsim(['verify', '--run', runId, '--wait', '3'], ns.env);
    expect(r.code, r.stdout + r.stderr).toBe(7);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
    expect(r.stdout).not.toMatch(/^OK/m);
    const noWorker = `no worker is consuming ${ns.topology.processQueue}: start the workers (txsim worker)`;
    expect(r.stdout).toContain(`\nPENDING: no violation so far, but 200 ids of the run still queued: not verified yet; ${noWorker}\n`);
    expect(r.stdout).toMatch(/^still queued, e\.g\. /m);
    expect(r.stdout).not.toMatch(/^lost, e\.g\./m);
    expect(r.stderr.trim()).toBe(
      `txsim: not verified yet: 200 ids of the run still queued after waiting 3 s; ${noWorker}, then run verify again`,
    );
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
    expect(report.run).toMatchObject({ pending: 200, lost: 0, lostExamples: [], unconsumedQueues: [ns.topology.processQueue] });
    expect((report.run.queuedExamples as string[]).length).toBe(5);
    expect(report.broker).toEqual({ reachable: true, error: null });
    expectValidOutput('verify', report);
  });
});

describe('verify with the broker unreachable', () => {
  const PASSWORD = 'vb-s3cret-pw';
  let ns: TestNamespace;
  let port: number;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    ns = await createTestNamespace('vnobroker');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(3);
    port = await closedPort();
    // At info: the warning verify used to log instead of failing would show.
    env = { ...ns.env, LOG_LEVEL: 'info', AMQP_URL: `amqp://guest:${PASSWORD}@127.0.0.1:${port}` };
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  const unreachable = () => `rabbitmq unreachable at amqp://guest:***@127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`;

  it('checks the books, says the queues could not be read and where, never OK: exit 3', async () => {
    const r = await runTxsim(['verify'], env, 60_000);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    // The books were checked: the ledger table is there, every check ok.
    expect(r.stdout).toMatch(/^Ledger invariant/);
    expect(r.stdout).toMatch(/each transaction's entries sum to zero +ok/);
    expect(r.stdout).not.toMatch(/violation/);
    expect(r.stdout).toContain('Accounting statements (0 unsent in the outbox; the accounting queue could not be read)');
    expect(r.stdout).not.toMatch(/^OK/m);
    expect(r.stdout).not.toContain('every id is accounted for');
    expect(r.stdout.trim().split('\n').at(-1)).toBe(
      `INCOMPLETE: the books balance, but the queues could not be read (${unreachable()}): what is still queued or parked is not accounted for`,
    );
    // One line on stderr, as every unreachable service is reported; the password never.
    expect(r.stderr.trim().split('\n')).toEqual([`txsim: ${unreachable()}; the books were checked (no violation), the queues were not`]);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

  it('--json says so in `broker` and `status`', async () => {
    const r = await runTxsim(['verify', '--json'], env, 60_000);
    expect(r.code, r.stderr).toBe(3);
    const report = JSON.parse(r.stdout) as { checks: { violations: number }[] } & Record<string, unknown>;
    expect(report).toMatchObject({ ok: false, status: 'incomplete', broker: { reachable: false, error: unreachable() } });
    expect(report.checks.every((c) => c.violations === 0)).toBe(true);
    expectValidOutput('verify', report);
  });

  it('a violation is still a violation: exit 4', async () => {
    await ns.db('accounts').where('id', 2).increment('balance_minor', 1);
    try {
      const r = await runTxsim(['verify', '--json'], env, 60_000);
      expect(r.code, r.stderr).toBe(4);
      expect(JSON.parse(r.stdout)).toMatchObject({ status: 'failed', broker: { reachable: false } });
    } finally {
      await ns.db('accounts').where('id', 2).decrement('balance_minor', 1);
    }
  });

  it('--run needs the queues: exit 3 before any report, as before', async () => {
    const r = await runTxsim(['verify', '--run', randomUUID()], env, 60_000);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe(`txsim: ${unreachable()}`);
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
