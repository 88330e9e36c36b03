import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, TEST_RETRY_DELAYS, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, startWorker, waitFor, queueState, type WorkerProcess } from '../helpers/txsim.js';

/**
 * `setup --retry-delays` while workers consume with other delays: the workers keep retrying on the
 * delay queues they declared, so setup warns (stderr, and `warnings` in --json) instead of
 * suggesting the new delays took effect.
 */
describe('txsim setup --retry-delays with workers running', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;

  beforeAll(async () => {
    ns = await createTestNamespace('setupdl');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    worker = startWorker('w-delays', ns.env);
    await waitFor(async () => (await queueState(ns.amqp, ns.topology.processQueue)).consumerCount > 0, 30_000, 'the worker to consume');
  });

  afterAll(async () => {
    await worker?.stop();
    // The queues of the other delays are not in the namespace's topology: remove them here.
    const channel = await ns.amqp.createChannel();
    for (const name of [`${ns.name}.retry.2000ms`, `${ns.name}.retry.9000ms`]) await channel.deleteQueue(name).catch(() => {});
    await channel.close().catch(() => {});
    await ns?.cleanup();
  });

  it('the same delays: no warning', async () => {
    const r = await runTxsim(['setup', '--json'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ workersConsuming: 1, otherRetryDelaysMs: [], warnings: [] });
    expect(r.stderr).not.toContain('warning');
  });

  it('other delays: warns that the running workers keep theirs', async () => {
    const r = await runTxsim(['setup', '--retry-delays', '2000,9000', '--json'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { warnings: string[]; otherRetryDelaysMs: number[]; retryDelaysMs: number[] };
    expect(report.retryDelaysMs).toEqual([2000, 9000]);
    expect(report.otherRetryDelaysMs).toEqual(TEST_RETRY_DELAYS.split(',').map(Number));
    expect(report.warnings).toHaveLength(1);
    expect(report.warnings[0]).toContain(`other delays (${TEST_RETRY_DELAYS} ms) than --retry-delays 2000,9000`);
    expect(r.stderr).toContain('txsim: warning: 1 consumer on');
    const text = await runTxsim(['setup', '--retry-delays', '2000,9000'], ns.env);
    expect(text.stderr).toContain('restart them with --retry-delays 2000,9000');
  });
});
