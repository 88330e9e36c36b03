import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BenchReport } from '../../src/bench/bench.js';
import { ceilingQueueOf } from '../../src/bench/ceiling.js';
import { benchConfig } from '../../src/commands/bench.js';
import { existingCeilingTables } from '../../src/db/ceiling.js';
import { createDatabase } from '../../src/db/knex.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim } from '../helpers/txsim.js';
import { removeBenchNamespace } from './bench-helpers.js';
import { expectValidOutput } from '../helpers/output-schema.js';

// ajv-formats is CommonJS: under NodeNext its default import is typed as the module object.

/**
 * `txsim bench --ceiling` and the CPU budget against the real services, at a size that takes
 * seconds: the ceiling run happens, its figures are in the report (matching the output schema), and
 * it leaves nothing behind. No figure is judged for speed.
 */
describe('txsim bench --ceiling, CPU per transaction', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('benchceil');
  });

  afterAll(async () => {
    await removeBenchNamespace(ns);
  });

  it('reports a ceiling and the efficiency, CPU µs per applied tx that add up, the idle share; its queue and tables are gone after', async () => {
    const result = await runTxsim(
      ['bench', '--seed', 'it', '--workers', '2', '--count', '1500', '--accounts', '200', '--mix', 'v1', '--ceiling', '--json'],
      ns.env,
      240_000,
    );
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as BenchReport;
    expectValidOutput('bench', report);
    expect(report).toMatchObject({ published: 1500, outcomes: 1500, applied: 1500, verifyOk: true });

    // The ceiling: the same number of messages, by as many consumers as workers.
    expect(report.ceilingRun).toMatchObject({ messages: 1500, consumers: 2 });
    expect(report.ceiling).toBeGreaterThan(0);
    expect(report.ceiling).toBe(report.ceilingRun!.txPerS);
    expect(report.ceilingRun!.messageBytesAvg).toBeGreaterThan(50);
    // The ceiling's own CPU budget: the consumers and the publisher measured, the total their sum.
    const ceilingCpu = report.ceilingRun!.cpuUsPerTx;
    expect(ceilingCpu.components.consumers).toBeGreaterThan(0);
    expect(ceilingCpu.components.gen).toBeGreaterThan(0);
    const ceilingSum = Object.values(ceilingCpu.components).reduce<number>((a, us) => a + (us ?? 0), 0);
    expect(ceilingCpu.total).toBe(Math.round(ceilingSum * 10) / 10);
    expect(report.efficiency).toBe(Math.round((report.endToEndRatePerS / report.ceiling!) * 1000) / 1000);

    // CPU per applied transaction: measured components are positive, the relay is inside the workers,
    // and the total is the sum of what is shown.
    const { components, total } = report.cpuUsPerAppliedTx;
    expect(Object.keys(components)).toEqual(expect.arrayContaining(['workers', 'broker', 'database', 'gen', 'relay']));
    expect(components.relay).toBeNull();
    expect(components.workers).toBeGreaterThan(0);
    expect(components.gen).toBeGreaterThan(0);
    const sum = Object.values(components).reduce<number>((a, us) => a + (us ?? 0), 0);
    expect(total).toBe(Math.round(sum * 10) / 10);
    expect(report.idleShare).toBeGreaterThanOrEqual(0);
    expect(report.idleShare).toBeLessThanOrEqual(1);
    expect(report.seconds.some((s) => typeof s.idlePct === 'number')).toBe(true);

    // Nothing of the ceiling run is left: its queue is deleted, its tables dropped.
    const config = benchConfig(ns.config);
    const connection = await amqp.connect(config.amqpUrl);
    try {
      const channel = await connection.createChannel();
      channel.on('error', () => {}); // the 404 below closes the channel: expected
      const gone = await channel.checkQueue(ceilingQueueOf(config.namespace)).then(
        () => false,
        (err: { code?: number }) => err.code === 404,
      );
      expect(gone).toBe(true);
    } finally {
      await connection.close().catch(() => {});
    }
    const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 1 });
    try {
      expect(await existingCeilingTables(db)).toEqual([]);
      // The run's own tables are untouched by it.
      const [[row]] = (await db.raw('SELECT COUNT(*) AS n FROM transactions WHERE run_id = ?', [report.runId])) as [[{ n: number }]];
      expect(Number(row.n)).toBe(1500);
    } finally {
      await db.destroy();
    }
  });
});
