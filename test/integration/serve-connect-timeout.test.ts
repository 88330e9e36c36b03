import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { startServe } from '../helpers/serve.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { runTxsim } from '../helpers/txsim.js';
import { freePort } from './accounting-helpers.js';

/** `txsim serve --connect-timeout`: waits for its services at start, then fails with exit 3 naming the missing one. */
describe('txsim serve --connect-timeout', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('servect');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
  });

  afterAll(async () => {
    await ns?.cleanup();
  });

  const withPort = (url: string, port: number) => {
    const u = new URL(url);
    u.port = String(port);
    return u.toString();
  };

  it('no broker: exit 3 after the timeout, one line naming RabbitMQ (password redacted)', async () => {
    const amqpUrl = withPort(ns.config.amqpUrl, await freePort());
    const started = Date.now();
    const r = await runTxsim(['serve', '--port', '0', '--connect-timeout', '2'], { ...ns.env, AMQP_URL: amqpUrl }, 30_000);
    const tookMs = Date.now() - started;
    expect(r.code, r.stderr).toBe(3);
    expect(tookMs).toBeGreaterThan(1_900);
    expect(tookMs).toBeLessThan(15_000);
    const line = r.stderr.trim().split('\n').at(-1)!;
    expect(line).toMatch(
      /^txsim: rabbitmq unreachable at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+: .*no connection within 2 s \(--connect-timeout\)$/,
    );
  });

  it('no database: exit 3 naming the database', async () => {
    const databaseUrl = withPort(ns.config.databaseUrl, await freePort());
    const r = await runTxsim(['serve', '--port', '0', '--connect-timeout', '1'], { ...ns.env, DATABASE_URL: databaseUrl }, 30_000);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/database unreachable at mysql:\/\/\S+: .*\(--connect-timeout\)/);
  });

  it('a broker that comes up while serve waits: serve starts and accepts a transaction', async () => {
    const target = new URL(ns.config.amqpUrl);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 5672));
    proxy.port = await freePort();
    const env = { ...ns.env, AMQP_URL: withPort(ns.config.amqpUrl, proxy.port) };
    // Nothing listens for the first 16 s: longer than the feed's own connection waits at start (15 s),
    // so only --connect-timeout 40 gets serve through.
    const opening = new Promise((resolve) => setTimeout(resolve, 16_000)).then(() => proxy.listen());
    const serve = await startServe(env, ['--connect-timeout', '40', '--no-auth'], 45_000);
    try {
      await opening;
      const res = await fetch(`${serve.url}/v1/transactions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'deposit', accountId: 1, amountMinor: 100, currency: 'EUR' }),
      });
      // Account 1 does not exist here: the worker's to decide, the API only queues it.
      expect(res.status).toBe(202);
    } finally {
      await serve.stop();
      await proxy.cut();
    }
  });
});
