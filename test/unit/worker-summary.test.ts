import { afterEach, describe, expect, it } from 'vitest';
import { Worker } from '../../src/worker/worker.js';
import { FakeBroker } from '../helpers/fake-amqp.js';
import { recordingLogger, startWorkerHarness, topology, until, type Harness } from './worker-harness.js';

const DEBUG = 20;
const INFO = 30;

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

describe('worker log volume', () => {
  it('logs each transaction at debug and one info summary per interval, only when something happened', async () => {
    h = await startWorkerHarness({ worker: { summaryIntervalMs: 100 } });
    h.send(25);
    await until(() => h!.broker.acked.length === 25, 'all 25 acked');
    await until(() => h!.lines.some((l) => l.msg === 'outcomes'), 'a summary line');
    const perTransaction = h.lines.filter((l) => l.msg === 'applied');
    expect(perTransaction).toHaveLength(25);
    expect(perTransaction.every((l) => l.level === DEBUG)).toBe(true);
    // The fields a reader of debug logs relies on are still there.
    expect(perTransaction[0]).toMatchObject({ outcome: 'applied', type: 'deposit', account: 1, amountMinor: 100 });
    expect(perTransaction[0]).toHaveProperty('id');
    expect(h.lines.filter((l) => l.level >= INFO && l.msg === 'applied')).toHaveLength(0);
    // Quiet intervals add no line.
    await new Promise((r) => setTimeout(r, 350));
    const summaries = h.lines.filter((l) => l.msg === 'outcomes');
    expect(summaries.every((l) => l.level === INFO)).toBe(true);
    expect(summaries.reduce((sum, l) => sum + (l.applied as number), 0)).toBe(25);
    expect(summaries.length).toBeLessThanOrEqual(2);
    expect(summaries.at(-1)).toMatchObject({ rejected: 0, retried: 0, parked: 0, totalApplied: 25 });
  });

  it('a worker whose start was given up logs nothing when closed (no stray "worker stopped")', async () => {
    const broker = new FakeBroker();
    const { log, lines } = recordingLogger();
    const options = {
      workerId: 'w',
      amqpUrl: 'amqp://fake',
      topology,
      prefetchCount: 1,
      batchSizeMax: 1,
      batchWaitMs: 0,
      transactionsMax: 1,
      attemptsMax: 1,
      shutdownDeadlineMs: 100,
    };
    const worker = new Worker(
      options,
      { applyBatch: () => Promise.resolve([]), pingDatabase: () => Promise.resolve(), connect: broker.connect },
      log,
    );
    // The database check failed before start(): the command closes the worker it built.
    await worker.close();
    expect(lines.map((l) => l.msg)).toEqual([]);
  });
});
