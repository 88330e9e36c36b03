import type { ChannelModel, GetMessage, MessagePropertyHeaders } from 'amqplib';
import { browseQueue } from '../amqp/browse.js';
import { ConfirmPublisher, type PublishOutcome } from '../amqp/publisher.js';
import { HEADERS, type Topology } from '../amqp/topology.js';
import type { FailureRecord } from '../db/transaction-failures.js';
import { attemptRoutingKey, encodeAttemptEvent, ERROR_MESSAGE_CHARS_MAX, type AttemptEvent } from '../domain/attempt-event.js';
import { LOWERCASE_UUID_PATTERN } from '../domain/ids.js';
import { bodyFields, checkQueue, originalRoutingKey, SCAN_MAX } from './inspect-errors.js';

/**
 * Gives parked messages another try: each selected message of the dead queue is republished to
 * the transactions exchange under its original routing key, with its attempt count reset, and is
 * acked (removed from the dead queue) only after the broker confirmed the republish. A crash in
 * between leaves the message in both places; the worker's idempotency (same id, same body) turns
 * the second copy into a harmless duplicate. Nothing is ever removed without a confirmed copy.
 */

export interface ReplayOptions {
  /** Only these transaction ids (lowercase UUIDs); null = any. */
  readonly ids: readonly string[] | null;
  /** Most messages replayed. */
  readonly limit: number;
  /** Most dead messages scanned looking for `ids`; defaults to SCAN_MAX. */
  readonly scanMax?: number;
  /** A republish not confirmed within this fails (the dead message stays). */
  readonly confirmTimeoutMs?: number;
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
  /** Requested ids not found in the dead queue. */
  readonly notFound: readonly string[];
}

/** Most republishes awaiting their confirm at once. */
const REPLAY_WINDOW_MAX = 100;

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

export async function replayDead(deps: { connection: ChannelModel; topology: Topology }, options: ReplayOptions): Promise<ReplayReport> {
  const { topology: t } = deps;
  const scanMax = options.scanMax ?? SCAN_MAX;
  const wanted = options.ids ? new Set(options.ids) : null;
  const found = new Set<string>();
  const getChannel = await deps.connection.createChannel();
  getChannel.on('error', () => {
    // A missing dead queue closes the channel with 404; checkQueue's rejection reports it.
  });
  const confirmChannel = await deps.connection.createConfirmChannel();
  confirmChannel.on('error', () => {
    // The publisher fails its pending publishes on 'error'/'close'; each shows up in `failed`.
  });
  const publisher = new ConfirmPublisher(confirmChannel, {
    windowMax: REPLAY_WINDOW_MAX,
    confirmTimeoutMs: options.confirmTimeoutMs ?? 10_000,
  });
  const replayed: ReplayedMessage[] = [];
  const failed: { id: string | null; error: string }[] = [];
  const settling: Promise<void>[] = [];
  let scanned = 0;
  let selected = 0;
  try {
    await checkQueue(getChannel, t.deadQueue);
    for await (const msg of browseQueue(getChannel, t.deadQueue, scanMax)) {
      // Enough selected: this last fetched message is left unacked and goes back with the rest.
      if (selected >= options.limit || (wanted && found.size === wanted.size)) break;
      scanned++;
      const body = bodyFields(msg.content);
      const id = body.id ?? (typeof msg.properties.messageId === 'string' ? msg.properties.messageId.toLowerCase() : null);
      // Not selected: stays unacked until the channel closes, which puts it back.
      if (wanted && (id === null || !wanted.has(id))) continue;
      if (id !== null) found.add(id);
      selected++;
      const routingKey = originalRoutingKey(msg.properties, body.type);
      if (routingKey === null) {
        failed.push({ id, error: 'no original routing key (no header, no x-death, no type in the body)' });
        continue;
      }
      let confirmed: Promise<PublishOutcome>;
      try {
        // Waits for room in the confirm window: at most REPLAY_WINDOW_MAX republishes unconfirmed.
        ({ confirmed } = await republish(publisher, t.transactionsExchange, routingKey, msg));
      } catch (err) {
        failed.push({ id, error: (err as Error).message });
        break;
      }
      settling.push(
        confirmed.then(
          (outcome) => {
            if (outcome === 'returned')
              return void failed.push({ id, error: `unroutable: nothing bound to ${t.transactionsExchange} for ${routingKey}` });
            try {
              getChannel.ack(msg);
              const attempts = msg.properties.headers?.[HEADERS.attempts] as unknown;
              replayed.push({
                id,
                routingKey,
                accountId: body.accountId,
                type: body.type,
                amountMinor: body.amountMinor,
                currency: body.currency,
                attemptsBefore: typeof attempts === 'number' && Number.isSafeInteger(attempts) && attempts > 0 ? attempts : null,
                replayedAt: new Date().toISOString(),
              });
            } catch (err) {
              // Republished but still parked: a later replay makes a duplicate the worker ignores.
              failed.push({ id, error: `republished, but could not be removed from ${t.deadQueue}: ${(err as Error).message}` });
            }
          },
          (err: unknown) => void failed.push({ id, error: (err as Error).message }),
        ),
      );
    }
    await Promise.all(settling);
  } finally {
    // Acks were written before this close on the same channel; unselected and failed messages go back.
    await getChannel.close().catch(() => {});
    await confirmChannel.close().catch(() => {});
  }
  return {
    queue: t.deadQueue,
    exchange: t.transactionsExchange,
    scanned,
    replayed,
    failed,
    notFound: wanted ? [...wanted].filter((id) => !found.has(id)) : [],
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
export function replayRecords(report: ReplayReport): FailureRecord[] {
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
 * exchange, say); the replay itself is done and recorded by then.
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
