import amqp, { type ConsumeMessage } from 'amqplib';
import { ceilingBatchSql, type CeilingRow } from '../db/ceiling.js';
import { createDatabase } from '../db/knex.js';

/**
 * One consumer of `bench --ceiling`, run as its own process (as each bench worker is: the ceiling
 * gets the same number of processes, so the same use of the machine's cores). The simplest code that
 * does what a worker must: consume with a bounded prefetch, parse, write each batch's rows in one
 * transaction, ack after the commit. No validation, authorization, locking read, idempotency check,
 * retry or reconnect: what those cost is what the ceiling is there to show.
 *
 * Started by src/bench/ceiling.ts with its settings as JSON in TXSIM_CEILING_CONSUMER; reports each
 * commit to the parent over the IPC channel and exits non-zero on any error.
 */
export interface CeilingConsumerSettings {
  readonly id: string;
  readonly amqpUrl: string;
  readonly queue: string;
  readonly databaseUrl: string;
  readonly databaseName: string;
  readonly prefetchCount: number;
  readonly batchSizeMax: number;
  /** Batches committing at once (the workers' --transactions). */
  readonly transactionsMax: number;
  readonly batchWaitMs: number;
}

/** What the consumer sends its parent after each commit. */
export interface CeilingProgress {
  readonly committed: number;
}

/** The fields of a transaction message the rows need; anything else in the body is ignored. */
function rowOf(msg: ConsumeMessage): CeilingRow {
  const m = JSON.parse(msg.content.toString('utf8')) as {
    id: string;
    runId?: string;
    type: string;
    accountId: number;
    amountMinor: number | string;
    currency: string;
    createdAt?: string;
  };
  // Every posting credits the customer: the ceiling measures the writes, and a debit could trip the
  // copied no-overdraft CHECK on a long run without a balance check in front of it.
  const amount = BigInt(m.amountMinor);
  return {
    id: m.id,
    runId: m.runId ?? null,
    type: m.type,
    accountId: m.accountId,
    deltaMinor: amount < 0n ? -amount : amount,
    currency: m.currency,
    createdAt: m.createdAt ? new Date(m.createdAt) : null,
    body: msg.content,
  };
}

async function main(settings: CeilingConsumerSettings): Promise<void> {
  const db = createDatabase({
    databaseUrl: settings.databaseUrl,
    databaseName: settings.databaseName,
    poolMax: settings.transactionsMax,
    multipleStatements: true,
  });
  const connection = await amqp.connect(settings.amqpUrl, { clientProperties: { connection_name: `txsim ceiling ${settings.id}` } });
  const channel = await connection.createChannel();
  await channel.prefetch(settings.prefetchCount);
  let committed = 0;
  let batch: ConsumeMessage[] = [];
  let timer: NodeJS.Timeout | null = null;
  let inFlight = 0;
  /** Acks go out in delivery order (one `multiple` ack per batch), whatever order the commits finish in. */
  let ackChain: Promise<void> = Promise.resolve();
  const waiting: ConsumeMessage[][] = [];

  const fail = (err: unknown) => {
    process.stderr.write(`ceiling consumer ${settings.id}: ${(err as Error).message}\n`);
    process.exit(1);
  };
  const commit = (messages: ConsumeMessage[]) => {
    inFlight++;
    const sql = ceilingBatchSql(messages.map(rowOf), settings.id, new Date());
    const done = db.raw(sql);
    ackChain = Promise.all([ackChain, done]).then(() => {
      channel.ack(messages[messages.length - 1]!, true);
      committed += messages.length;
      process.send?.({ committed } satisfies CeilingProgress);
      inFlight--;
      const next = waiting.shift();
      if (next) commit(next);
    });
    ackChain.catch(fail);
  };
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (batch.length === 0) return;
    const full = batch;
    batch = [];
    // Bounded: at most transactionsMax commits at once, the rest wait (and prefetch bounds those).
    if (inFlight < settings.transactionsMax) commit(full);
    else waiting.push(full);
  };
  await channel.consume(settings.queue, (msg) => {
    if (!msg) return fail(new Error('consumer cancelled by the broker'));
    batch.push(msg);
    if (batch.length >= settings.batchSizeMax) flush();
    else timer ??= setTimeout(flush, settings.batchWaitMs);
  });
  process.send?.({ committed: 0 } satisfies CeilingProgress);
  const stop = () => {
    void connection.close().catch(() => {});
    void db.destroy().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const raw = process.env.TXSIM_CEILING_CONSUMER;
if (raw) {
  main(JSON.parse(raw) as CeilingConsumerSettings).catch((err: unknown) => {
    process.stderr.write(`ceiling consumer: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
