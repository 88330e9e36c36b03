import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { Config } from '../config/config.js';
import { createCeilingTables, dropCeilingTables } from '../db/ceiling.js';
import type { Knex } from '../db/knex.js';
import { createGenerator } from '../gen/generator.js';
import type { CeilingConsumerSettings, CeilingProgress } from './ceiling-consumer.js';
import { cpuPerAppliedTx, idleShareOf, type CpuPerTx } from './cpu-budget.js';
import { CpuSampler, pidsNamed, readMachineTicks } from './cpu-sampler.js';
import { firstMessageOf, forkWithSettings } from './helper-process.js';

/**
 * `bench --ceiling`: what this machine's broker and database do with the bench's load and none of
 * txsim's logic. The same number of messages of the same size and kind (gen's generator, the bench's
 * mix and seed) go through the same broker — persistent, publisher confirms with the bench's window,
 * a quorum queue, published and consumed at once — and the same rows (per message an outcome row, two
 * ledger entries, an outbox event, and the account update; copies of txsim's tables) into the same
 * database, one transaction per batch, acked after the commit, by as many consumer processes as the
 * bench has workers with the same prefetch, batch size and commits in flight (ceiling-consumer.ts).
 *
 * Its queue (`<namespace>.ceiling`) and tables (`ceiling_*`) are its own, created for the run and
 * deleted after it, even when it fails.
 */

/** The settings of a ceiling run: the bench's own. */
export interface CeilingOptions {
  readonly consumers: number;
  readonly count: number;
  readonly accounts: number;
  readonly hotShare: number;
  readonly mix: Readonly<Record<string, number>>;
  readonly seed: string;
  readonly prefetchCount: number;
  readonly batchSizeMax: number;
  readonly transactionsMax: number;
  readonly batchWaitMs: number;
  /** Unconfirmed publishes at most (gen's window in a bench). */
  readonly windowMax: number;
  /** Most time for the whole ceiling run. */
  readonly timeoutMs: number;
}

export interface CeilingResult {
  /** Messages per second from the first publish to the last commit: the ceiling the bench's end-to-end rate is divided by. */
  readonly txPerS: number;
  readonly messages: number;
  readonly elapsedS: number;
  /** Publish rate (confirmed messages per second) of the ceiling's publisher. */
  readonly publishRatePerS: number;
  readonly consumers: number;
  /** Mean body size of the messages, in bytes (the same stream as the bench's). */
  readonly messageBytesAvg: number;
  readonly queue: string;
  /**
   * µs of CPU per message of the ceiling run, per component (consumers, broker, database, and gen: the
   * bench process publishing) and in total: what the machine spends per transaction with no txsim
   * logic, beside the bench's own `cpuUsPerAppliedTx`.
   */
  readonly cpuUsPerTx: CpuPerTx;
  /** Idle share of the machine during the ceiling run. */
  readonly idleShare: number | null;
}

/** The ceiling's queue in the bench namespace. */
export function ceilingQueueOf(namespace: string): string {
  return `${namespace}.ceiling`;
}

const CONSUMER = new URL('./ceiling-consumer.js', import.meta.url).pathname;
/** Longest wait for a consumer to connect and subscribe. */
const CONSUMER_START_TIMEOUT_MS = 30_000;

/**
 * end to end ÷ ceiling, to 3 digits; null when either is missing or the ceiling is 0. Above 1 is
 * possible (the two runs are measured apart, on a shared machine), and reported as measured.
 */
export function efficiencyOf(endToEndRatePerS: number, ceilingTxPerS: number | null): number | null {
  if (ceilingTxPerS === null || !(ceilingTxPerS > 0) || !(endToEndRatePerS >= 0)) return null;
  return Math.round((endToEndRatePerS / ceilingTxPerS) * 1000) / 1000;
}

export async function runCeiling(
  deps: { config: Config; connection: ChannelModel; db: Knex },
  options: CeilingOptions,
): Promise<CeilingResult> {
  const { config, connection, db } = deps;
  const queue = ceilingQueueOf(config.namespace);
  const setup = await connection.createChannel();
  setup.on('error', () => {});
  const consumers: ChildProcess[] = [];
  const committed = new Map<ChildProcess, number>();
  try {
    await setup.deleteQueue(queue);
    await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await createCeilingTables(db);

    let allCommittedAt = 0;
    let onAllCommitted: (() => void) | null = null;
    const total = () => [...committed.values()].reduce((a, b) => a + b, 0);
    const ready: Promise<void>[] = [];
    for (let i = 1; i <= options.consumers; i++) {
      const settings: CeilingConsumerSettings = {
        id: `ceiling-c${i}`,
        amqpUrl: config.amqpUrl,
        queue,
        databaseUrl: config.databaseUrl,
        databaseName: config.databaseName,
        prefetchCount: options.prefetchCount,
        batchSizeMax: options.batchSizeMax,
        transactionsMax: options.transactionsMax,
        batchWaitMs: options.batchWaitMs,
      };
      const child = forkWithSettings(CONSUMER, 'TXSIM_CEILING_CONSUMER', settings);
      consumers.push(child);
      child.on('message', (m: CeilingProgress) => {
        committed.set(child, m.committed);
        if (total() >= options.count && allCommittedAt === 0) {
          allCommittedAt = Date.now();
          onAllCommitted?.();
        }
      });
      ready.push(firstMessageOf(child, CONSUMER_START_TIMEOUT_MS, `ceiling consumer ${settings.id}`));
    }
    await Promise.all(ready);
    // A consumer that dies mid-run fails the run (its exit rejects, caught below as the run's error).
    let failure: ((err: Error) => void) | null = null;
    const failed = new Promise<never>((_resolve, reject) => (failure = reject));
    failed.catch(() => {});
    for (const c of consumers) c.once('exit', (code) => failure?.(new Error(`a ceiling consumer exited with code ${code} mid-run`)));

    const generator = createGenerator({
      runId: randomUUID(),
      seed: `${options.seed}-ceiling`,
      accounts: Array.from({ length: options.accounts }, (_v, i) => ({ id: i + 1, currency: 'EUR' })),
      mix: options.mix,
      amountMinMinor: 100,
      amountMaxMinor: 50_000,
      accountsDist: { kind: 'hot', share: options.hotShare, setSize: 3 },
      invalidShare: 0,
    });
    const publisher = await connection.createConfirmChannel();
    publisher.on('error', () => {});
    const cpu = {
      consumers: new CpuSampler(consumers.flatMap((c) => (c.pid ? [c.pid] : []))),
      broker: new CpuSampler(pidsNamed(['beam.smp'])),
      database: new CpuSampler(pidsNamed(['mariadbd', 'mysqld'])),
      gen: new CpuSampler([process.pid]),
    };
    const machineAtStart = readMachineTicks();
    const t0 = Date.now();
    const deadline = t0 + options.timeoutMs;
    let bytes = 0;
    let publishedAllAt = 0;
    try {
      const publishing = publishAll(publisher, queue, options, (i) => {
        const m = generator.at(i, new Date());
        bytes += m.body.length;
        return { id: m.id, body: m.body, contentType: m.contentType };
      }).then(() => (publishedAllAt = Date.now()));
      const allCommitted = new Promise<void>((resolve) => {
        if (allCommittedAt > 0) resolve();
        onAllCommitted = resolve;
      });
      const timeout = new Promise<never>((_r, reject) =>
        setTimeout(
          () => reject(new Error(`ceiling run did not finish within ${options.timeoutMs} ms`)),
          Math.max(0, deadline - Date.now()),
        ).unref(),
      );
      await Promise.race([Promise.all([publishing, allCommitted]), failed, timeout]);
    } finally {
      await publisher.close().catch(() => {});
    }
    const machineAtEnd = readMachineTicks();
    const cpuS = Object.fromEntries(
      Object.entries(cpu).map(([component, sampler]) => {
        sampler.sample();
        return [component, sampler.measures ? sampler.cpuSecondsSinceStart() : null];
      }),
    );
    const elapsedMs = Math.max(1, allCommittedAt - t0);
    return {
      txPerS: Math.round((options.count * 1000) / elapsedMs),
      messages: options.count,
      elapsedS: Math.round(elapsedMs / 100) / 10,
      publishRatePerS: Math.round((options.count * 1000) / Math.max(1, publishedAllAt - t0)),
      consumers: options.consumers,
      messageBytesAvg: Math.round(bytes / options.count),
      queue,
      cpuUsPerTx: cpuPerAppliedTx(cpuS, options.count),
      idleShare: idleShareOf(machineAtStart, machineAtEnd),
    };
  } finally {
    await Promise.all(consumers.map(stopChild));
    await setup.deleteQueue(queue).catch(() => {});
    await setup.close().catch(() => {});
    await dropCeilingTables(db);
  }
}

/** Publishes `count` persistent messages with confirms, at most `windowMax` unconfirmed at once. */
async function publishAll(
  channel: ConfirmChannel,
  queue: string,
  options: Pick<CeilingOptions, 'count' | 'windowMax'>,
  messageAt: (index: number) => { id: string; body: Buffer; contentType: string },
): Promise<void> {
  let unconfirmed = 0;
  // A holder, not a `let`: it is set in confirm callbacks, which the loop's narrowing cannot see.
  const failure: { error: Error | null } = { error: null };
  let wake: (() => void) | null = null;
  const settled = () => {
    unconfirmed--;
    wake?.();
  };
  for (let i = 0; i < options.count; i++) {
    while (unconfirmed >= options.windowMax && !failure.error) await new Promise<void>((resolve) => (wake = resolve));
    if (failure.error) throw failure.error;
    const m = messageAt(i);
    unconfirmed++;
    const writable = channel.publish('', queue, m.body, { persistent: true, contentType: m.contentType, messageId: m.id }, (err) => {
      if (err) failure.error ??= new Error(`the broker did not confirm a ceiling message: ${String(err)}`);
      settled();
    });
    if (!writable) await new Promise<void>((resolve) => channel.once('drain', resolve));
  }
  while (unconfirmed > 0 && !failure.error) await new Promise<void>((resolve) => (wake = resolve));
  if (failure.error) throw failure.error;
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
