import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { proxiesInFront, urlListOnPorts, type TcpProxy } from '../helpers/tcp-proxy.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess, waitForConsumers } from '../helpers/txsim.js';

// DATABASE_URL may list several nodes (a Galera cluster). Two TCP proxies in front of the one real
// database stand in for two nodes: cutting the proxy a worker writes through is, for that worker, its
// node going away. What is measured is the client's move to the next node, and that nothing is lost or
// applied twice on the way. (The Galera faults themselves are in test/faults/galera.test.ts.)
describe('DATABASE_URL with several nodes', () => {
  let ns: TestNamespace;
  const proxies: TcpProxy[] = [];
  const workers: WorkerProcess[] = [];

  /** DATABASE_URL whose nodes are the given ports on this host, each naming the namespace's database. */
  const urlList = (ports: readonly number[]) => {
    const url = new URL(ns.config.databaseUrl);
    url.pathname = `/${ns.config.databaseName}`;
    return urlListOnPorts(url.toString(), ports);
  };

  beforeAll(async () => {
    ns = await createTestNamespace('dbnodes');
    proxies.push(...(await proxiesInFront(ns.config.databaseUrl, 2, 3306)));
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(20);
  });

  afterAll(async () => {
    for (const w of workers) await w.kill();
    for (const p of proxies) await p.cut();
    await ns.cleanup();
  });

  it('setup, gen and a worker skip a node that refuses connections and use the next', async () => {
    // Port 1: nothing listens there, so the first node of the list refuses every connect.
    const env = { ...ns.env, DATABASE_URL: urlList([1, Number(new URL(ns.config.databaseUrl).port || 3306)]) };
    expect((await runTxsim(['setup'], env)).code).toBe(0);
    const worker = startWorker('d1', env);
    workers.push(worker);
    await waitForConsumers(ns, 1, 'the worker to consume', 20_000);
    const gen = await runTxsim(['gen', '200', '--seed', 'db-node-list-1', '--json'], env);
    expect(gen.code, gen.stderr).toBe(0);
    const verify = await runTxsim(['verify', '--run', JSON.parse(gen.stdout).runId, '--wait', '60', '--json'], env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    await worker.stop();
  });

  it('a worker whose database node goes away moves to the next node: nothing lost, nothing applied twice', async () => {
    const [a, b] = proxies as [TcpProxy, TcpProxy];
    const env = { ...ns.env, DATABASE_URL: urlList([a.port, b.port]), LOG_LEVEL: 'info' };
    const worker = startWorker('d2', env);
    workers.push(worker);
    await waitForConsumers(ns, 1, 'the worker to consume', 20_000);
    const gen = runTxsim(['gen', '3000', '--seed', 'db-node-list-2', '--rate', '1000', '--json'], ns.env);
    await waitFor(async () => Number((await ns.db('transactions').count({ n: '*' }).first())?.n ?? 0) > 300, 20_000, 'the first outcomes');
    await a.cut();
    const r = await gen;
    expect(r.code, r.stderr).toBe(0);
    const verify = await runTxsim(['verify', '--run', JSON.parse(r.stdout).runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).run).toMatchObject({ lost: 0, duplicated: 0 });
    // It said where it went, without a password.
    expect(worker.output()).toMatch(
      new RegExp(
        `"to":"mysql://root@127\\.0\\.0\\.1:${b.port}[^"]*","detail":"[^"]*","msg":"database node unreachable; moved to the next"`,
      ),
    );
    expect(worker.child.exitCode, 'the worker is still running').toBeNull();
  });
});
