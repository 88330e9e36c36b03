import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseExists } from '../../src/db/reset.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { runTxsim, spawnTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

/**
 * `txsim reset` of a namespace whose workers have just stopped while a `txsim watch` still follows
 * it: the situation of a report where reset ended with a raw Node stack trace about 4 s after the
 * namespace's bench workers stopped (not reproduced since). Both processes must end through the
 * CLI's own boundary: reset with exit 0 and its report, the watch living on and exiting 0 on
 * SIGTERM, and neither printing a stack.
 */

let ns: TestNamespace;

/** A line of a Node stack trace (`    at fn (file:line:col)`): what an error that escaped the boundary prints. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

/**
 * `txsim watch` with stdout piped (plain lines every 500 ms). `stop()` ends it with SIGTERM and
 * expects the exit through the CLI's boundary: code 0 and no stack on stderr.
 */
function startPlainWatch() {
  const watch = spawnTxsim(['watch', '--interval', '500'], ns.env, 90_000);
  let stdout = '';
  watch.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  return {
    stdout: () => stdout,
    running: () => watch.child.exitCode === null,
    async stop(): Promise<void> {
      if (watch.child.exitCode === null) watch.child.kill('SIGTERM');
      const result = await watch.done;
      expect(result.stderr).not.toMatch(STACK_FRAME);
      expect(result.code, result.stderr).toBe(0);
    },
  };
}

beforeAll(async () => {
  ns = await createTestNamespace('rstw');
  expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
  await ns.seed(3);
});

afterAll(async () => {
  // Idempotent: whatever reset left (nothing, when the test passed) goes.
  await ns?.cleanup();
});

describe('txsim reset while a watch follows the namespace', () => {
  it('ends with its report 4 s after the workers stopped; the watch lives on and exits cleanly', async () => {
    const watch = startPlainWatch();
    const workers = ['w1', 'w2'].map((id) => startWorker(id, ns.env, ['--prefetch', '10']));
    try {
      await publishRaw(
        ns.amqp,
        ns.topology,
        Array.from({ length: 20 }, (_, i) => ({ body: txBody({ accountId: 1 + (i % 3) }) })),
      );
      await waitFor(() => /kind=total .*applied=20 /.test(watch.stdout()), 30_000, 'watch to see the 20 deposits applied');
      for (const w of workers) expect(await w.stop()).toBe(0);
      await waitFor(
        () => /kind=total workers=2 active=0 idle=0 stale=0 gone=2 /.test(watch.stdout()),
        10_000,
        'watch to see both workers gone',
      );
      await new Promise((resolve) => setTimeout(resolve, 4_000));

      const reset = await runTxsim(['reset', '--yes', '--json'], ns.env);
      expect(reset.stderr).not.toMatch(STACK_FRAME);
      expect(reset.code, reset.stderr).toBe(0);
      const report = JSON.parse(reset.stdout) as { removed: boolean; queues: { name: string }[]; database: string | null };
      expect(report.removed).toBe(true);
      expect(report.queues.map((q) => q.name)).toContain(ns.topology.processQueue);
      expect(await databaseExists(ns.config.databaseUrl, ns.config.databaseName)).toBe(false);

      // The watch keeps following a namespace that is gone: more refreshes, still running.
      const before = watch.stdout().length;
      await waitFor(() => watch.stdout().length > before, 5_000, 'watch to refresh after the reset');
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(watch.running()).toBe(true);
    } finally {
      for (const w of workers) await w.kill();
    }
    await watch.stop();
  });

  it('a watch whose stats exchange is deleted and declared again at once (bench’s reset) hears the workers after it', async () => {
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    const watch = startPlainWatch();
    let worker: WorkerProcess | null = null;
    try {
      await waitFor(() => /kind=total .* broker=connected queues=/.test(watch.stdout()), 15_000, 'watch to subscribe');
      // What bench's own reset does to its namespace: delete the topology and declare it again, in milliseconds.
      const channel = await ns.amqp.createChannel();
      await channel.deleteExchange(ns.topology.statsExchange);
      await channel.assertExchange(ns.topology.statsExchange, 'fanout', { durable: false });
      await channel.close();

      worker = startWorker('w8', ns.env);
      await waitFor(() => watch.stdout().includes('kind=worker id="w8"'), 20_000, 'watch to hear a worker after the exchange came back');
    } finally {
      await worker?.kill();
    }
    await watch.stop();
  });

  it('a watch that runs through a reset and a new setup hears the new namespace’s workers', async () => {
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    const watch = startPlainWatch();
    let worker: WorkerProcess | null = null;
    try {
      await waitFor(() => /kind=total .* broker=connected queues=/.test(watch.stdout()), 15_000, 'watch to subscribe');
      expect((await runTxsim(['reset', '--yes'], ns.env)).code).toBe(0);
      // The stats exchange went with the namespace: watch says so instead of listening to nothing.
      const gone = `broker_detail=${JSON.stringify(`no ${ns.topology.statsExchange} yet: txsim setup?`)}`;
      await waitFor(() => watch.stdout().includes(gone), 10_000, 'watch to notice the stats exchange is gone');

      expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
      worker = startWorker('w9', ns.env);
      await waitFor(() => watch.stdout().includes('kind=worker id="w9"'), 20_000, 'watch to hear the worker of the new setup');
    } finally {
      await worker?.kill();
    }
    await watch.stop();
  });
});
