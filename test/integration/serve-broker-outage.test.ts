import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { createAdminToken, httpRunOutcomes, startServe, type ServeProcess } from '../helpers/serve.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { runTxsim, spawnTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { freePort } from './accounting-helpers.js';

/**
 * The monitoring service's load test through our API, with the broker cut mid-way: 2,500 POSTs from
 * 50 concurrent clients (`gen --via --concurrency 50`), and serve's connections to RabbitMQ (through a
 * TCP proxy) dropped for two seconds in the middle. Every id answered 202/200 must be applied once the
 * workers drain, and every id that was not applied must have got a non-2xx or no answer: nothing is
 * acknowledged and then lost.
 */
describe('POST /v1/transactions under load with the broker cut mid-way', () => {
  let ns: TestNamespace;
  let proxy: TcpProxy;
  let serve: ServeProcess;
  const workers: WorkerProcess[] = [];
  let token = '';

  beforeAll(async () => {
    ns = await createTestNamespace('serveout');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(50, { openingBalanceMinor: 1_000_000_000n });
    token = await createAdminToken(ns.env);
    // The workers reach the broker directly: only serve loses it.
    workers.push(startWorker('w-out-1', ns.env), startWorker('w-out-2', ns.env));
    const target = new URL(ns.config.amqpUrl);
    proxy = new TcpProxy(target.hostname, Number(target.port || 5672));
    proxy.port = await freePort();
    await proxy.listen();
    const amqpUrl = new URL(ns.config.amqpUrl);
    amqpUrl.port = String(proxy.port);
    serve = await startServe({ ...ns.env, AMQP_URL: amqpUrl.toString() }, ['--confirm-timeout', '2000']);
  });

  afterAll(async () => {
    await serve?.stop();
    await proxy?.cut();
    await Promise.all(workers.map((w) => w.stop()));
    await ns?.cleanup();
  });

  it('every 202 is applied, every id not applied got a non-2xx, verify --run clean', async () => {
    const count = 2_500;
    const gen = spawnTxsim(
      ['gen', String(count), '--via', serve.url, '--concurrency', '50', '--rate', '250', '--seed', 'outage', '--json'],
      { ...ns.env, TXSIM_TOKEN: token },
      180_000,
    );
    // Cut once a fifth is in, restore two seconds later (about 500 requests at 250/s); 6 s of requests follow.
    const submitted = async () => Number((await ns.db('api_submissions').count<{ n: number }[]>({ n: '*' }))[0]!.n);
    await waitFor(async () => (await submitted()) >= count / 5, 60_000, 'a fifth of the requests', 50);
    const submittedBeforeCut = await submitted();
    await proxy.cut();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await proxy.listen();
    const result = await gen.done;
    // Incomplete (exit 6): the requests of the outage were refused, as they should be.
    expect(result.code, result.stderr).toBe(6);
    const summary = JSON.parse(result.stdout) as {
      runId: string;
      published: number;
      confirmed: number;
      failed: number;
      http: { byStatus: Record<string, number>; noAnswer: number };
    };
    expect(summary.published).toBe(count);
    expect(summary.http.byStatus['503']).toBeGreaterThan(0);
    // The API came back with the broker: it accepted more than it had taken in before the cut.
    expect(summary.confirmed).toBeGreaterThan(submittedBeforeCut);
    expect(summary.confirmed + summary.failed).toBe(count);

    const outcomes = await httpRunOutcomes(ns.db, summary.runId, count);
    expect(outcomes.accepted).toHaveLength(summary.confirmed);
    // Every id answered 202/200 is applied …
    expect(outcomes.acceptedNotApplied).toEqual([]);
    // … and every id without an outcome got a non-2xx or no answer.
    expect(outcomes.notAppliedNotRefused).toEqual([]);
    expect(outcomes.refusedNotApplied).toBeGreaterThan(0);

    const verify = await runTxsim(['verify', '--run', summary.runId, '--wait', '60', '--json'], ns.env, 120_000);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout) as { run: { lost: number; duplicated: number; refused: number; applied: number } };
    expect(report.run).toMatchObject({ lost: 0, duplicated: 0, refused: outcomes.refusedNotApplied, applied: outcomes.applied.size });
  });
});
