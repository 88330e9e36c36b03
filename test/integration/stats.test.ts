import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer } from 'node:net';
import type { Channel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectReport } from '../../src/dead-letters/inspect-errors.js';
import type { jsonDocument } from '../../src/watch/watch.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

/**
 * Worker stats end to end: real workers publish snapshots on the real `<ns>.stats` exchange, a
 * plain amqplib subscriber receives them, and `txsim watch` (--json, and plain lines when stdout
 * is not a terminal) reports what the workers did, reads queue depths from the management API or
 * falls back to AMQP, and turns a killed worker stale, then gone.
 */

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
const exec = promisify(execFile);
const hasRabbitmqctl = await exec('sh', ['-c', 'command -v rabbitmqctl']).then(
  () => true,
  () => false,
);
type WatchJson = ReturnType<typeof jsonDocument>;

let ns: TestNamespace;
let workers: WorkerProcess[] = [];

/** A subscriber written against the wire format only (no txsim code): what a third-party tool would do. */
async function collectSnapshots(channel: Channel, ms: number): Promise<Record<string, unknown>[]> {
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, ns.topology.statsExchange, '');
  const received: Record<string, unknown>[] = [];
  await channel.consume(
    queue,
    (msg) => {
      if (msg) received.push({ ...JSON.parse(msg.content.toString()), _receivedAtMs: Date.now(), _type: msg.properties.type });
    },
    { noAck: true },
  );
  await new Promise((resolve) => setTimeout(resolve, ms));
  return received;
}

async function watchJson(env: NodeJS.ProcessEnv = ns.env): Promise<WatchJson> {
  const r = await runTxsim(['watch', '--json', '--listen', '2500'], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as WatchJson;
}

/** `txsim watch` as a long-running child with stdout piped (so: not a TTY). */
function startWatch(args: string[]): { child: ChildProcess; stdout: () => string; stop: () => Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, 'watch', ...args], { env: ns.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', () => {});
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => stdout,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** logfmt → object (values unquoted). */
function fields(line: string): Record<string, string> {
  return Object.fromEntries([...line.matchAll(/(\w+)=("[^"]*"|\S+)/g)].map((m) => [m[1]!, m[2]!.replace(/^"|"$/g, '')]));
}

beforeAll(async () => {
  ns = await createTestNamespace('stats');
  expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
  await ns.seed(3, { openingBalanceMinor: 10_000n });
  workers = ['w1', 'w2'].map((id) => startWorker(id, ns.env, ['--prefetch', '20']));
  // A few transactions: 5 deposits, 2 rejects (insufficient funds, unknown account).
  await publishRaw(ns.amqp, ns.topology, [
    ...[1, 2, 3, 1, 2].map((accountId) => ({ body: txBody({ accountId, amountMinor: 100 }) })),
    { body: txBody({ accountId: 3, type: 'withdrawal', amountMinor: 99_999 }) },
    { body: txBody({ accountId: 424_242 }) },
  ]);
  await waitFor(
    async () => Number((await ns.db('transactions').whereNot('type', 'opening').count({ n: '*' }))[0]!.n) >= 7,
    30_000,
    'seven outcomes',
  );
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await ns?.cleanup();
});

describe('worker snapshots', () => {
  it('each worker publishes one snapshot a second that a plain AMQP subscriber receives', async () => {
    const channel = await ns.amqp.createChannel();
    let snapshots: Record<string, unknown>[];
    try {
      snapshots = await collectSnapshots(channel, 3_500);
    } finally {
      await channel.close();
    }
    const byWorker = (id: string) => snapshots.filter((s) => s.workerId === id);
    for (const id of ['w1', 'w2']) {
      const mine = byWorker(id);
      // 3.5 s at 1 Hz: three or four, never a burst.
      expect(mine.length).toBeGreaterThanOrEqual(3);
      expect(mine.length).toBeLessThanOrEqual(5);
      const seqs = mine.map((s) => s.seq as number);
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
      const gapsMs = mine.slice(1).map((s, i) => (s.sentAtMs as number) - (mine[i]!.sentAtMs as number));
      // About a second apart; a tick a loaded machine delays makes one gap longer and the next shorter.
      for (const gap of gapsMs) {
        expect(gap).toBeGreaterThan(400);
        expect(gap).toBeLessThan(1_800);
      }
      expect(mine[0]).toMatchObject({
        schema: 'txsim.stats.v1',
        _type: 'txsim.stats.v1',
        workerId: id,
        host: expect.any(String),
        prefetchCount: 20,
        stopping: false,
        blocked: false,
        paused: false,
      });
      expect(mine[0]!.pid).toBe(workers.find((w) => w.id === id)!.child.pid);
    }
    // Together they did exactly what was published.
    const last = ['w1', 'w2'].map((id) => byWorker(id).at(-1)!);
    const counts = last.map((s) => s.counts as { applied: number; rejected: Record<string, number> });
    expect(counts.reduce((a, c) => a + c.applied, 0)).toBe(5);
    expect(counts.reduce((a, c) => a + (c.rejected.insufficient_funds ?? 0), 0)).toBe(1);
    expect(counts.reduce((a, c) => a + (c.rejected.unknown_account ?? 0), 0)).toBe(1);
    // Latency of what they committed, end to end and processing.
    const e2eCount = last.reduce((a, s) => a + (s.latencyTotalMs as { endToEnd: { count: number } }).endToEnd.count, 0);
    expect(e2eCount).toBe(7);
  });
});

describe('txsim watch --json', () => {
  it('reports both workers, totals that match the database, and reject reasons that match inspect-errors', async () => {
    const doc = await watchJson();
    expect(doc.namespace).toBe(ns.name);
    expect(doc.endpoints.amqp).not.toMatch(/guest:guest/);
    expect(doc.workers.map((w) => w.workerId).sort()).toEqual(['w1', 'w2']);
    for (const w of doc.workers) expect(['active', 'idle']).toContain(w.status);
    expect(doc.totals).toMatchObject({ workers: 2, applied: 5, rejected: 2 });
    expect(doc.totals.ratePerS).toBe(doc.workers.reduce((a, w) => a + (w.ratePerS ?? 0), 0));
    const inspected = await runTxsim(['inspect-errors', '--json'], ns.env);
    const byReason = (JSON.parse(inspected.stdout) as InspectReport).byReason;
    expect(Object.fromEntries(doc.rejectReasons.map((r) => [r.reason, r.count]))).toEqual(byReason);
  });

  it('reads queue depths from the management API', async () => {
    const doc = await watchJson();
    expect(doc.queues?.source).toBe('management-api');
    expect(doc.queues?.queues.map((q) => q.role)).toEqual(['process', 'retry', 'retry', 'errors', 'dead', 'accounting']);
    const process = doc.queues!.queues.find((q) => q.role === 'process')!;
    expect(process).toMatchObject({ name: ns.topology.processQueue, exists: true, consumers: 2 });
    expect(process.unacked).not.toBeNull();
  });

  it('falls back to AMQP passive declares when the API is unreachable, and says so', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: p } = server.address() as { port: number };
        server.close(() => resolve(p));
      });
    });
    const doc = await watchJson({ ...ns.env, RABBITMQ_API_URL: `http://guest:guest@127.0.0.1:${port}` });
    expect(doc.queues?.source).toBe('amqp-passive');
    expect(doc.queues?.apiError).toMatch(/rabbitmq-management unreachable .*ECONNREFUSED/);
    const errors = doc.queues!.queues.find((q) => q.role === 'errors')!;
    // AMQP knows ready and consumers, not unacked or rates.
    expect(errors).toMatchObject({ ready: 2, unacked: null, inPerS: null, consumers: 0 });
  });

  it.skipIf(process.getuid?.() !== 0 || !hasRabbitmqctl)(
    'works under the least-privilege watch user (no configure rights on the stats exchange)',
    async () => {
      const password = 'watch-pw-3e1b';
      await exec('bash', ['scripts/rabbitmq-users.sh', ns.name], {
        cwd: new URL('../../', import.meta.url).pathname,
        env: {
          ...process.env,
          TXSIM_USER_PREFIX: ns.name,
          TXSIM_GEN_PASSWORD: 'gen-pw-unused-1',
          TXSIM_WORKER_PASSWORD: 'worker-pw-unused-1',
          TXSIM_WATCH_PASSWORD: password,
        },
      });
      try {
        const user = `${ns.name}-watch`;
        const doc = await watchJson({
          ...ns.env,
          AMQP_URL: `amqp://${user}:${password}@127.0.0.1:5672`,
          RABBITMQ_API_URL: `http://${user}:${password}@127.0.0.1:15672`,
        });
        expect(doc.workers.map((w) => w.workerId).sort()).toEqual(['w1', 'w2']);
        expect(doc.queues?.source).toBe('management-api');
        expect(JSON.stringify(doc)).not.toContain(password);
      } finally {
        for (const role of ['gen', 'worker', 'watch'])
          await exec('rabbitmqctl', ['-q', 'delete_user', `${ns.name}-${role}`]).catch(() => {});
      }
    },
  );

  it('a namespace that was never set up: --json exits 5 naming the missing exchange', async () => {
    const r = await runTxsim(['watch', '--json', '--listen', '0'], { ...ns.env, TXSIM_NAMESPACE: `${ns.name}_none` });
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`exchange ${ns.name}_none.stats does not exist`);
    // One line: no warning about the partition count of a database that was never created either.
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('prints the same as text with --once', async () => {
    const r = await runTxsim(['watch', '--once', '--listen', '2000'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^workers: 2 \(/m);
    expect(r.stdout).toMatch(/^w1 +(active|idle) /m);
    expect(r.stdout).toMatch(/^total +2\/2 /m);
    expect(r.stdout).toContain('queues (source: management API)');
    expect(r.stdout).toMatch(/top rejects: (insufficient_funds 1, unknown_account 1|unknown_account 1, insufficient_funds 1)/);
  });
});

describe('txsim watch on a pipe', () => {
  it('prints logfmt lines whose worker rates add up to the total, and no logs', async () => {
    const watch = startWatch(['--interval', '500']);
    try {
      const gen = runTxsim(['gen', '150', '--rate', '50', '--seed', 'stats'], ns.env);
      expect((await gen).code).toBe(0);
      await waitFor(
        () =>
          watch
            .stdout()
            .split('\n')
            .filter((l) => l.includes('kind=total') && !/tx_per_s=0 /.test(l)).length >= 3,
        20_000,
        'lines with traffic',
      );
    } finally {
      expect(await watch.stop()).toBe(0);
    }
    const lines = watch.stdout().split('\n').filter(Boolean);
    // Only logfmt lines: logs go to stderr, never stdout.
    for (const line of lines) expect(line).toMatch(/^ts=\S+ kind=(total|worker) /);
    const byTs = new Map<string, Record<string, string>[]>();
    for (const f of lines.map(fields)) byTs.set(f.ts!, [...(byTs.get(f.ts!) ?? []), f]);
    let checked = 0;
    for (const group of byTs.values()) {
      const total = group.find((f) => f.kind === 'total');
      const rows = group.filter((f) => f.kind === 'worker');
      if (!total || rows.length !== 2) continue;
      const sum = rows.reduce((a, f) => a + (f.tx_per_s === '-' ? 0 : Number(f.tx_per_s)), 0);
      expect(Number(total.tx_per_s)).toBeCloseTo(sum, 5);
      if (sum > 0) checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(3);
  });

  it('a killed worker turns stale, then gone; a stopped one says goodbye and is gone at once', async () => {
    // Stale after 2.5 s: a live worker's 1 Hz snapshot that a loaded machine delays must not make it look stale.
    const watch = startWatch(['--interval', '300', '--stale-after', '2500', '--gone-after', '6000']);
    const statusOf = (id: string) => {
      const mine = watch
        .stdout()
        .split('\n')
        .filter((l) => l.includes(`kind=worker id="${id}"`));
      return mine.length > 0 ? fields(mine.at(-1)!).status : undefined;
    };
    try {
      await waitFor(() => statusOf('w2') !== undefined && statusOf('w1') !== undefined, 10_000, 'both workers in the output');
      const killedAt = Date.now();
      await workers.find((w) => w.id === 'w2')!.kill();
      // Staleness counts from w2's last snapshot, which arrived up to one publish interval (1 s)
      // before the kill: stale no sooner than 2.5 − 1 s after it, gone no sooner than 6 − 1 s.
      await waitFor(() => statusOf('w2') === 'stale', 7_000, 'w2 stale');
      expect(Date.now() - killedAt).toBeGreaterThan(1_400);
      await waitFor(() => statusOf('w2') === 'gone', 10_000, 'w2 gone');
      expect(Date.now() - killedAt).toBeGreaterThan(4_900);
      expect(['active', 'idle']).toContain(statusOf('w1'));
      const stoppedAt = Date.now();
      expect(await workers.find((w) => w.id === 'w1')!.stop()).toBe(0);
      await waitFor(() => statusOf('w1') === 'gone', 3_000, 'w1 gone after its goodbye snapshot');
      // Gone without passing through stale: the goodbye snapshot said so.
      expect(Date.now() - stoppedAt).toBeLessThan(4_000);
      const w1States = watch
        .stdout()
        .split('\n')
        .filter((l) => l.includes('kind=worker id="w1"'))
        .map((l) => fields(l).status);
      expect(w1States).not.toContain('stale');
    } finally {
      expect(await watch.stop()).toBe(0);
    }
  });
});
