import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseToken } from '../../src/serve/credentials.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { scrape, sumOf } from '../helpers/prometheus-text.js';
import { runTxsim, spawnTxsim, waitFor } from '../helpers/txsim.js';
import { freePort } from './accounting-helpers.js';

// The built CLI as a user runs it: `txsim tokens` and `txsim serve` as a child process.
describe('txsim serve and txsim tokens (CLI)', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('servecli');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(2);
  });

  afterAll(async () => {
    await ns?.cleanup();
  });

  it('creates, lists and revokes tokens; serve honours them; secrets are stored hashed and never logged', async () => {
    const created = await runTxsim(['tokens', 'create', '--account', '1', '--ttl', '1d', '--json'], ns.env);
    expect(created.code, created.stderr).toBe(0);
    const { id, token } = JSON.parse(created.stdout) as { id: string; token: string };
    expect(token).toMatch(/^txsim_[0-9a-f]{16}_/);
    const [rows] = (await ns.db.raw('SELECT secret_hash FROM api_tokens WHERE id = ?', [id])) as [{ secret_hash: string }[]];
    expect(token).not.toContain(rows[0]!.secret_hash);
    expect((await runTxsim(['tokens', 'create', '--account', '99'], ns.env)).code).toBe(5);
    expect((await runTxsim(['tokens', 'create'], ns.env)).code).toBe(2);
    expect((await runTxsim(['tokens', 'create', '--admin', '--ttl', '1w'], ns.env)).code).toBe(2);

    const serve = spawnTxsim(['serve', '--port', '0', '--log-level', 'debug'], ns.env, 60_000);
    let out = '';
    serve.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    let err = '';
    serve.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await waitFor(() => /listening on (http:\/\/\S+) /.test(out), 20_000, `serve to listen: ${out}${err}`);
      const url = /listening on (http:\/\/\S+) /.exec(out)![1]!;
      const get = (token: string) => fetch(`${url}/v1/accounts/1?token=${token}`).then((r) => r.status);
      expect(await get(token)).toBe(200);
      // Something the feed cannot read: its warning comes from serve's feed, as a part of serve.
      const channel = await ns.amqp.createConfirmChannel();
      try {
        await waitFor(
          async () => {
            channel.publish(ns.topology.accountingExchange, 'statement', Buffer.from('not json'));
            await channel.waitForConfirms();
            return err.includes('feed: not an accounting event; ignored');
          },
          20_000,
          `the feed's warning: ${err}`,
        );
      } finally {
        await channel.close();
      }
      const list = await runTxsim(['tokens', 'list', '--json'], ns.env);
      expect(JSON.parse(list.stdout) as unknown).toEqual([expect.objectContaining({ id, scope: 'account 1', revokedAt: null })]);
      // The secret is base64url and may hold '_' itself (even first): cut out by the token parser, not at '_'.
      expect(list.stdout).not.toContain(parseToken(token)!.secret);
      expect((await runTxsim(['tokens', 'revoke', id], ns.env)).code).toBe(0);
      expect(await get(token)).toBe(401);
      expect((await runTxsim(['tokens', 'revoke', id], ns.env)).code).toBe(5);
      await waitFor(() => err.includes('"path":"/v1/accounts/1?token=***"'), 5_000, `a request log line: ${err}`);
      expect(err).not.toContain(parseToken(token)!.secret);
    } finally {
      serve.child.kill('SIGTERM');
    }
    const result = await serve.done;
    expect(result.code).toBe(0);
    // One `component` per JSON line: the publisher, feed and dashboard name themselves as a `part` of serve.
    const lines = err.split('\n').filter((l) => l.startsWith('{'));
    expect(lines.filter((l) => l.split('"component":').length > 2)).toEqual([]);
    expect(lines.some((l) => l.includes('"component":"serve","part":"feed"'))).toBe(true);
  });

  it('--no-auth says so loudly; a busy port is a clean error', async () => {
    const serve = spawnTxsim(['serve', '--port', '0', '--no-auth'], ns.env, 60_000);
    let out = '';
    serve.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    let err = '';
    serve.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await waitFor(() => out.includes('listening on'), 20_000, 'serve to listen');
      expect(err).toContain('EVERY REQUEST IS ADMIN');
      const url = /listening on (http:\/\/\S+) /.exec(out)![1]!;
      expect((await fetch(`${url}/v1/accounts`)).status).toBe(200);
      const port = new URL(url).port;
      const second = await runTxsim(['serve', '--port', port], ns.env, 30_000);
      expect(second.code).toBe(2);
      expect(second.stderr).toContain(`cannot listen on 127.0.0.1:${port} (EADDRINUSE)`);
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect((await serve.done).code).toBe(0);
  });

  it('--auth-failure-limit: past that many failed token checks from an address, its tokens get 429; a bad value is a usage error', async () => {
    const bad = await runTxsim(['serve', '--port', '0', '--auth-failure-limit', 'many'], ns.env, 30_000);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--auth-failure-limit');
    const serve = spawnTxsim(['serve', '--port', '0', '--auth-failure-limit', '2'], ns.env, 60_000);
    let out = '';
    serve.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => /listening on (http:\/\/\S+) /.test(out), 20_000, 'serve to listen');
      const url = /listening on (http:\/\/\S+) /.exec(out)![1]!;
      const guess = () => `txsim_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}`;
      const statusOf = async () => (await fetch(`${url}/v1/accounts/1`, { headers: { authorization: `Bearer ${guess()}` } })).status;
      expect([await statusOf(), await statusOf(), await statusOf()]).toEqual([401, 401, 429]);
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect((await serve.done).code).toBe(0);
  });

  it('--metrics-port: requests counted by route pattern and status, on a port of their own without a token', async () => {
    const metricsPort = await freePort();
    const serve = spawnTxsim(['serve', '--port', '0', '--no-auth', '--metrics-port', String(metricsPort)], ns.env, 60_000);
    let out = '';
    serve.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    serve.child.stderr!.on('data', () => {});
    try {
      await waitFor(() => out.includes('listening on'), 20_000, 'serve to listen');
      const url = /listening on (http:\/\/\S+) /.exec(out)![1]!;
      for (const id of [1, 2, 424242]) await fetch(`${url}/v1/accounts/${id}`);
      const samples = await scrape(`http://127.0.0.1:${metricsPort}/metrics`);
      // Ids never become label values: the route's pattern does.
      expect(sumOf(samples, 'txsim_http_requests_total', { method: 'GET', route: '/v1/accounts/:id', status: '200' })).toBe(2);
      expect(sumOf(samples, 'txsim_http_requests_total', { route: '/v1/accounts/:id', status: '404' })).toBe(1);
      expect(samples.some((s) => s.labels.route?.includes('424242'))).toBe(false);
      expect(sumOf(samples, 'txsim_http_request_duration_seconds_count', { route: '/v1/accounts/:id', process: 'serve' })).toBe(3);
    } finally {
      serve.child.kill('SIGTERM');
    }
    expect((await serve.done).code).toBe(0);
  });
});
