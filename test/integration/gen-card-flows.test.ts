import { afterEach, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, spawnTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';
import { startTxsim, type TxsimProcess } from './accounting-helpers.js';
import { CARD_FLOW_GEN_ARGS } from './card-helpers.js';

// gen's card flows (authorization → capture / void / nothing, refunds) through real workers: the hold
// outcomes gen planned are the ones the ledger ends with, and verify --run accounts for every
// message, follow-ups included — also when a worker is killed mid-run.

interface GenFlowsSummary {
  runId: string;
  flows: {
    planned: { authorizations: number; captured: number; voided: number; expired: number; captures: number; refunds: number };
    published: number;
    confirmed: number;
  };
}

async function holdStates(ns: TestNamespace): Promise<Record<string, number>> {
  const rows: { state: string; n: number | string }[] = await ns.db('holds').select('state').count({ n: '*' }).groupBy('state');
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
}

/** Waits (up to 30 s) until no hold is open or partially captured: every flow has ended. */
async function waitForHoldsClosed(ns: TestNamespace): Promise<void> {
  await waitFor(
    async () => {
      const s = await holdStates(ns);
      return (s.open ?? 0) + (s.partially_captured ?? 0) === 0;
    },
    30_000,
    'every hold closed',
  );
}

describe('gen card flows', () => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];
  let accounting: TxsimProcess | null = null;

  afterEach(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await accounting?.stop();
    await ns.cleanup();
  });

  async function start(): Promise<void> {
    ns = await createTestNamespace('flows');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    // Rich accounts and no withdrawals: every authorization is applied, so every plan can play out.
    await ns.seed(30, { openingBalanceMinor: 100_000_000n });
    workers = ['f1', 'f2'].map((id) => startWorker(id, ns.env, ['--batch-size', '50', '--expire-every', '250ms']));
    accounting = startTxsim(['accounting', '--prefetch', '100'], ns.env);
    await waitForConsumers(ns, 2, 'two consumers', 20_000);
  }

  const genArgs = [...CARD_FLOW_GEN_ARGS, '--seed', 'flows-7', '--json'];

  async function verifyRun(runId: string): Promise<{ run: Record<string, unknown>; checks: { name: string; violations: number }[] }> {
    const verify = await runTxsim(['verify', '--run', runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    return JSON.parse(verify.stdout) as { run: Record<string, unknown>; checks: { name: string; violations: number }[] };
  }

  it('a seeded run through two workers ends as planned: captured, voided and expired holds, verify --run clean', async () => {
    await start();
    const gen = await runTxsim(['gen', '400', '--rate', '400', ...genArgs], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const summary = JSON.parse(gen.stdout) as GenFlowsSummary;
    const { planned } = summary.flows;
    expect(planned.authorizations).toBeGreaterThan(150);
    expect(summary.flows.confirmed).toBe(summary.flows.published);
    expect(summary.flows.published).toBe(planned.captures + planned.voided + planned.refunds);
    // The holds left open expire ~3 s after their authorization; the sweep then closes them.
    await waitFor(
      async () => {
        const s = await holdStates(ns);
        return (s.open ?? 0) + (s.partially_captured ?? 0) === 0 && (s.expired ?? 0) === planned.expired;
      },
      30_000,
      'every hold closed',
    );
    expect(await holdStates(ns)).toEqual({ captured: planned.captured, voided: planned.voided, expired: planned.expired });
    const report = await verifyRun(summary.runId);
    expect(report.run.rejectedByReason).toEqual({});
    expect(report.run).toMatchObject({
      expected: 400 + summary.flows.published,
      followUps: summary.flows.published,
      lost: 0,
      duplicated: 0,
      rejected: 0,
    });
    for (const check of report.checks) expect(check.violations, check.name).toBe(0);
    // verify shows the plan gen recorded beside what the run's holds did.
    expect(report.run.flows).toEqual({
      planned,
      holds: { captured: planned.captured, voided: planned.voided, expired: planned.expired },
      authorizationsRejected: 0,
    });
    // Same seed, new run: the same plan.
    const again = await runTxsim(['gen', '400', '--rate', '400', '--new-run', ...genArgs], ns.env);
    expect((JSON.parse(again.stdout) as GenFlowsSummary).flows.planned).toEqual(planned);
  });

  it('a run split over two gen instances: verify --run shows the sum of their plans, and the holds end as it says', async () => {
    await start();
    const args = [...CARD_FLOW_GEN_ARGS, '--seed', 'flows-split', '--rate', '300', '--json'];
    const gens = ['1/2', '2/2'].map((k) => spawnTxsim(['gen', '400', '--instance', k, ...args], ns.env));
    const halves: GenFlowsSummary[] = [];
    for (const g of gens) {
      const done = await g.done;
      expect(done.code, done.stderr).toBe(0);
      halves.push(JSON.parse(done.stdout) as GenFlowsSummary);
    }
    const [a, b] = halves.map((h) => h.flows.planned) as [GenFlowsSummary['flows']['planned'], GenFlowsSummary['flows']['planned']];
    expect(a.authorizations).toBeGreaterThan(50);
    expect(b.authorizations).toBeGreaterThan(50);
    const sum = Object.fromEntries(Object.entries(a).map(([k, n]) => [k, n + b[k as keyof typeof b]]));
    await waitForHoldsClosed(ns);
    expect(await holdStates(ns)).toEqual({ captured: sum.captured, voided: sum.voided, expired: sum.expired });
    const report = await verifyRun(halves[0]!.runId);
    expect(halves[1]!.runId).toBe(halves[0]!.runId);
    const published = halves[0]!.flows.published + halves[1]!.flows.published;
    expect(report.run).toMatchObject({ expected: 400 + published, followUps: published, lost: 0, duplicated: 0 });
    expect(report.run.flows).toEqual({
      planned: sum,
      holds: { captured: sum.captured, voided: sum.voided, expired: sum.expired },
      authorizationsRejected: 0,
    });
  });

  it('a worker killed between authorizations and their captures loses nothing', async () => {
    await start();
    const gen = spawnTxsim(['gen', '600', '--rate', '300', ...genArgs], ns.env);
    // Kill one worker (no cleanup at all) once authorizations are applied and captures are under way.
    await waitFor(
      async () => Number((await ns.db('holds').where('state', 'captured').count({ n: '*' }))[0]!.n) > 10,
      20_000,
      'captures under way',
    );
    await workers[0]!.kill();
    workers.push(startWorker('f3', ns.env, ['--batch-size', '50', '--expire-every', '250ms']));
    const done = await gen.done;
    expect(done.code, done.stderr).toBe(0);
    const summary = JSON.parse(done.stdout) as GenFlowsSummary;
    await waitForHoldsClosed(ns);
    expect(await holdStates(ns)).toEqual({
      captured: summary.flows.planned.captured,
      voided: summary.flows.planned.voided,
      expired: summary.flows.planned.expired,
    });
    const report = await verifyRun(summary.runId);
    expect(report.run).toMatchObject({ expected: 600 + summary.flows.published, lost: 0, duplicated: 0 });
    for (const check of report.checks) expect(check.violations, check.name).toBe(0);
  });
});
