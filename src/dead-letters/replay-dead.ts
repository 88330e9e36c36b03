import type { ChannelModel, GetMessage, MessagePropertyHeaders } from 'amqplib';
import { ConfirmPublisher, type PublishOutcome } from '../amqp/publisher.js';
import { HEADERS, type Topology } from '../amqp/topology.js';
import type { FailureRecord } from '../db/transaction-failures.js';
import { attemptRoutingKey, encodeAttemptEvent, ERROR_MESSAGE_CHARS_MAX, type AttemptEvent } from '../domain/attempt-event.js';
import { LOWERCASE_UUID_PATTERN } from '../domain/ids.js';
import { bodyFields, checkQueue, originalRoutingKey } from './inspect-errors.js';
import { walkQueue, WalkInterruptedError, WALK_PAGE_MAX, type QueueVisitor, type Settlement } from '../amqp/queue-walk.js';

/**
 * Gives parked messages another try: each selected message of the dead queue is republished to
 * the transactions exchange under its original routing key, with its attempt count reset, recorded
 * as replayed, and only then acked (removed from the dead queue). The queue is walked a page at a
 * time (queue-walk.ts), so what stays parked keeps its order, is never counted as delivered, and at
 * most a page is held.
 *
 * The order of the steps, for at-least-once with a durable record: republish → broker's confirm →
 * record (committed) → ack of the parked message. Each step starts only once the one before it is
 * durable, so a crash between any two leaves a state a later replay repairs:
 *
 * - before the confirm: nothing is recorded and the message is still parked; a copy the broker did
 *   take is a duplicate the worker recognises by its id (same id, same body) and ignores;
 * - after the confirm, before the record: still parked, and the status reads still say parked, which is
 *   true of the dead queue; a later replay republishes (a duplicate, ignored) and records it;
 * - after the record, before the ack: recorded replayed with a copy queued, and the parked original
 *   left behind; a later replay makes a duplicate the worker ignores.
 *
 * The other orders lose something for good. Recording first would record replays that never happened
 * (unroutable, nacked, a crash before the publish) and show a still-parked message as queued with
 * nothing to correct it. Acking before the record (as this did before) could drop the record forever:
 * once the message has left the dead queue no later replay will record it, and the status reads show
 * it parked while a worker has it. A database that cannot take the record therefore leaves the
 * message parked (exit 6), copy and all, rather than removing it unrecorded.
 *
 * A read of the dead queue that stops part-way (its channel or connection closed) ends the replay:
 * the report keeps what was replayed and recorded before, with `interrupted` saying how far it got,
 * and the page in hand goes back to the dead queue — a message of it already recorded is the third
 * case above, and is listed in `failed` as such. (A close that falls just as the page's ack is on its
 * way may leave a message listed as replayed still parked: the third case again, harmless.)
 */

export interface ReplayOptions {
  /** Only these transaction ids (lowercase UUIDs); null = any. */
  readonly ids: readonly string[] | null;
  /** Most messages replayed. */
  readonly limit: number;
  /** A republish not confirmed within this fails (the dead message stays). */
  readonly confirmTimeoutMs?: number;
}

export interface ReplayDeps {
  readonly connection: ChannelModel;
  readonly topology: Topology;
  /**
   * Writes the replay records of a page's confirmed republishes durably (`transaction_failures`,
   * state `replayed`) and resolves once they are committed; a message is removed from the dead queue
   * only after. When it throws, those messages stay parked and the replay stops.
   */
  readonly record: (records: readonly FailureRecord[]) => Promise<void>;
}

/** One message put back: its id, account, type and amount (from the body, null when unreadable), the attempts it was parked after. */
export interface ReplayedMessage {
  readonly id: string | null;
  readonly routingKey: string;
  readonly accountId: number | null;
  readonly type: string | null;
  /** Integer minor units as a string, as all money in --json. */
  readonly amountMinor: string | null;
  readonly currency: string | null;
  /** The worker's attempt count when it parked the message; null when RabbitMQ dead-lettered it. */
  readonly attemptsBefore: number | null;
  readonly replayedAt: string;
}

export interface ReplayReport {
  readonly queue: string;
  readonly exchange: string;
  readonly scanned: number;
  readonly replayed: readonly ReplayedMessage[];
  /** Selected but left in the dead queue, and why. */
  readonly failed: readonly { readonly id: string | null; readonly error: string }[];
  /** Requested ids not found in the dead queue; empty when interrupted (the read did not get to the end). */
  readonly notFound: readonly string[];
  /**
   * Only when the read of the dead queue stopped part-way (its channel or connection closed): how far
   * it got. `replayed` is what was replayed, recorded and removed before; the rest is still parked.
   */
  readonly interrupted?: string;
}

/** Headers that describe the failed attempts; a replay starts over without them. */
const RESET_HEADERS = [
  HEADERS.attempts,
  HEADERS.lastError,
  HEADERS.workerId,
  HEADERS.failedAt,
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-delivery-count',
];

/** The headers of a replayed message: the original ones (run id, routing key) minus the failure record. */
export function replayHeaders(headers: MessagePropertyHeaders | undefined, replayedAt: Date): MessagePropertyHeaders {
  const out: MessagePropertyHeaders = { ...headers };
  for (const name of RESET_HEADERS) delete out[name];
  out['x-txsim-replayed-at'] = replayedAt.toISOString();
  return out;
}

export async function replayDead(deps: ReplayDeps, options: ReplayOptions): Promise<ReplayReport> {
  const { topology: t } = deps;
  // A confirm channel of its own: the walk copies what stays parked and acks a page at once (queue-walk.ts).
  const getChannel = await deps.connection.createConfirmChannel();
  getChannel.on('error', () => {
    // A missing dead queue closes the channel with 404; checkQueue's rejection reports it.
  });
  const confirmChannel = await deps.connection.createConfirmChannel();
  confirmChannel.on('error', () => {
    // The publisher fails its pending publishes on 'error'/'close'; each shows up in `failed`.
  });
  // A page's republishes are all in flight at once: the walk holds no more than a page.
  const publisher = new ConfirmPublisher(confirmChannel, {
    windowMax: WALK_PAGE_MAX,
    confirmTimeoutMs: options.confirmTimeoutMs ?? 10_000,
  });
  const replay = new PageReplay(deps, options, publisher);
  try {
    const depth = await checkQueue(getChannel, t.deadQueue);
    await walkQueue(getChannel, t.deadQueue, { depth }, replay);
  } catch (err) {
    // The channel went mid-walk: what was replayed and recorded before is reported, the rest stays parked.
    if (!(err instanceof WalkInterruptedError)) throw err;
    replay.interrupt(err);
  } finally {
    // The walk settled everything it fetched; a failure part-way hands back what the channel still held.
    await getChannel.close().catch(() => {});
    await confirmChannel.close().catch(() => {});
  }
  return replay.report(t);
}

/** A republish in flight: where its message is in the page, and what the report and the record need of it. */
interface InFlight {
  readonly index: number;
  readonly id: string | null;
  readonly routingKey: string;
  readonly msg: GetMessage;
  readonly body: ReturnType<typeof bodyFields>;
  readonly confirmed: Promise<PublishOutcome>;
}

/**
 * The replay as a visitor of the dead queue's pages: selects, republishes, waits for the page's
 * confirms, records them, and says which messages may leave the queue (those confirmed and recorded).
 * They count as replayed once the walk has removed them (`settled`).
 */
class PageReplay implements QueueVisitor {
  private readonly wanted: ReadonlySet<string> | null;
  private readonly found = new Set<string>();
  readonly replayed: ReplayedMessage[] = [];
  readonly failed: { id: string | null; error: string }[] = [];
  /** The page's confirmed and recorded replays, until the walk has removed them from the dead queue. */
  private recorded: ReplayedMessage[] = [];
  private interrupted: string | undefined;
  private scanned = 0;
  private selected = 0;
  /** Cleared when the replay must stop (the publisher or the record failed): the rest stays parked. */
  private going = true;

  constructor(
    private readonly deps: ReplayDeps,
    private readonly options: ReplayOptions,
    private readonly publisher: ConfirmPublisher,
  ) {
    this.wanted = options.ids ? new Set(options.ids) : null;
  }

  wantsMore(): boolean {
    return this.going && this.selected < this.options.limit && !(this.wanted && this.found.size === this.wanted.size);
  }

  async visit(page: readonly GetMessage[]): Promise<Settlement[]> {
    this.recorded = [];
    const settlements = page.map((): Settlement => 'keep');
    const inFlight = await this.republishSelected(page);
    const confirmed: InFlight[] = [];
    for (const p of inFlight) {
      try {
        if ((await p.confirmed) === 'returned')
          this.failed.push({
            id: p.id,
            error: `unroutable: nothing bound to ${this.deps.topology.transactionsExchange} for ${p.routingKey}`,
          });
        else confirmed.push(p);
      } catch (err) {
        this.failed.push({ id: p.id, error: (err as Error).message });
      }
    }
    if (confirmed.length === 0) return settlements;
    const messages = confirmed.map((p) => replayedMessage(p));
    try {
      // Durable before the ack: see the module comment for why this order.
      await this.deps.record(
        replayRecords({ queue: this.deps.topology.deadQueue, exchange: this.deps.topology.transactionsExchange, replayed: messages }),
      );
    } catch (err) {
      for (const p of confirmed)
        this.failed.push({
          id: p.id,
          error: `republished, but the replay could not be recorded (${(err as Error).message}); left in ${this.deps.topology.deadQueue}: a later replay makes a duplicate the worker ignores`,
        });
      this.going = false;
      return settlements;
    }
    for (const p of confirmed) settlements[p.index] = 'remove';
    this.recorded = messages;
    return settlements;
  }

  settled(): void {
    this.replayed.push(...this.recorded);
    this.recorded = [];
  }

  /** The walk stopped part-way: the page's recorded replays were not removed, and say so; nothing more is replayed. */
  interrupt(err: WalkInterruptedError): void {
    for (const r of this.recorded)
      this.failed.push({
        id: r.id,
        error: `republished and recorded as replayed, but the read of ${err.queue} stopped before it was removed; still parked: a later replay makes a duplicate the worker ignores`,
      });
    this.recorded = [];
    this.interrupted = err.message;
    this.going = false;
  }

  /** Selects the page's messages to replay (up to the limit) and hands each copy to the broker; their confirms are awaited by the caller. */
  private async republishSelected(page: readonly GetMessage[]): Promise<InFlight[]> {
    const inFlight: InFlight[] = [];
    for (const [index, msg] of page.entries()) {
      // Enough selected: the rest of the page stays parked.
      if (!this.wantsMore()) break;
      this.scanned++;
      const body = bodyFields(msg.content);
      const id = body.id ?? (typeof msg.properties.messageId === 'string' ? msg.properties.messageId.toLowerCase() : null);
      // Not selected: put back in its place.
      if (this.wanted && (id === null || !this.wanted.has(id))) continue;
      if (id !== null) this.found.add(id);
      this.selected++;
      const routingKey = originalRoutingKey(msg.properties, body.type);
      if (routingKey === null) {
        this.failed.push({ id, error: 'no original routing key (no header, no x-death, no type in the body)' });
        continue;
      }
      try {
        const { confirmed } = await republish(this.publisher, this.deps.topology.transactionsExchange, routingKey, msg);
        inFlight.push({ index, id, routingKey, msg, body, confirmed });
      } catch (err) {
        // The confirm channel is gone: nothing more can be republished.
        this.failed.push({ id, error: (err as Error).message });
        this.going = false;
        break;
      }
    }
    return inFlight;
  }

  report(t: Topology): ReplayReport {
    return {
      queue: t.deadQueue,
      exchange: t.transactionsExchange,
      scanned: this.scanned,
      replayed: this.replayed,
      failed: this.failed,
      notFound: this.wanted && this.interrupted === undefined ? [...this.wanted].filter((id) => !this.found.has(id)) : [],
      ...(this.interrupted === undefined ? {} : { interrupted: this.interrupted }),
    };
  }
}

/** What the report says of a confirmed republish. */
function replayedMessage(p: InFlight): ReplayedMessage {
  const attempts = p.msg.properties.headers?.[HEADERS.attempts] as unknown;
  return {
    id: p.id,
    routingKey: p.routingKey,
    accountId: p.body.accountId,
    type: p.body.type,
    amountMinor: p.body.amountMinor,
    currency: p.body.currency,
    attemptsBefore: typeof attempts === 'number' && Number.isSafeInteger(attempts) && attempts > 0 ? attempts : null,
    replayedAt: new Date().toISOString(),
  };
}

/** Hands the copy to the broker; `confirmed` settles with the broker's answer. */
function republish(
  publisher: ConfirmPublisher,
  exchange: string,
  routingKey: string,
  msg: GetMessage,
): Promise<{ confirmed: Promise<PublishOutcome> }> {
  // amqplib types these properties as `any`; they are what the broker delivered.
  const p = msg.properties as {
    contentType?: string;
    contentEncoding?: string;
    messageId?: string;
    timestamp?: number;
    headers?: GetMessage['properties']['headers'];
  };
  return publisher.publish(exchange, routingKey, msg.content, {
    contentType: p.contentType,
    contentEncoding: p.contentEncoding,
    messageId: p.messageId,
    timestamp: p.timestamp,
    headers: replayHeaders(p.headers, new Date()),
  });
}

/**
 * The records of a replay for the status reads (`transaction_failures`, state `replayed`): a
 * replayed message shows as queued again until its next attempt is recorded. A message without a
 * UUID for its id has no status to update.
 */
export function replayRecords(report: Pick<ReplayReport, 'queue' | 'exchange' | 'replayed'>): FailureRecord[] {
  return report.replayed.flatMap((r) =>
    r.id === null || !LOWERCASE_UUID_PATTERN.test(r.id)
      ? []
      : [
          {
            transactionId: r.id,
            state: 'replayed' as const,
            accountId: r.accountId,
            attempt: r.attemptsBefore ?? 0,
            errorCode: 'replayed',
            errorMessage: `put back on ${report.exchange} (${r.routingKey}) from ${report.queue}`.slice(0, ERROR_MESSAGE_CHARS_MAX),
            workerId: 'txsim replay-dead',
            failedAt: new Date(r.replayedAt),
          },
        ],
  );
}

/**
 * The live feed's event of each recorded replay (`replayed` on `<ns>.feed`; serve pushes it as
 * `queued`), with the type and amount the message's body carries.
 */
export function replayEvents(report: ReplayReport): AttemptEvent[] {
  const messages = new Map(report.replayed.map((m) => [m.id, m]));
  return replayRecords(report).map((r) => {
    const message = messages.get(r.transactionId);
    return {
      transactionId: r.transactionId,
      state: 'replayed',
      attempt: r.attempt,
      accountId: r.accountId,
      type: message?.type ?? null,
      amountMinor: message?.amountMinor ?? null,
      currency: message?.currency ?? null,
      errorCode: r.errorCode,
      errorMessage: r.errorMessage,
      workerId: r.workerId,
      at: r.failedAt.toISOString(),
    };
  });
}

/**
 * Publishes the replay events to the feed exchange, transient and unconfirmed like the workers' attempt
 * events: a live view nobody may be watching. Best-effort: false when the channel failed (no feed
 * exchange, say); the replay itself is done and recorded by then (a subscriber that re-reads the
 * status on this event finds it queued).
 */
export async function publishReplayEvents(
  connection: ChannelModel,
  feedExchange: string,
  events: readonly AttemptEvent[],
): Promise<boolean> {
  if (events.length === 0) return true;
  const channel = await connection.createChannel();
  let failed = false;
  channel.on('error', () => (failed = true));
  for (const event of events)
    channel.publish(feedExchange, attemptRoutingKey(event), encodeAttemptEvent(event), {
      contentType: 'application/json',
      persistent: false,
    });
  // A round trip after the publishes: a missing exchange has closed the channel by the time it answers.
  await channel.checkExchange(feedExchange).catch(() => (failed = true));
  await channel.close().catch(() => {});
  return !failed;
}
