import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { freePort, jsonLines, startTxsim, type TxsimProcess } from './accounting-helpers.js';

const SECRET = 'redeliver-test-secret-0123456789';

// `txsim accounting redeliver`: deliveries that a receiver refused (a 4xx: the consumer signed with
// the wrong secret) are recorded failed; re-sent with the right secret, each is delivered exactly
// once and recorded; nothing else is sent.
describe('txsim accounting redeliver', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  let receiver: TxsimProcess;
  let port: number;
  const started: TxsimProcess[] = [];
  const start = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const p = startTxsim(args, { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET, ...env });
    started.push(p);
    return p;
  };
  const redeliver = (args: string[]) => runTxsim(['accounting', 'redeliver', ...args], { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET });
  const rows = async () =>
    ns.db('webhook_deliveries').select<
      {
        event_id: string;
        status: string;
        attempts: number;
        response_status: number | null;
        last_error: string | null;
      }[]
    >('event_id', 'status', 'attempts', 'response_status', 'last_error');
  const accepted = () => jsonLines(receiver.stdout()).filter((l) => l.accepted === true);

  beforeAll(async () => {
    ns = await createTestNamespace('redel');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(5);
    worker = startWorker('w1', ns.env);
    port = await freePort();
    receiver = start(['accounting', 'receive', '--port', String(port), '--json']);
    await waitFor(() => receiver.stdout().includes('listening'), 10_000, 'receiver listening');
  });

  afterAll(async () => {
    await worker?.stop();
    await Promise.all(started.map((p) => p.stop()));
    await ns.cleanup();
  });

  it('needs --failed or --id (exit 2)', async () => {
    const r = await redeliver([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--failed');
  });

  it('re-sends refused deliveries once each, records them delivered, and sends nothing on a second run', async () => {
    const consumer = start(['accounting', '--webhook', `http://127.0.0.1:${port}/hooks`], { TXSIM_WEBHOOK_SECRET: 'the-wrong-secret-000' });
    const gen = await runTxsim(['gen', '8', '--seed', 'redeliver-1'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    await waitFor(async () => (await rows()).filter((r) => r.status === 'failed').length === 8, 30_000, '8 failed deliveries');
    expect(await consumer.stop()).toBe(0);
    const failedIds = (await rows()).map((r) => r.event_id).sort();
    expect(accepted()).toHaveLength(0);

    // Sent to a URL with credentials: the request goes there, the record keeps the URL without the password.
    const r = await redeliver(['--failed', '--json', '--webhook', `http://hook-user:hook-pass-1@127.0.0.1:${port}/hooks`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('hook-pass-1');
    const report = JSON.parse(r.stdout) as {
      delivered: number;
      failed: number;
      deliveries: { eventId: string; status: string; attempts: number; responseStatus: number }[];
    };
    expect(report).toMatchObject({ delivered: 8, failed: 0 });
    expect(report.deliveries.map((d) => d.eventId).sort()).toEqual(failedIds);

    // Recorded: delivered with a 200 after one more attempt each, the failure cleared.
    for (const row of await rows()) expect(row).toMatchObject({ status: 'delivered', attempts: 2, response_status: 200, last_error: null });
    const urls = await ns.db('webhook_deliveries').distinct<{ url: string }[]>('url');
    expect(urls.map((u) => u.url)).toEqual([`http://hook-user:***@127.0.0.1:${port}/hooks`]);
    // Received exactly once each, every one of them fresh (not a repeat the receiver dropped).
    await waitFor(() => accepted().length === 8, 5_000, 'the receiver to print 8 accepted');
    expect(
      accepted()
        .map((l) => l.eventId)
        .sort(),
    ).toEqual(failedIds);
    expect(accepted().every((l) => l.duplicate === false)).toBe(true);

    // Nothing is failed any more: a second run sends nothing.
    const again = await redeliver(['--failed']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('redelivered 0 failed webhooks: 0 delivered, 0 failed again');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(accepted()).toHaveLength(8);

    // An id that is not failed is "not found" (exit 5) and says where it stands.
    const delivered = await redeliver(['--id', failedIds[0]!]);
    expect(delivered.code).toBe(5);
    expect(delivered.stdout).toContain(`not failed: ${failedIds[0]} (delivered)`);
    expect(accepted()).toHaveLength(8);
  });
});
