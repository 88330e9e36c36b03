import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { proxiesInFront, urlListOnPorts, type TcpProxy } from '../helpers/tcp-proxy.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';

// AMQP_URL may list several nodes. Two TCP proxies in front of the one real broker stand in for two
// nodes of a cluster: cutting the proxy a worker uses is, for that worker, its node going away. The
// broker keeps the queue, so what is measured here is the client's move to the next node.
describe('AMQP_URL with several nodes', () => {
  let ns: TestNamespace;
  const proxies: TcpProxy[] = [];
  const workers: WorkerProcess[] = [];

  /** AMQP_URL whose nodes are the given ports on this host, with the namespace's credentials. */
  const urlList = (ports: readonly number[]) => urlListOnPorts(ns.config.amqpUrl, ports);

  beforeAll(async () => {
    ns = await createTestNamespace('nodes');
    proxies.push(...(await proxiesInFront(ns.config.amqpUrl, 2, 5672)));
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(20);
  });

  afterAll(async () => {
    for (const w of workers) await w.kill();
    for (const p of proxies) await p.cut();
    await ns.cleanup();
  });

  it('gen and a worker skip a node that refuses connections and use the next', async () => {
    // Port 1: nothing listens there, so the first node of the list refuses every connect.
    const env = { ...ns.env, AMQP_URL: urlList([1, Number(new URL(ns.config.amqpUrl).port || 5672)]) };
    const worker = startWorker('n1', env, ['--connect-timeout', '20']);
    workers.push(worker);
    await waitForConsumers(ns, 1, 'the worker to consume', 20_000);
    const gen = await runTxsim(['gen', '200', '--seed', 'node-list-1', '--json'], env);
    expect(gen.code, gen.stderr).toBe(0);
    const verify = await runTxsim(['verify', '--run', JSON.parse(gen.stdout).runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    await worker.stop();
    // The password never shows, whichever node is named.
    expect(worker.output()).not.toMatch(/guest:guest@/);
  });

  it('a worker whose node goes away moves to the next node and applies everything exactly once', async () => {
    const [a, b] = proxies as [TcpProxy, TcpProxy];
    const env = { ...ns.env, AMQP_URL: urlList([a.port, b.port]), LOG_LEVEL: 'info' };
    const worker = startWorker('n2', env);
    workers.push(worker);
    await waitForConsumers(ns, 1, 'the worker to consume', 20_000);
    const connectedTo = (port: number) => new RegExp(`"node":"amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port}","msg":"amqp connected"`);
    // The log is written asynchronously: waited for, not read at once.
    await waitFor(() => connectedTo(a.port).test(worker.output()), 10_000, 'the worker to log its connection through node a');

    // gen publishes straight to the broker; while it runs, the worker's node (proxy a) goes away for good.
    const gen = runTxsim(['gen', '2000', '--seed', 'node-list-2', '--rate', '1000', '--json'], ns.env);
    await waitFor(async () => Number((await ns.db('transactions').count({ n: '*' }).first())?.n ?? 0) > 100, 20_000, 'the first outcomes');
    await a.cut();
    const r = await gen;
    expect(r.code, r.stderr).toBe(0);
    await waitFor(() => connectedTo(b.port).test(worker.output()), 30_000, 'the worker to reconnect through node b');
    const verify = await runTxsim(['verify', '--run', JSON.parse(r.stdout).runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout);
    expect(report.run).toMatchObject({ lost: 0, duplicated: 0 });
    expect(worker.child.exitCode, 'the worker is still running').toBeNull();
  });

  it('names every node, without passwords, when none answers', async () => {
    const r = await runTxsim(['gen', '10', '--seed', 'node-list-3'], { ...ns.env, AMQP_URL: urlList([1, 2]) });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/rabbitmq.*127\.0\.0\.1:1.*127\.0\.0\.1:2/);
    expect(r.stderr).not.toMatch(/guest:guest@/);
  });
});
