import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIdForSeed } from '../../src/domain/ids.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { queueDepth, runTxsim, spawnTxsim, waitFor } from '../helpers/txsim.js';

describe('gen rides out a database outage', () => {
  let ns: TestNamespace;
  let proxy: TcpProxy;

  beforeAll(async () => {
    ns = await createTestNamespace('gendb');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(20);
    const target = new URL(ns.config.databaseUrl);
    proxy = new TcpProxy(target.hostname, Number(target.port || 3306));
    await proxy.listen();
  });

  afterAll(async () => {
    await proxy.cut();
    await ns.cleanup();
  });

  it('keeps publishing, retries the run record and writes it when the database is back: exit 0, record complete', async () => {
    const viaProxy = new URL(ns.config.databaseUrl);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    viaProxy.pathname = `/${ns.config.databaseName}`;
    const count = 1500;
    const runId = runIdForSeed('gen-db-outage');
    // 3 s of paced publishing; the outage starts once the first progress save is in and lasts until
    // publishing is over (at least 3 s): it covers at least two progress saves and the final save.
    const gen = spawnTxsim(['gen', String(count), '--seed', 'gen-db-outage', '--rate', '500', '--json'], {
      ...ns.env,
      DATABASE_URL: viaProxy.toString(),
    });
    const published = async () =>
      Number((await ns.db('runs').where('id', runId).first<{ published: number } | undefined>('published'))?.published ?? 0);
    await waitFor(async () => (await published()) > 0, 15_000, 'the first progress save');
    await proxy.cut();
    const cutAt = Date.now();
    const savedBeforeCut = await published();
    await new Promise((r) => setTimeout(r, 3_000));
    await waitFor(async () => (await queueDepth(ns.amqp, ns.topology.processQueue)) === count, 15_000, 'every message to be published');
    await new Promise((r) => setTimeout(r, 500));
    // Still cut here: gen's final save has been failing since publishing ended.
    expect(gen.child.exitCode, 'gen ended while the database was unreachable').toBeNull();
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(3_000);
    await proxy.listen();

    const r = await gen.done;
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ runId, published: count, confirmed: count, completed: true });
    expect(await ns.db('runs').where('id', runId).first('published', 'confirmed', 'status', 'count_requested')).toMatchObject({
      published: count,
      confirmed: count,
      status: 'completed',
      count_requested: count,
    });
    expect(savedBeforeCut).toBeLessThan(count);
    // It said so: once when the saves began to fail, once when the record was written again.
    expect(r.stderr).toMatch(/database unreachable: keeping the run's counts and retrying the save/);
    expect(r.stderr).toMatch(/database back: run record saved/);
  });
});
