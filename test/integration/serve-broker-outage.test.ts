import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transactionIdFor } from '../../src/domain/ids.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { createAdminToken, startServe, type ServeProcess } from '../helpers/serve.js';
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
      ['gen', String(count), '--via', serve.url, '--concurrency', '50', '--rate', '500', '--seed', 'outage', '--json'],
      { ...ns.env, TXSIM_TOKEN: token },
      180_000,
    );
    // Cut once a fifth is in, restore two seconds later (about a thousand requests at 500/s).
    const submitted = async () => Number((await ns.db('api_submissions').count<{ n: number }[]>({ n: '*' }))[0]!.n);
    await waitFor(async () => (await submitted()) >= count / 5, 60_000, 'a fifth of the requests', 50);
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
    // The API came back with the broker: far more accepted than the fifth sent before the cut.
    expect(summary.confirmed).toBeGreaterThan(count / 2);
    expect(summary.confirmed + summary.failed).toBe(count);

    const refusedIds = new Set(
      (await ns.db('run_refusals').where('run_id', summary.runId).select<{ transaction_id: string }[]>('transaction_id')).map(
        (r) => r.transaction_id,
      ),
    );
    expect(refusedIds.size).toBe(summary.failed);
    const accepted = Array.from({ length: count }, (_, i) => transactionIdFor(summary.runId, i)).filter((id) => !refusedIds.has(id));
    expect(accepted).toHaveLength(summary.confirmed);
    const appliedIds = async () =>
      new Set(
        (await ns.db('transactions').where({ run_id: summary.runId, status: 'applied' }).select<{ id: string }[]>('id')).map((r) => r.id),
      );
    let applied = new Set<string>();
    // A lost one would wait forever: give up after a minute and let the assertions below name it.
    await waitFor(
      async () => {
        applied = await appliedIds();
        return accepted.every((id) => applied.has(id));
      },
      60_000,
      'every 202 applied',
      500,
    ).catch(() => {});
    // Every id answered 202/200 is applied …
    expect(accepted.filter((id) => !applied.has(id))).toEqual([]);
    // … and every id without an outcome got a non-2xx or no answer.
    const notApplied = Array.from({ length: count }, (_, i) => transactionIdFor(summary.runId, i)).filter((id) => !applied.has(id));
    expect(notApplied.filter((id) => !refusedIds.has(id))).toEqual([]);
    expect(notApplied.length).toBeGreaterThan(0);

    const verify = await runTxsim(['verify', '--run', summary.runId, '--wait', '60', '--json'], ns.env, 120_000);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout) as { run: { lost: number; duplicated: number; refused: number; applied: number } };
    expect(report.run).toMatchObject({ lost: 0, duplicated: 0, refused: notApplied.length, applied: applied.size });
  });
});
