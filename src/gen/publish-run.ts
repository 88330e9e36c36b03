import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { ConfirmPublisher } from '../amqp/publisher.js';
import { assertTopology, HEADERS, type Topology } from '../amqp/topology.js';
import { customerTargets } from '../db/accounts.js';
import type { Knex } from '../db/knex.js';
import { createGenerator, type GeneratedMessage, type GeneratorOptions } from './generator.js';
import { runIdForSeed } from '../domain/ids.js';
import { validateTransaction } from '../domain/message-schema.js';
import type { TransactionType } from '../domain/transaction.js';
import { UsageError } from '../errors.js';
import { createLatencyHistogram, percentilesOf, recordMs, type Percentiles } from '../stats/histogram.js';

export interface PublishRunOptions {
  readonly count: number;
  readonly seed: string;
  /** Target rate in messages per second; 0 = as fast as the broker confirms. */
  readonly ratePerS: number;
  readonly mix: Record<TransactionType, number>;
  /** Explicit account ids, or null for every customer account. */
  readonly accountIds: number[] | null;
  readonly amountMinMinor: number;
  readonly amountMaxMinor: number;
  readonly hotShare: number;
  readonly hotSetSize: number;
  readonly invalidShare: number;
  /** Most unconfirmed messages at once. */
  readonly windowMax: number;
  readonly confirmTimeoutMs: number;
  /** After losing the broker, how long to keep trying to reconnect and re-send before giving up. */
  readonly reconnectTimeoutMs: number;
}

/** Re-send rounds before gen gives up on messages the broker keeps refusing. */
const RECOVERY_ROUNDS_MAX = 20;

interface Session {
  readonly connection: ChannelModel;
  readonly channel: ConfirmChannel;
  readonly publisher: ConfirmPublisher;
  closed: boolean;
}

/**
 * Declares the topology, so a first gen on a fresh broker has somewhere to publish. A least-privilege
 * gen user (write-only on the transactions exchange, see scripts/rabbitmq-users.sh) may not declare:
 * then it only checks, passively, that the exchange exists.
 */
async function ensureExchange(connection: ChannelModel, topology: Topology): Promise<void> {
  const setup = await connection.createChannel();
  setup.on('error', () => {});
  try {
    await assertTopology(setup, topology);
    await setup.close();
  } catch (err) {
    if ((err as { code?: number }).code !== 403) throw err;
    const check = await connection.createChannel();
    await check.checkExchange(topology.transactionsExchange);
    await check.close();
  }
}

/** A confirm channel (topology asserted) and its publisher on a connection. */
async function openSession(connection: ChannelModel, topology: Topology, options: PublishRunOptions): Promise<Session> {
  await ensureExchange(connection, topology);
  const channel = await connection.createConfirmChannel();
  const session: Session = { connection, channel, publisher: new ConfirmPublisher(channel, { windowMax: options.windowMax, confirmTimeoutMs: options.confirmTimeoutMs }), closed: false };
  channel.on('error', () => {}); // surfaced through the publisher's failed confirms
  channel.on('close', () => (session.closed = true));
  connection.on('error', () => {});
  return session;
}

export interface RunProgress {
  readonly published: number;
  readonly confirmed: number;
  readonly returned: number;
  readonly failed: number;
}

export interface RunSummary extends RunProgress {
  readonly runId: string;
  readonly seed: string;
  readonly requested: number;
  readonly invalid: number;
  readonly elapsedMs: number;
  readonly ratePerS: number;
  /** Publish → confirm latency, measured from each message's intended send time (no coordinated omission). */
  readonly confirmLatencyMs: Percentiles;
  readonly completed: boolean;
  readonly firstError: string | null;
}

/**
 * Publishes one run of generated transactions with confirms and records it, so `verify` can
 * account for every id. Stops early (summary.completed = false) on abort or when the broker goes
 * away; the summary then says exactly how many messages were never confirmed.
 */
export async function publishRun(
  deps: { db: Knex; connection: ChannelModel; topology: Topology; reconnect?: () => Promise<ChannelModel> },
  options: PublishRunOptions,
  hooks: { signal?: AbortSignal; onProgress?: (p: RunProgress) => void; onRecover?: (unconfirmed: number) => void } = {},
): Promise<RunSummary> {
  const { db, connection, topology } = deps;
  const accounts = await customerTargets(db, options.accountIds);
  if (accounts.length === 0) {
    throw new UsageError(options.accountIds ? '--accounts: none of those accounts exist — run `txsim accounts seed`' : 'no customer accounts — run `txsim accounts seed --count 100` first');
  }
  const runId = runIdForSeed(options.seed);
  const generatorOptions: GeneratorOptions = {
    runId,
    seed: options.seed,
    accounts,
    mix: options.mix,
    amountMinMinor: options.amountMinMinor,
    amountMaxMinor: options.amountMaxMinor,
    hotShare: options.hotShare,
    hotSetSize: options.hotSetSize,
    invalidShare: options.invalidShare,
  };
  const generator = createGenerator(generatorOptions);
  const startedAt = new Date();
  const optionsJson = JSON.stringify({ ...options, accountIds: options.accountIds ? `${options.accountIds.length} ids` : 'all' });
  // A re-run with the same seed continues the same run: keep the largest count asked for.
  await db.raw(
    `INSERT INTO runs (id, seed, count_requested, options_json, status, started_at) VALUES (?, ?, ?, ?, 'running', ?)
     ON DUPLICATE KEY UPDATE count_requested = GREATEST(count_requested, VALUES(count_requested)), options_json = VALUES(options_json), status = 'running', started_at = VALUES(started_at), finished_at = NULL`,
    [runId, options.seed, options.count, optionsJson, startedAt],
  );

  const histogram = createLatencyHistogram();
  const returnedIds: string[] = [];
  // Every published message stays here until the broker confirms it: after a broker restart these
  // are published again (ids dedupe at the workers), or counted exactly as unconfirmed.
  const unconfirmed = new Map<number, { generated: GeneratedMessage; intendedMs: number }>();
  let published = 0;
  let confirmed = 0;
  let invalid = 0;
  let broken = false;
  let recoveries = 0;
  let firstError: string | null = null;
  const progress = () => ({ published, confirmed, returned: returnedIds.length, failed: broken ? unconfirmed.size : 0 });
  const t0 = performance.now();
  const progressTimer = hooks.onProgress ? setInterval(() => hooks.onProgress?.(progress()), 200) : null;
  // Progress is saved every second, so verify can tell a killed run's unsent tail from lost messages.
  const saveTimer = setInterval(() => {
    db('runs').where('id', runId).update({ published, confirmed }).catch(() => {});
  }, 1_000);

  let session = await openSession(connection, topology, options);
  const send = async (index: number, generated: GeneratedMessage, intendedMs: number): Promise<void> => {
    unconfirmed.set(index, { generated, intendedMs });
    const handle = await session.publisher.publish(topology.transactionsExchange, generated.routingKey, generated.body, {
      messageId: generated.id,
      contentType: generated.contentType,
      timestamp: Math.floor(Date.now() / 1000),
      headers: { [HEADERS.runId]: runId },
    });
    handle.confirmed.then(
      (outcome) => {
        if (!unconfirmed.delete(index)) return;
        if (outcome === 'returned') returnedIds.push(generated.id);
        else confirmed++;
        recordMs(histogram, performance.now() - intendedMs);
      },
      (err: Error) => {
        broken = true;
        firstError ??= err.message;
      },
    );
  };

  /** After a failure: wait for every pending confirm, reconnect if the channel died, re-send what is unconfirmed. */
  const recover = async (): Promise<boolean> => {
    await session.publisher.settled().catch(() => {});
    if (++recoveries > RECOVERY_ROUNDS_MAX) return false;
    if (session.closed) {
      if (!deps.reconnect) return false;
      const deadline = Date.now() + options.reconnectTimeoutMs;
      for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, 5_000)) {
        if (hooks.signal?.aborted || Date.now() > deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        try {
          session = await openSession(await deps.reconnect(), topology, options);
          break;
        } catch (err) {
          firstError = (err as Error).message;
        }
      }
    }
    broken = false;
    hooks.onRecover?.(unconfirmed.size);
    for (const [index, entry] of [...unconfirmed.entries()].sort((a, b) => a[0] - b[0])) {
      try {
        await send(index, entry.generated, entry.intendedMs);
      } catch {
        broken = true;
        break;
      }
    }
    return true;
  };

  let gaveUp = false;
  try {
    for (let index = 0; index < options.count; index++) {
      if (hooks.signal?.aborted) break;
      if (broken && !(await recover())) {
        gaveUp = true;
        break;
      }
      // Paced mode: message i is due at i / rate. Latency is counted from that intended time, so a
      // stall shows up in the percentiles instead of silently slowing the schedule.
      const intendedMs = options.ratePerS > 0 ? t0 + (index * 1000) / options.ratePerS : performance.now();
      const waitMs = intendedMs - performance.now();
      if (waitMs > 1) await new Promise((resolve) => setTimeout(resolve, waitMs));
      // In paced mode a message is "created" at its intended time, so end-to-end latency also
      // counts any delay gen itself added.
      const generated = generator.at(index, new Date(options.ratePerS > 0 ? performance.timeOrigin + intendedMs : Date.now()));
      if (generated.kind === 'valid' && !validateTransaction(generated.message)) {
        throw new Error(`generator produced an invalid message at index ${index}: ${JSON.stringify(validateTransaction.errors)}`);
      }
      if (generated.kind !== 'valid') invalid++;
      published++;
      try {
        await send(index, generated, intendedMs);
      } catch (err) {
        // Kept in `unconfirmed`: the next recovery sends it again.
        broken = true;
        firstError ??= (err as Error).message;
      }
    }
    while (!gaveUp) {
      await session.publisher.settled().catch(() => {});
      await new Promise((resolve) => setImmediate(resolve));
      if (unconfirmed.size === 0 || hooks.signal?.aborted) break;
      if (!(await recover())) gaveUp = true;
    }
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    clearInterval(saveTimer);
    await session.channel.close().catch(() => {});
    if (session.connection !== connection) await session.connection.close().catch(() => {});
  }
  // Let the last confirm callbacks run before counting.
  await new Promise((resolve) => setImmediate(resolve));
  const elapsedMs = performance.now() - t0;
  const failed = unconfirmed.size;
  const completed = published === options.count && failed === 0;
  for (let i = 0; i < returnedIds.length; i += 500) {
    await db('run_returns').insert(returnedIds.slice(i, i + 500).map((id) => ({ run_id: runId, transaction_id: id }))).onConflict().ignore();
  }
  await db('runs').where('id', runId).update({ published, confirmed, returned: returnedIds.length, nacked: failed, invalid, status: completed ? 'completed' : 'incomplete', finished_at: new Date() });
  return {
    runId,
    seed: options.seed,
    requested: options.count,
    published,
    confirmed,
    returned: returnedIds.length,
    failed,
    invalid,
    elapsedMs,
    ratePerS: elapsedMs > 0 ? Math.round((confirmed * 1000) / elapsedMs) : 0,
    confirmLatencyMs: percentilesOf(histogram),
    completed,
    firstError,
  };
}
