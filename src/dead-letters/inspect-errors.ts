import type { ChannelModel, GetMessage, MessageProperties } from 'amqplib';
import { HEADERS, type Topology } from '../amqp/topology.js';
import { routingKeyFor } from '../domain/transaction.js';
import { NotFoundError } from '../errors.js';
import { walkQueue, WalkInterruptedError, type QueueVisitor, type Settlement } from '../amqp/queue-walk.js';

/**
 * Reading the errors queue (business rejects) and the dead queue (parked after system errors)
 * without consuming them. AMQP has no "peek": the queue is walked once, a page of at most 32
 * messages at a time, each kept message copied to the tail (or, with `ack`, removed) before the next
 * page is fetched, so that the queue ends with the same messages in the same order, none of them
 * counted as delivered, and never more than a page is held (see queue-walk.ts). `ack` removes exactly
 * the messages returned to the caller, and nothing else.
 */

/** Most messages one inspection shows (or one replay puts back): the bound of `--limit`. */
export const SCAN_MAX = 10_000;

export type InspectedQueue = 'errors' | 'dead';

export interface InspectOptions {
  readonly queue: InspectedQueue;
  /** Most messages shown (and, with `ack`, removed). */
  readonly limit: number;
  /** Only messages with this reason (errors: reject reason; dead: error code or `delivery_limit`). */
  readonly reason: string | null;
  /** Remove the messages shown. */
  readonly ack: boolean;
}

/** One message as `inspect-errors` shows it. Fields the message does not carry are null. */
export interface InspectedMessage {
  readonly id: string | null;
  readonly type: string | null;
  readonly accountId: number | null;
  /** Whole minor units as a decimal string (the JSON convention for money); null when the body has no integer amount. */
  readonly amountMinor: string | null;
  readonly currency: string | null;
  readonly reason: string;
  readonly detail: string;
  readonly workerId: string | null;
  /** When it was rejected or parked (ISO 8601). */
  readonly at: string | null;
  readonly attempts: number | null;
  /** Routing key of the original publish (`tx.deposit` …). */
  readonly routingKey: string | null;
  /** Handed back to the queue before (by a consumer, or a read whose channel closed); a read itself no longer sets it. */
  readonly redelivered: boolean;
  /**
   * Why the transaction fields are null, when the original body could not be read as one (`not
   * JSON`, `not a JSON object`); null when it was readable.
   */
  readonly bodyProblem: string | null;
}

export interface InspectReport {
  readonly queue: string;
  readonly kind: InspectedQueue;
  /** Ready messages when the inspection started. */
  readonly depth: number;
  readonly scanned: number;
  /** True when the read stopped before the end of the queue (see `interrupted`): `byReason` covers only what was scanned. */
  readonly partial: boolean;
  /** Count by reason over every message scanned (not only those shown). */
  readonly byReason: Readonly<Record<string, number>>;
  readonly messages: readonly InspectedMessage[];
  /** Messages removed (with `ack`: exactly those in `messages`). */
  readonly removed: number;
  /**
   * Only when the read stopped part-way (its channel or connection closed): how far it got. What is
   * shown and removed above is what happened before; everything else is still in the queue.
   */
  readonly interrupted?: string;
}

export async function inspectQueue(
  deps: { connection: ChannelModel; topology: Topology },
  options: InspectOptions,
): Promise<InspectReport> {
  const queue = options.queue === 'dead' ? deps.topology.deadQueue : deps.topology.errorsQueue;
  // A confirm channel of its own: the walk copies what it keeps and acks a page at once (queue-walk.ts).
  const channel = await deps.connection.createConfirmChannel();
  channel.on('error', () => {
    // A missing queue closes the channel with 404; checkQueue's rejection reports it.
  });
  const inspection = new Inspection(options);
  try {
    const depth = await checkQueue(channel, queue);
    const base = { queue, kind: options.queue, depth, byReason: inspection.byReason, messages: inspection.shown };
    try {
      await walkQueue(channel, queue, { depth }, inspection);
    } catch (err) {
      // The channel went mid-walk: what was shown and removed before is reported; the rest is untouched.
      if (!(err instanceof WalkInterruptedError)) throw err;
      return { ...base, scanned: inspection.scanned, partial: true, removed: inspection.removed, interrupted: err.message };
    }
    return { ...base, scanned: inspection.scanned, partial: false, removed: inspection.removed };
  } finally {
    // Everything fetched was settled by the walk; after a failure part-way, closing hands back what the channel still held.
    await channel.close().catch(() => {});
  }
}

/**
 * The inspection as a visitor of the queue's pages: every message is counted, so the walk goes round
 * the whole queue. A page counts once it is settled: a walk cut before leaves it in the queue, unshown.
 */
class Inspection implements QueueVisitor {
  readonly byReason: Record<string, number> = {};
  readonly shown: InspectedMessage[] = [];
  scanned = 0;
  removed = 0;
  private page: { parsed: InspectedMessage; show: boolean }[] = [];

  constructor(private readonly options: InspectOptions) {}

  wantsMore(): boolean {
    return true;
  }

  visit(page: readonly GetMessage[]): Settlement[] {
    let showing = this.shown.length;
    this.page = page.map((msg) => {
      const parsed = this.options.queue === 'dead' ? parseDeadMessage(msg) : parseErrorMessage(msg);
      const show = showing < this.options.limit && (this.options.reason === null || parsed.reason === this.options.reason);
      if (show) showing++;
      return { parsed, show };
    });
    // With `ack`, exactly the messages shown are removed (acked with their page), the rest kept in order.
    return this.page.map(({ show }): Settlement => (show && this.options.ack ? 'remove' : 'keep'));
  }

  settled(): void {
    for (const { parsed, show } of this.page) {
      this.byReason[parsed.reason] = (this.byReason[parsed.reason] ?? 0) + 1;
      if (show) this.shown.push(parsed);
      if (show && this.options.ack) this.removed++;
    }
    this.scanned += this.page.length;
    this.page = [];
  }
}

/** Ready count of a queue; NotFoundError when it does not exist (namespace never set up). */
export async function checkQueue(
  channel: { checkQueue(queue: string): Promise<{ messageCount: number }> },
  queue: string,
): Promise<number> {
  try {
    return (await channel.checkQueue(queue)).messageCount;
  } catch (err) {
    if ((err as { code?: number }).code === 404)
      throw new NotFoundError(`queue ${queue} does not exist (wrong --namespace, or run txsim setup)`);
    throw err;
  }
}

/** The business fields of an original transaction body, as far as it is readable JSON. */
interface BodyFields {
  id: string | null;
  type: string | null;
  accountId: number | null;
  amountMinor: string | null;
  currency: string | null;
  /** Why the body gave no fields (`not JSON` …); null when it was a JSON object. */
  problem: string | null;
}

export function bodyFields(body: string | Buffer): BodyFields {
  const none = (problem: string): BodyFields => ({ id: null, type: null, accountId: null, amountMinor: null, currency: null, problem });
  const text = body.toString();
  if (text.length === 0) return none('empty body');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return none('not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return none('not a JSON object');
  const o = parsed as Record<string, unknown>;
  const string = (v: unknown) => (typeof v === 'string' ? v.slice(0, 100) : null);
  const integer = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) ? v : null);
  // A poison amount can be anything; only a whole number is money, and it is printed exactly (a string, as all money in --json).
  const minor = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) ? BigInt(v).toString() : null);
  return {
    id: string(o.id)?.toLowerCase() ?? null,
    type: string(o.type),
    accountId: integer(o.accountId),
    amountMinor: minor(o.amountMinor),
    currency: string(o.currency),
    problem: null,
  };
}

function header(properties: MessageProperties, name: string): unknown {
  return (properties.headers ?? {})[name];
}

function headerString(properties: MessageProperties, name: string): string | null {
  const v = header(properties, name);
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return null;
}

function headerNumber(properties: MessageProperties, name: string): number | null {
  const n = Number(header(properties, name));
  return header(properties, name) !== undefined && Number.isFinite(n) ? n : null;
}

/**
 * An errors-queue message: the worker's JSON envelope {reason, detail, id, workerId, rejectedAt,
 * attempt, routingKey, contentType, body} with the original body inside. Headers are the fallback
 * when the envelope is unreadable (a message some other tool put there).
 */
export function parseErrorMessage(msg: Pick<GetMessage, 'content' | 'properties' | 'fields'>): InspectedMessage {
  const p = msg.properties;
  let envelope: Record<string, unknown> | null = null;
  try {
    const parsed: unknown = JSON.parse(msg.content.toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null) envelope = parsed as Record<string, unknown>;
  } catch {
    // not an envelope: headers only
  }
  const s = (v: unknown) => (typeof v === 'string' ? v : null);
  // Without the worker's envelope the content is unreadable; bodyFields says how.
  const body = bodyFields(envelope ? (s(envelope.body) ?? '') : msg.content);
  envelope ??= {};
  return {
    id: s(envelope.id) ?? body.id ?? (typeof p.messageId === 'string' ? p.messageId : null),
    type: body.type,
    accountId: body.accountId,
    amountMinor: body.amountMinor,
    currency: body.currency,
    reason: s(envelope.reason) ?? headerString(p, HEADERS.reason) ?? 'unknown',
    detail: s(envelope.detail) ?? headerString(p, HEADERS.detail) ?? '',
    workerId: s(envelope.workerId) ?? headerString(p, HEADERS.workerId),
    at: s(envelope.rejectedAt),
    attempts: typeof envelope.attempt === 'number' ? envelope.attempt : headerNumber(p, HEADERS.attempts),
    routingKey: s(envelope.routingKey),
    redelivered: msg.fields.redelivered,
    bodyProblem: body.problem,
  };
}

/** RabbitMQ's dead-letter record, present when the broker (not a worker) moved the message. */
function firstDeath(properties: MessageProperties): { reason?: string; time?: unknown; 'routing-keys'?: string[] } | null {
  const deaths = header(properties, 'x-death');
  return Array.isArray(deaths) && deaths.length > 0 ? (deaths[deaths.length - 1] as { reason?: string }) : null;
}

/**
 * A dead-queue message: the original body with the worker's headers (attempts, last error, …).
 * The reason is the error code before the first ':' of x-txsim-last-error (`ER_LOCK_DEADLOCK`);
 * a message dead-lettered by RabbitMQ itself (the crash-loop guard) says `delivery_limit`.
 */
export function parseDeadMessage(msg: Pick<GetMessage, 'content' | 'properties' | 'fields'>): InspectedMessage {
  const p = msg.properties;
  const body = bodyFields(msg.content);
  const lastError = headerString(p, HEADERS.lastError);
  const death = firstDeath(p);
  const reason = lastError ? lastError.split(':')[0]?.trim() || 'error' : (death?.reason ?? 'unknown');
  return {
    id: body.id ?? (typeof p.messageId === 'string' ? p.messageId.toLowerCase() : null),
    type: body.type,
    accountId: body.accountId,
    amountMinor: body.amountMinor,
    currency: body.currency,
    reason,
    detail: lastError ?? (death ? `dead-lettered by RabbitMQ (${death.reason ?? 'unknown'})` : ''),
    workerId: headerString(p, HEADERS.workerId),
    at: headerString(p, HEADERS.failedAt) ?? timestampOf(death?.time),
    attempts: headerNumber(p, HEADERS.attempts),
    routingKey: originalRoutingKey(p, body.type),
    redelivered: msg.fields.redelivered,
    bodyProblem: body.problem,
  };
}

/** An AMQP timestamp as amqplib decodes it ({ '!': 'timestamp', value: seconds }) → ISO 8601. */
function timestampOf(value: unknown): string | null {
  const seconds = typeof value === 'object' && value !== null ? (value as { value?: unknown }).value : value;
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : null;
}

/**
 * Where a parked message was first published: the worker's header, else RabbitMQ's dead-letter
 * record, else derived from the body's type. Null when none of them says.
 */
export function originalRoutingKey(properties: MessageProperties, type: string | null): string | null {
  const fromHeader = headerString(properties, HEADERS.originalRoutingKey);
  if (fromHeader) return fromHeader;
  const keys = firstDeath(properties)?.['routing-keys'];
  if (Array.isArray(keys) && typeof keys[0] === 'string') return keys[0];
  return type ? routingKeyFor(type) : null;
}
