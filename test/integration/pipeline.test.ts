import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIdForSeed } from '../../src/domain/ids.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';

// The product's main job, end to end through real processes: gen → RabbitMQ → 3 workers → MariaDB,
// then `txsim verify`. Run in both apply modes: one commit per message and batched.
describe.each([
  { mode: 'one commit per message', workerArgs: ['--batch-size', '1', '--prefetch', '20'] },
  { mode: 'batched', workerArgs: ['--batch-size', '50', '--prefetch', '100'] },
])('pipeline ($mode)', ({ workerArgs }) => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];

  beforeAll(async () => {
    ns = await createTestNamespace('pipe');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(20);
    workers = ['w1', 'w2', 'w3'].map((id) => startWorker(id, ns.env, workerArgs));
    // All three consuming before the run: one up well before the others could take it all.
    await waitForConsumers(ns, 3, 'three consumers');
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await ns.cleanup();
  });

  it('gen → 3 workers → verify: every id accounted for, the books balance', async () => {
    const gen = await runTxsim(['gen', '600', '--seed', 'pipeline', '--invalid', '0.05', '--json'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const summary = JSON.parse(gen.stdout);
    expect(summary).toMatchObject({ runId: runIdForSeed('pipeline'), published: 600, confirmed: 600, returned: 0 });

    const verify = await runTxsim(['verify', '--run', summary.runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout);
    expect(report.ok).toBe(true);
    expect(report.run).toMatchObject({ expected: 600, lost: 0, duplicated: 0, pending: 0, parked: 0 });
    expect(report.run.applied + report.run.rejected).toBe(600);
    expect(report.run.rejectedByReason.invalid_message).toBeGreaterThan(0);
    for (const check of report.checks) expect(check.violations, check.name).toBe(0);

    // Independently of verify: the DB has one outcome per id and more than one worker did the work.
    const [[row]] = await ns.db.raw(`SELECT COUNT(*) AS n, COUNT(DISTINCT worker_id) AS workers FROM transactions WHERE run_id = ?`, [
      summary.runId,
    ]);
    expect(Number(row.n)).toBeGreaterThan(570); // poison without a usable run header is still recorded by id
    expect(Number(row.workers)).toBeGreaterThanOrEqual(2);
    const [[ledger]] = await ns.db.raw('SELECT COALESCE(SUM(amount_minor), 0) AS s FROM ledger_entries');
    expect(String(ledger.s)).toBe('0');
  });

  it('a second gen with the same seed changes nothing (duplicates are acknowledged without effect)', async () => {
    const before = await ns.db('accounts').where('kind', 'customer').orderBy('id').select('id', 'balance_minor');
    const gen = await runTxsim(['gen', '600', '--seed', 'pipeline', '--invalid', '0.05', '--json'], ns.env);
    expect(gen.code).toBe(0);
    await waitFor(
      async () =>
        await ns.amqp.createChannel().then(async (ch) => {
          const q = await ch.checkQueue(ns.topology.processQueue);
          await ch.close();
          return q.messageCount === 0;
        }),
      30_000,
      'process queue to drain',
    );
    const verify = await runTxsim(['verify', '--run', runIdForSeed('pipeline'), '--wait', '30', '--json'], ns.env);
    expect(verify.code, verify.stdout).toBe(0);
    const after = await ns.db('accounts').where('kind', 'customer').orderBy('id').select('id', 'balance_minor');
    expect(after).toEqual(before);
  });
});
