import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { queueState, runTxsim, spawnTxsim, waitFor } from '../helpers/txsim.js';

/**
 * How the long-running commands meet a broker that is not there, or not a broker: at start they fail
 * like gen (one line naming RabbitMQ and where, exit 3, within --connect-timeout), a SIGINT ends any
 * wait at once, and once running an outage still means reconnecting.
 */

const PASSWORD = 'h9-s3cret-pw';

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
  await new Promise((r) => server.close(r));
  return port;
}

/** Non-empty lines of a process's stderr. */
const linesOf = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

describe('broker unreachable, or not a broker, at start', () => {
  let ns: TestNamespace;
  let env: NodeJS.ProcessEnv;
  let httpServer: http.Server;
  let httpPort: number;

  beforeAll(async () => {
    ns = await createTestNamespace('conn');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    // At info, so that a stray log line would show.
    env = { ...ns.env, LOG_LEVEL: 'info' };
    httpServer = http.createServer((_req, res) => res.end('not a broker'));
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', () => resolve()));
    httpPort = (httpServer.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((r) => httpServer.close(r));
    await ns.cleanup();
  });

  for (const command of [['worker'], ['accounting']]) {
    it(`${command[0]}: one line naming the broker, exit 3, within --connect-timeout`, async () => {
      const port = await closedPort();
      const startedAtMs = Date.now();
      // 30 s: before --connect-timeout the wait was ~120 s of 'amqp reconnect scheduled'.
      const r = await runTxsim(
        [...command, '--connect-timeout', '2', '--amqp-url', `amqp://guest:${PASSWORD}@127.0.0.1:${port}`],
        env,
        30_000,
      );
      expect(r.code, r.stderr).toBe(3);
      expect(linesOf(r.stderr), r.stderr).toEqual([
        `txsim: rabbitmq unreachable at amqp://guest:***@127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}; no connection within 2 s (--connect-timeout)`,
      ]);
      expect(Date.now() - startedAtMs).toBeLessThan(20_000);
    });

    it(`${command[0]}: what answers at the address is not an AMQP server`, async () => {
      const r = await runTxsim([...command, '--amqp-url', `amqp://guest:${PASSWORD}@127.0.0.1:${httpPort}`], env, 30_000);
      expect(r.code, r.stderr).toBe(3);
      expect(linesOf(r.stderr), r.stderr).toEqual([
        `txsim: rabbitmq unreachable at amqp://guest:***@127.0.0.1:${httpPort}: what answered at 127.0.0.1:${httpPort} is not an AMQP server (it sent "HTTP/1.1 400 Bad Request")`,
      ]);
    });

    it(`${command[0]}: the first SIGINT ends the wait for the broker at once`, async () => {
      const port = await closedPort();
      // Default --connect-timeout (15 s); debug, to see when it is waiting.
      const { child, done } = spawnTxsim(
        [...command, '--amqp-url', `amqp://guest:${PASSWORD}@127.0.0.1:${port}`],
        { ...env, LOG_LEVEL: 'debug' },
        60_000,
      );
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitFor(() => /amqp (connect failed; retrying|reconnect scheduled)/.test(stderr), 20_000, 'the command to wait for the broker');
      const signalledAtMs = Date.now();
      child.kill('SIGINT');
      const r = await done;
      expect(Date.now() - signalledAtMs, r.stderr).toBeLessThan(3_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('stopping (send again to force)');
      expect(r.stderr).not.toContain(PASSWORD);
    });
  }

  for (const command of [['worker'], ['accounting'], ['serve', '--port', '0'], ['gen', '5']]) {
    it(`${command[0]}: a wrong password is refused at once, not waited on as an outage`, async () => {
      const startedAtMs = Date.now();
      // The default --connect-timeout is 15 s: refused logins used to be retried for all of it.
      const r = await runTxsim([...command, '--amqp-url', `amqp://guest:${PASSWORD}@127.0.0.1:5672`], env, 30_000);
      expect(r.code, r.stderr).toBe(3);
      expect(linesOf(r.stderr), r.stderr).toEqual([
        expect.stringMatching(
          /^txsim: rabbitmq at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672 refused the connection: .*ACCESS.REFUSED.*\(check the user and password in the URL\)$/,
        ),
      ]);
      expect(r.stderr).not.toContain(PASSWORD);
      expect(Date.now() - startedAtMs).toBeLessThan(8_000);
    });
  }

  it('worker: a virtual host that does not exist is refused at once, not waited on as an outage', async () => {
    // With a minute to connect, the run's 30 s limit is only met by giving up at the refusal.
    const r = await runTxsim(
      ['worker', '--connect-timeout', '60', '--amqp-url', 'amqp://guest:guest@127.0.0.1:5672/no_such_vhost'],
      env,
      30_000,
    );
    expect(r.code, r.stderr).toBe(3);
    expect(linesOf(r.stderr), r.stderr).toEqual([
      "txsim: rabbitmq at amqp://guest:***@127.0.0.1:5672/no_such_vhost refused to open the virtual host in the URL's path (check that it exists and that the user may use it)",
    ]);
  });

  it('gen: what answers at the address is not an AMQP server', async () => {
    const r = await runTxsim(['gen', '5', '--amqp-url', `amqp://guest:${PASSWORD}@127.0.0.1:${httpPort}`], env, 30_000);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain(`what answered at 127.0.0.1:${httpPort} is not an AMQP server (it sent "HTTP/1.1 400 Bad Request")`);
    expect(r.stderr).not.toContain('Frame size');
  });

  it('worker whose database is missing: the one-line error and no stray "worker stopped" line', async () => {
    const r = await runTxsim(['worker', '--namespace', `${ns.name}_missing`], env, 30_000);
    expect(r.code, r.stderr).not.toBe(0);
    expect(linesOf(r.stderr), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^txsim: .*database/);
    expect(r.stderr).not.toContain('stopped');
  });

  it('accounting whose database is missing: the one-line error and no stray "accounting stopped" line', async () => {
    const r = await runTxsim(['accounting', '--namespace', `${ns.name}_missing`], env, 30_000);
    expect(r.code, r.stderr).not.toBe(0);
    expect(linesOf(r.stderr), r.stderr).toHaveLength(1);
    expect(r.stderr).not.toContain('stopped');
  });

  it('--connect-timeout out of range is a usage error', async () => {
    const r = await runTxsim(['worker', '--connect-timeout', '0'], env, 30_000);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('connect-timeout: "0" must be a number of seconds, 0.1..3600');
  });
});

describe('broker outage once running', () => {
  let ns: TestNamespace;
  const proxy = new TcpProxy('127.0.0.1', 5672);

  beforeAll(async () => {
    ns = await createTestNamespace('outage');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await proxy.listen();
  });

  afterAll(async () => {
    await proxy.cut();
    await ns.cleanup();
  });

  it('the worker reconnects after an outage, and a SIGINT during the next one exits at once', async () => {
    const amqpUrl = `amqp://guest:guest@127.0.0.1:${proxy.port}`;
    const { child, done } = spawnTxsim(
      ['worker', '--id', 'w-outage', '--connect-timeout', '5', '--amqp-url', amqpUrl],
      { ...ns.env, LOG_LEVEL: 'info' },
      90_000,
    );
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const consumers = async () => (await queueState(ns.amqp, ns.topology.processQueue)).consumerCount;
    await waitFor(async () => (await consumers()) === 1, 30_000, 'the worker to consume');

    // Outage longer than the start's --connect-timeout: a running worker keeps reconnecting.
    await proxy.cut();
    await waitFor(async () => (await consumers()) === 0, 10_000, 'the consumer to go with its connection');
    await new Promise((r) => setTimeout(r, 6_000));
    expect(child.exitCode, stderr).toBeNull();
    expect(stderr).toContain('amqp reconnect scheduled');
    await proxy.listen();
    await waitFor(async () => (await consumers()) === 1, 30_000, 'the worker to consume again');

    // Counted from here: the first outage may already have logged several reconnect lines.
    const reconnectLines = () => (stderr.match(/amqp reconnect scheduled/g) ?? []).length;
    const linesBefore = reconnectLines();
    await proxy.cut();
    await waitFor(() => reconnectLines() > linesBefore, 10_000, 'the worker to be reconnecting again');
    const signalledAtMs = Date.now();
    child.kill('SIGINT');
    const r = await done;
    expect(Date.now() - signalledAtMs, r.stderr).toBeLessThan(5_000);
    expect(r.code, r.stderr).toBe(0);
  });
});
