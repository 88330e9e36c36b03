import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signWebhook, WEBHOOK_HEADERS } from '../../src/accounting/webhook-delivery.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { queueState, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { freePort, jsonLines, startTxsim, type TxsimProcess } from './accounting-helpers.js';

const SECRET = 'webhook-test-secret-0123456789';

// Signed webhooks from `txsim accounting --webhook` to `txsim accounting receive`, both real
// processes: the receiver down then up, a receiver that refuses the signature (a 4xx).
describe('accounting webhooks', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  let port: number;
  const started: TxsimProcess[] = [];
  const start = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const p = startTxsim(args, { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET, ...env });
    started.push(p);
    return p;
  };
  const deliveries = async (status: string) => Number((await ns.db('webhook_deliveries').where('status', status).count({ n: '*' }))[0]!.n);

  beforeAll(async () => {
    ns = await createTestNamespace('hook');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(10);
    worker = startWorker('w1', ns.env);
    port = await freePort();
  });

  afterAll(async () => {
    await worker?.stop();
    await Promise.all(started.map((p) => p.stop()));
    await ns.cleanup();
  });

  it('receiver down, then up: every event is delivered and accepted exactly once, nothing acked before', async () => {
    const args = [
      'accounting',
      '--webhook',
      `http://127.0.0.1:${port}/hooks`,
      '--webhook-backoff-max',
      '400',
      '--prefetch',
      '100',
      '--json',
    ];
    const first = start(args);
    const gen = await runTxsim(['gen', '60', '--seed', 'hook-1', '--invalid', '0.05'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);

    // Statement lines are recorded at once; the webhooks wait, retried.
    await waitFor(async () => (await deliveries('pending')) === 60, 30_000, '60 pending webhook deliveries');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await deliveries('pending')).toBe(60);
    // Nothing was acked: a consumer dying now hands every event back to the queue.
    await first.kill();
    // (The relay puts several events in a message: how many messages carry the 60 depends on its claims.)
    await waitFor(
      async () => (await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount > 0,
      10_000,
      'the events back in the queue',
    );

    // A new consumer picks them up: the statement lines are already there (no second line), the
    // webhooks are still owed.
    const accounting = start(args);
    await waitFor(
      async () => Number((await ns.db('accounting_statements').sum({ d: 'deliveries' }))[0]!.d) === 120,
      30_000,
      'the redeliveries counted',
    );
    expect(Number((await ns.db('accounting_statements').count({ n: '*' }))[0]!.n)).toBe(60);
    expect(jsonLines(accounting.stdout())).toHaveLength(0);

    const receiver = start(['accounting', 'receive', '--port', String(port), '--json']);
    await waitFor(() => receiver.stdout().includes('listening'), 10_000, 'receiver listening');
    await waitFor(async () => (await deliveries('delivered')) === 60, 30_000, 'every webhook delivered');

    const accepted = jsonLines(receiver.stdout()).filter((l) => l.accepted === true);
    const fresh = accepted.filter((l) => l.duplicate === false);
    expect(new Set(fresh.map((l) => l.eventId)).size).toBe(60);
    expect(fresh).toHaveLength(60);
    const statements: { event_id: string }[] = await ns.db('accounting_statements').select('event_id');
    expect(new Set(fresh.map((l) => l.eventId))).toEqual(new Set(statements.map((s) => s.event_id)));
    // Bodies are the accounting events, money as strings.
    expect(fresh[0]!.body).toMatchObject({ version: 1, eventId: fresh[0]!.eventId });
    // Each outcome is recorded; the receiver was down, so deliveries took retries.
    const rows: { attempts: number; response_status: number }[] = await ns.db('webhook_deliveries').select('attempts', 'response_status');
    expect(rows.every((r) => r.attempts >= 1 && r.response_status === 200)).toBe(true);
    expect(rows.filter((r) => r.attempts >= 2).length).toBeGreaterThan(50);
    // With every outcome recorded, everything is acked: once the consumer is gone (the broker has closed its
    // channel and put back whatever it had not acked), nothing is left in the queue.
    expect(await accounting.stop()).toBe(0);
    await waitFor(async () => (await queueState(ns.amqp, ns.topology.accountingQueue)).consumerCount === 0, 5_000, 'the consumer to go');
    expect((await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount).toBe(0);

    const verify = await runTxsim(['verify', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).accounting).toMatchObject({
      ok: true,
      settled: true,
      webhooks: { delivered: 60, failed: 0, pending: 0 },
    });
  });

  it('the receiver refuses a bad signature with 401', async () => {
    const body = JSON.stringify({ eventId: 'forged' });
    const forged = await request(`http://127.0.0.1:${port}/hooks`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        [WEBHOOK_HEADERS.signature]: signWebhook('not-the-secret-000', Math.floor(Date.now() / 1_000), body),
        [WEBHOOK_HEADERS.timestamp]: String(Math.floor(Date.now() / 1_000)),
        [WEBHOOK_HEADERS.idempotencyKey]: 'forged',
      },
    });
    expect(forged.statusCode).toBe(401);
    await forged.body.dump();
  });

  it('a 4xx (here: a sender with the wrong secret) is recorded as failed with the response, not retried, and acked', async () => {
    start(['accounting', '--webhook', `http://127.0.0.1:${port}/hooks`, '--webhook-backoff-max', '200', '--json'], {
      TXSIM_WEBHOOK_SECRET: 'the-wrong-secret-000',
    });
    const gen = await runTxsim(['gen', '10', '--seed', 'hook-2'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    await waitFor(async () => (await deliveries('failed')) === 10, 30_000, '10 failed deliveries');
    await new Promise((r) => setTimeout(r, 1_000));
    const failed: { attempts: number; response_status: number; response_body: string; last_error: string }[] = await ns
      .db('webhook_deliveries')
      .where('status', 'failed')
      .select('attempts', 'response_status', 'response_body', 'last_error');
    expect(failed).toHaveLength(10);
    for (const f of failed) {
      expect(f).toMatchObject({ attempts: 1, response_status: 401, last_error: 'HTTP 401' });
      expect(f.response_body).toContain('signature');
    }
    expect((await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount).toBe(0);
    const refused = jsonLines(started[2]!.stdout()).filter((l) => l.accepted === false && l.status === 401);
    expect(refused.length).toBe(11); // 10 events + the forged request above
  });
});
