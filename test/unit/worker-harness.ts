import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { topologyFor } from '../../src/amqp/topology.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { Incoming, Outcome } from '../../src/worker/apply-batch.js';
import { Worker, type WorkerDeps, type WorkerOptions } from '../../src/worker/worker.js';
import { FakeBroker } from '../helpers/fake-amqp.js';

/** A worker on the fake broker with an injected apply step: what the worker unit tests drive. */

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger that keeps its lines for assertions. */
export function recordingLogger(): { log: Logger; lines: LogLine[]; messages: (level?: 'warn' | 'error') => string[] } {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const log = createLogger('debug', { destination });
  const minLevel = { warn: 40, error: 50 };
  return { log, lines, messages: (level) => lines.filter((l) => l.level >= (level ? minLevel[level] : 0)).map((l) => l.msg) };
}

export const topology = topologyFor('unit', [100, 1_000]);

/** A valid transaction message body. */
export function txBody(accountId = 1): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: randomUUID(),
      type: 'deposit',
      accountId,
      amountMinor: 100,
      currency: 'EUR',
      createdAt: new Date().toISOString(),
    }),
  );
}

/** Every item applied: the outcome `applyBatch` gives a message that went through. */
export function appliedAll(items: readonly Incoming[]): Outcome[] {
  return items.map((item) => {
    if (!item.decoded.ok) throw new Error('test sent an invalid message');
    return { kind: 'applied', id: item.decoded.message.id, message: item.decoded.message, balanceAfterMinor: 0n };
  });
}

/** A promise the test resolves by hand: holds a batch "in the database" as long as it likes. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

export interface Harness {
  readonly broker: FakeBroker;
  readonly worker: Worker;
  /** Each call of the injected applyBatch, with the items it got. */
  readonly calls: (readonly Incoming[])[];
  /** Calls of applyBatch running right now, and the most at once so far. */
  readonly running: { now: number; max: number };
  readonly lines: LogLine[];
  readonly messages: (level?: 'warn' | 'error') => string[];
  /** Publishes `count` valid messages to the process queue. */
  send(count: number, headers?: Record<string, unknown>): void;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  readonly worker?: Partial<WorkerOptions>;
  /** The apply step; every item applied at once by default. */
  readonly apply?: (items: readonly Incoming[], call: number) => Promise<Outcome[]>;
  readonly ping?: () => Promise<void>;
  /** Records failed attempts (the worker's `recordFailures`); none by default. */
  readonly recordFailures?: WorkerDeps['recordFailures'];
}

export async function startWorkerHarness(o: HarnessOptions = {}): Promise<Harness> {
  const broker = new FakeBroker();
  const { log, lines, messages } = recordingLogger();
  const calls: (readonly Incoming[])[] = [];
  const running = { now: 0, max: 0 };
  const apply = o.apply ?? ((items) => Promise.resolve(appliedAll(items)));
  const options: WorkerOptions = {
    workerId: 'w-unit',
    amqpUrl: 'amqp://fake',
    topology,
    prefetchCount: 100,
    batchSizeMax: 10,
    batchWaitMs: 0,
    transactionsMax: 2,
    attemptsMax: 3,
    shutdownDeadlineMs: 1_000,
    ...o.worker,
  };
  const worker = new Worker(
    options,
    {
      applyBatch: async (items) => {
        calls.push(items);
        running.max = Math.max(running.max, ++running.now);
        try {
          return await apply(items, calls.length);
        } finally {
          running.now--;
        }
      },
      pingDatabase: o.ping ?? (() => Promise.resolve()),
      connect: broker.connect,
      ...(o.recordFailures ? { recordFailures: o.recordFailures } : {}),
    },
    log,
  );
  await worker.start();
  return {
    broker,
    worker,
    calls,
    running,
    lines,
    messages,
    send(count, headers = {}) {
      for (let i = 0; i < count; i++) broker.enqueue(topology.processQueue, txBody(), { contentType: 'application/json', headers });
    },
    stop: () => worker.close(),
  };
}

/** Polls until `check` holds (or fails the test after `timeoutMs`). */
export async function until(check: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
