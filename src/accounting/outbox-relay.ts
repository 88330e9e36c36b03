import { randomUUID } from 'node:crypto';
import type { ConnectionFactory } from '../amqp/connect.js';
import { ManagedConnection, type ManagedChannel } from '../amqp/managed-channel.js';
import { PublishError, type ConfirmPublisher } from '../amqp/publisher.js';
import { assertTopology, HEADERS, type Topology } from '../amqp/topology.js';
import type { Knex } from '../db/knex.js';
import { claimUnsentOutboxEvents, deleteSentOutboxEvents, markOutboxEventsSent, releaseRelayLease, takeRelayLease } from '../db/outbox.js';
import { isMissingTable } from '../db/rows.js';
import type { Logger } from '../log.js';
import type { HopTimings } from '../stats/hops.js';
import {
  ACCOUNTING_EVENTS_ROUTING_KEY,
  ACCOUNTING_EVENTS_TYPE,
  accountingRoutingKey,
  encodeAccountingEvent,
  encodeAccountingEvents,
  eventFromOutboxRow,
  type AccountingEvent,
} from '../domain/accounting-event.js';

/**
 * The outbox relay: moves committed outbox events to the accounting exchange. It runs inside every
 * worker process, so many replicas relay at once; each claims a small batch of unsent rows with
 * `SELECT … FOR UPDATE SKIP LOCKED` (replicas never wait on, or double-send, each other's rows),
 * publishes them with confirms, and marks them sent in the same DB transaction that holds the claim.
 * By default up to `eventsPerMessageMax` events travel in one message (domain/accounting-event.ts):
 * the broker then stores, confirms and delivers one message per hundred events instead of one per
 * event. With `eventsPerMessageMax` 1 each event is its own message, routed by `<outcome>.<accountId>`.
 *
 * Guarantees:
 * - Never publishes an event whose transaction rolled back: an outbox row exists only once the
 *   worker's transaction committed, and a row still being inserted is locked, so it is skipped.
 * - At least once: a relay that dies after publishing and before its commit leaves the rows unsent
 *   (its transaction rolls back with the connection); the next claim publishes them again, and the
 *   accounting side deduplicates by event id.
 * - Bounded: at most `batchSizeMax` rows per claim, each publish confirmed within `confirmTimeoutMs`.
 *
 * One relay claims at a time: the one holding the relay lease (sql/010-relay-lease.sql), renewed
 * before a claim once a third of the lease has passed; the others stand by and take it over once it
 * lapses (`leaseMs` after its holder's last renewal: died, hung, or cut off from the database) or is
 * released (its holder stopped). Three relays claiming at once cost about an eighth of the throughput (BENCHMARKS.md).
 * The lease is an economy, not a guarantee: a lapsed holder that wakes up claims beside the new one
 * for one step, and SKIP LOCKED keeps that correct, as it always did.
 */

/** Settings of a relay. Units in the names. */
export interface OutboxRelayOptions {
  /** Most events claimed and published in one DB transaction (the claim holds their row locks). */
  readonly batchSizeMax: number;
  /**
   * Most events in one published message (1 to ACCOUNTING_EVENTS_PER_MESSAGE_MAX). 1: a message per
   * event, routed by `<outcome>.<accountId>` for subscribers that bind by account or outcome.
   */
  readonly eventsPerMessageMax: number;
  /** Wait between polls when the last claim found less than a full batch. */
  readonly idleIntervalMs: number;
  /** Sent events are deleted once they are older than this. */
  readonly retentionMs: number;
  /** How often to prune sent events. */
  readonly pruneIntervalMs: number;
  /** Most rows deleted per prune statement (a prune pass runs a bounded number of them). */
  readonly pruneBatchMax: number;
  /** A broker confirm slower than this fails the batch; the rows stay unsent and are claimed again. */
  readonly confirmTimeoutMs: number;
  /** Cap of the backoff after a failed step (broker or database trouble). */
  readonly errorBackoffMaxMs: number;
  /** How long the relay lease lasts after its last renewal: how soon a standing-by relay takes over from a dead one. */
  readonly leaseMs: number;
  /** How often a relay without the lease asks for it. */
  readonly standbyIntervalMs: number;
}

export const DEFAULT_RELAY_OPTIONS: OutboxRelayOptions = {
  // 500, not 100: fewer claims and marks per event; measured -13 % CPU per transaction (BENCHMARKS.md).
  batchSizeMax: 500,
  // 100, not 1: the relay's messages cost the broker about a third of its CPU per transaction; measured
  // -35 % broker CPU per transaction and +9 % end to end (BENCHMARKS.md). A message stays ~40 KB.
  eventsPerMessageMax: 100,
  idleIntervalMs: 100,
  retentionMs: 60 * 60_000,
  pruneIntervalMs: 60_000,
  pruneBatchMax: 1_000,
  confirmTimeoutMs: 10_000,
  errorBackoffMaxMs: 5_000,
  leaseMs: 3_000,
  standbyIntervalMs: 500,
};

/**
 * Test seams. `afterPublish` runs between the broker's confirms and the mark-sent update, inside the
 * claiming transaction (`trx`): the moment where a crash re-publishes.
 */
export interface RelayHooks {
  readonly afterPublish?: (events: readonly AccountingEvent[], trx: Knex.Transaction) => Promise<void> | void;
  /** Every event of the batch is confirmed, at `confirmedAtMs`: the end of the relay hop. */
  readonly onConfirmed?: (events: readonly AccountingEvent[], confirmedAtMs: number) => void;
}

/** A batch could not be published completely; the whole claim is rolled back and retried. */
export class RelayPublishError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RelayPublishError';
  }
}

// READ COMMITTED on purpose. Under REPEATABLE READ a locking scan takes next-key (gap) locks, and the
// gap after the last unsent row is exactly where workers insert new outbox rows: every worker commit
// would wait for the relay's broker round trip. READ COMMITTED locks only the rows it claims.
const RELAY_TRANSACTION = { isolationLevel: 'read committed' } as const;

/** How many events one relay step claims, and how many of them travel in one message. */
export type RelayBatchLimits = Pick<OutboxRelayOptions, 'batchSizeMax' | 'eventsPerMessageMax'>;

/**
 * One relay step: claim up to `batchSizeMax` unsent events (oldest first), publish them (up to
 * `eventsPerMessageMax` a message) with confirms, and mark them sent — all in one DB transaction, so
 * a crash anywhere before the commit leaves them unsent. Returns how many events were relayed. Throws (after rolling back) when any
 * publish is nacked, returned unroutable, or not confirmed in time.
 */
export async function relayOutboxBatch(
  db: Knex,
  publisher: ConfirmPublisher,
  exchange: string,
  limits: RelayBatchLimits,
  hooks: RelayHooks = {},
): Promise<number> {
  return db.transaction(async (trx) => {
    const rows = await claimUnsentOutboxEvents(trx, limits.batchSizeMax);
    if (rows.length === 0) return 0;
    const events = rows.map(eventFromOutboxRow);
    await publishAll(publisher, exchange, events, limits.eventsPerMessageMax);
    hooks.onConfirmed?.(events, Date.now());
    await hooks.afterPublish?.(events, trx);
    await markOutboxEventsSent(
      trx,
      rows.map((r) => r.id),
    );
    return events.length;
  }, RELAY_TRANSACTION);
}

/** A message of the relay: its body and how it is published. */
interface RelayMessage {
  readonly routingKey: string;
  readonly body: Buffer;
  readonly messageId: string;
  readonly type: string;
  readonly occurredAt: string;
  /** For errors: which events it carries. */
  readonly what: string;
}

/** The messages of a batch: one per event, or up to `eventsPerMessageMax` events in each. */
function messagesOf(events: readonly AccountingEvent[], eventsPerMessageMax: number): RelayMessage[] {
  if (eventsPerMessageMax <= 1)
    return events.map((event) => ({
      routingKey: accountingRoutingKey(event),
      body: encodeAccountingEvent(event),
      messageId: event.eventId,
      type: `transaction.${event.outcome}`,
      occurredAt: event.occurredAt,
      what: `event ${event.eventId}`,
    }));
  const messages: RelayMessage[] = [];
  for (let i = 0; i < events.length; i += eventsPerMessageMax) {
    const chunk = events.slice(i, i + eventsPerMessageMax);
    const first = chunk[0]!;
    messages.push({
      routingKey: ACCOUNTING_EVENTS_ROUTING_KEY,
      body: encodeAccountingEvents(chunk),
      // The same events in the same order get the same id when a crash makes the relay publish them again.
      messageId: `${first.eventId}+${chunk.length}`,
      type: ACCOUNTING_EVENTS_TYPE,
      occurredAt: first.occurredAt,
      what: `${chunk.length} events from ${first.eventId}`,
    });
  }
  return messages;
}

/** Publishes a batch pipelined (all its messages in flight at once) and waits for every confirm. */
async function publishAll(
  publisher: ConfirmPublisher,
  exchange: string,
  events: readonly AccountingEvent[],
  eventsPerMessageMax: number,
): Promise<void> {
  const confirms: Promise<unknown>[] = [];
  let failure: unknown = null;
  try {
    for (const message of messagesOf(events, eventsPerMessageMax)) {
      const { confirmed } = await publisher.publish(exchange, message.routingKey, message.body, {
        messageId: message.messageId,
        contentType: 'application/json',
        type: message.type,
        timestamp: Math.floor(Date.parse(message.occurredAt) / 1000),
        // The start of the statement hop (the accounting consumer measures relayed → statement written).
        headers: { [HEADERS.relayedAtMs]: Date.now() },
      });
      confirms.push(
        confirmed.then((outcome) => {
          // Unroutable means the accounting queue or binding is missing: the events reached no one.
          if (outcome === 'returned') throw new RelayPublishError(`${message.what} returned unroutable by ${exchange}`);
        }),
      );
    }
  } catch (err) {
    failure = err;
  }
  // Wait for every confirm even after a failure, so nothing of this batch is still in flight when
  // the transaction ends.
  const settled = await Promise.allSettled(confirms);
  failure ??= settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')?.reason ?? null;
  if (failure !== null)
    throw failure instanceof RelayPublishError
      ? failure
      : new RelayPublishError(`publish failed: ${(failure as Error).message}`, { cause: failure });
}

/** Statements of `batchMax` deletions one prune makes at most, so relaying is not held up for long. */
export const PRUNE_STATEMENTS_MAX = 20;

/**
 * Deletes events sent before `sentBefore`, at most `batchMax` per statement and `statementsMax`
 * statements per call. Unsent events are never touched. Returns how many were deleted.
 */
export async function pruneOutbox(db: Knex, sentBefore: Date, batchMax: number, statementsMax = PRUNE_STATEMENTS_MAX): Promise<number> {
  let deleted = 0;
  for (let i = 0; i < statementsMax; i++) {
    const n = await db.transaction((trx) => deleteSentOutboxEvents(trx, sentBefore, batchMax), RELAY_TRANSACTION);
    deleted += n;
    if (n < batchMax) break;
  }
  return deleted;
}

/** Counters of one relay, for logs and stats. */
export interface RelayMetrics {
  relayed: number;
  batches: number;
  failures: number;
  pruned: number;
  /** This relay holds the relay lease (claims); false while it stands by. */
  leaseHeld: boolean;
}

/**
 * The relay loop of one process: its own recovering AMQP connection and confirm channel, a poll
 * loop over `relayOutboxBatch` with capped backoff after failures, and a periodic prune. `close()`
 * is idempotent: it lets the current step finish (bounded by the confirm timeout), then closes the
 * connection. The caller owns (and closes) the database pool.
 */
export class OutboxRelay {
  readonly metrics: RelayMetrics = { relayed: 0, batches: 0, failures: 0, pruned: 0, leaseHeld: false };
  private readonly connection: ManagedConnection;
  /** A confirm channel with its publisher, rebuilt after every reconnect. */
  private readonly channel: ManagedChannel;
  private loop: Promise<void> | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private nextPruneAtMs: number;
  private readonly hooks: RelayHooks;
  /** Who this relay is in the lease: its id, made unique per process start (two workers may share an id). */
  private readonly leaseHolder: string;
  /** The lease table is missing (a database set up before it): every relay claims, as before the lease. */
  private leaseUnavailable = false;
  /** When (this process's monotonic clock, ms) the lease was last taken or renewed; meaningful while `metrics.leaseHeld`. */
  private leaseRenewedAtMs = 0;

  constructor(
    private readonly deps: {
      db: Knex;
      amqpUrl: string;
      topology: Topology;
      log: Logger;
      relayId: string;
      connect?: ConnectionFactory;
      /** How long start() waits for the broker (default 15 s). */
      connectTimeoutMs?: number;
      /** Where the relay hop (outcome recorded → event confirmed) is recorded: the worker's hop timings. */
      hops?: Pick<HopTimings, 'record'>;
    },
    private readonly options: OutboxRelayOptions = DEFAULT_RELAY_OPTIONS,
  ) {
    this.leaseHolder = `${deps.relayId.slice(0, 80)}:${process.pid}:${randomUUID().slice(0, 8)}`;
    const hops = deps.hops;
    // occurredAt is the outcome's time (the worker's batch, to the ms): the relay hop counts from there.
    this.hooks = hops
      ? { onConfirmed: (events, confirmedAtMs) => events.forEach((e) => hops.record('relay', confirmedAtMs - Date.parse(e.occurredAt))) }
      : {};
    // Replicas started together should not all prune at the same moment.
    this.nextPruneAtMs = Date.now() + Math.round(options.pruneIntervalMs * (0.5 + Math.random() / 2));
    this.connection = new ManagedConnection({
      url: deps.amqpUrl,
      log: deps.log,
      clientName: `txsim relay ${deps.relayId}`,
      setup: (channel) => assertTopology(channel, deps.topology),
      // Bounded by time instead: connectTimeoutMs.
      initialMaxRetries: Infinity,
      ...(deps.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: deps.connectTimeoutMs }),
      ...(deps.connect ? { connect: deps.connect } : {}),
    });
    this.channel = this.connection.channel({
      name: 'relay channel',
      publisher: { windowMax: options.batchSizeMax, confirmTimeoutMs: options.confirmTimeoutMs },
      // A waiting poll loop goes on at once with the new channel.
      onOpen: () => this.wake?.(),
    });
  }

  /** Connects (waiting for the broker with backoff) and starts the poll loop; not when `signal` aborts first. */
  async start(signal?: AbortSignal): Promise<void> {
    const { log, topology } = this.deps;
    if (!(await this.connection.start(signal))) return;
    this.loop = this.run();
    log.info(
      {
        batchSizeMax: this.options.batchSizeMax,
        eventsPerMessageMax: this.options.eventsPerMessageMax,
        exchange: topology.accountingExchange,
      },
      'outbox relay started',
    );
  }

  private async run(): Promise<void> {
    const { db, log, topology } = this.deps;
    let backoffMs = 0;
    while (!this.closing) {
      const publisher: ConfirmPublisher | null = this.channel.publisher;
      if (!publisher) {
        await this.pause(this.options.idleIntervalMs);
        continue;
      }
      try {
        if (!(await this.holdLease())) {
          await this.pause(this.options.standbyIntervalMs);
          continue;
        }
        const relayed = await relayOutboxBatch(db, publisher, topology.accountingExchange, this.options, this.hooks);
        backoffMs = 0;
        if (relayed > 0) {
          this.metrics.relayed += relayed;
          this.metrics.batches++;
          log.debug({ relayed }, 'outbox events relayed');
        }
        await this.pruneWhenDue();
        if (relayed < this.options.batchSizeMax) await this.pause(this.options.idleIntervalMs);
      } catch (err) {
        this.metrics.failures++;
        backoffMs = Math.min(this.options.errorBackoffMaxMs, Math.max(100, backoffMs * 2));
        log.warn(
          {
            err: (err as Error).message,
            retryInMs: backoffMs,
            kind: err instanceof PublishError || err instanceof RelayPublishError ? 'broker' : 'database',
          },
          'outbox relay step failed; events stay unsent',
        );
        await this.pause(backoffMs);
      }
    }
  }

  /** Takes the lease, or renews it when a third of it has passed, before a claim; logs when this relay starts or stops claiming. */
  private async holdLease(): Promise<boolean> {
    if (this.leaseUnavailable) return true;
    // Renewed less than a third of the lease ago: still held for at least two thirds of it. Each renewal
    // is a durable commit (an fsync), so a busy relay renews about once a second, not before every claim.
    const nowMs = performance.now();
    if (this.metrics.leaseHeld && nowMs - this.leaseRenewedAtMs < this.options.leaseMs / 3) return true;
    let held: boolean;
    try {
      held = await takeRelayLease(this.deps.db, this.leaseHolder, this.options.leaseMs);
    } catch (err) {
      if (!isMissingTable(err)) throw err;
      this.leaseUnavailable = true;
      this.deps.log.warn('no relay lease table (run txsim setup): every relay claims at once, as before it');
      return true;
    }
    if (held !== this.metrics.leaseHeld)
      this.deps.log.info(
        { holder: this.leaseHolder },
        held ? 'outbox relay holds the lease: claiming' : 'outbox relay lost the lease: standing by',
      );
    this.metrics.leaseHeld = held;
    this.leaseRenewedAtMs = nowMs;
    return held;
  }

  private async pruneWhenDue(): Promise<void> {
    if (Date.now() < this.nextPruneAtMs) return;
    this.nextPruneAtMs = Date.now() + this.options.pruneIntervalMs;
    const pruned = await pruneOutbox(this.deps.db, new Date(Date.now() - this.options.retentionMs), this.options.pruneBatchMax);
    // A full prune leaves more behind: under a load above its rate (20,000 rows a minute by default)
    // the table would grow for as long as the load lasts. Prune again after the next batch instead.
    if (pruned >= this.options.pruneBatchMax * PRUNE_STATEMENTS_MAX) this.nextPruneAtMs = Date.now();
    this.metrics.pruned += pruned;
    if (pruned > 0) this.deps.log.info({ pruned }, 'pruned sent outbox events');
  }

  /** Waits `ms`, or less when closing or when a new channel opens. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  /** Stops polling, lets the current step finish, closes the connection. Safe to call twice. */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    this.wake?.();
    const steps: [string, () => Promise<unknown>][] = [
      [
        'finish current step',
        async () => {
          await this.loop;
        },
      ],
      [
        'release the lease',
        async () => {
          if (this.metrics.leaseHeld) await releaseRelayLease(this.deps.db, this.leaseHolder);
          this.metrics.leaseHeld = false;
        },
      ],
      ['close connection', () => this.connection.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.deps.log.warn({ step: name, err: (err as Error).message }, 'relay shutdown step failed; continuing');
      }
    }
    this.deps.log.info({ ...this.metrics }, 'outbox relay stopped');
  }
}
