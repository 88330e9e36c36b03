import type { ConfirmChannel, GetMessage, MessagePropertyHeaders, Options } from 'amqplib';
import { describeCause, ExitCode, FatalError } from '../errors.js';

/**
 * Reading a queue without consuming it, a page at a time, and leaving it as it was: the same
 * messages in the same order (the errors and dead queues are read by people and replayed in order).
 *
 * AMQP has no "peek": a message is fetched (`basic.get`, unacked) and then handed back (`basic.nack`
 * with requeue) or removed (`basic.ack`). The walk never hands a message back. Each message it keeps
 * is published again, a copy to the tail of the same queue (default exchange, mandatory, confirmed),
 * and the page is acked only once every copy is confirmed. It fetches at most `WALK_PAGE_MAX` messages
 * at a time and goes on until every message that was in the queue at the start has been fetched once:
 * each page's copies go to the tail behind the rest, so after a full round the queue is in its first
 * order again, and nothing more than one page was ever held.
 *
 * Why not hand them back, as this walk did before:
 *
 * - a quorum queue counts every return of a message (`x-delivery-count`; measured on RabbitMQ 3.10.8:
 *   +1 for each nack with requeue and for each channel closed while holding it). From RabbitMQ 4.0
 *   every quorum queue has a delivery limit of 20 by default, and a message past it is dead-lettered,
 *   or dropped where the queue has no dead-letter target — the errors and dead queues have none. So
 *   some twenty reads (inspect-errors, verify, tx show, replay-dead) would delete what they read. A copy
 *   is a new message: its count starts at zero. (The same goes for an operator's `delivery-limit`
 *   policy on 3.x.)
 * - where a returned message goes depends on the queue: the tail of a 3.10 quorum queue without a
 *   delivery limit, near the head of one with a limit (every quorum queue from 4.0) and of a classic
 *   queue; and more than about 32 returned at once came back shuffled (3.10). A copy goes to the tail
 *   on every kind of queue and version.
 *
 * The price: a round of the whole queue even when the caller needs only its head, every message
 * written once more, and a read no longer marks messages `redelivered`. A message that arrives during
 * the walk ends up among the older ones (one reader at a time keeps the order). A copy carries the
 * original's body and properties except what the broker adds on delivery (`x-delivery-count`,
 * `x-acquired-count`) and what would send it elsewhere or be refused: sender-selected routing
 * (`CC`, `BCC` headers) and `userId` (RabbitMQ accepts only the reader's own user there).
 *
 * When the channel (or its connection) closes mid-walk, the walk throws WalkInterruptedError saying how
 * far it got. Nothing is lost: the messages of the page in hand were not acked, so the broker hands them
 * back (that return is counted, once). But the round was cut: the pages already walked stand at the
 * tail, behind the rest. A close that falls between a page's confirms and its ack (one frame) leaves
 * the copies beside the returned originals: that page is there twice, never missing.
 */

/** Most messages held unacked at once (a page); also what one multiple ack settles. */
export const WALK_PAGE_MAX = 32;

/** How long the broker may take to confirm a page's copies: confirms can hang after an unnoticed disconnect. */
export const WALK_CONFIRM_TIMEOUT_MS = 10_000;

/** What becomes of a fetched message: kept (a copy goes to the tail), or removed from the queue. */
export type Settlement = 'keep' | 'remove';

export interface QueueVisitor {
  /** Decides each message of a page, in order (it may wait, e.g. for publish confirms); nothing is settled before it returns. */
  visit(page: readonly GetMessage[]): Promise<readonly Settlement[]> | readonly Settlement[];
  /**
   * The page's decisions are now true of the queue (copies confirmed, the page acked). A visitor that
   * reports what it removed counts a page here, not in `visit`: a walk cut in between leaves the page in the queue.
   */
  settled?(page: readonly GetMessage[], settlements: readonly Settlement[]): void;
  /** False once the visitor needs no more messages: the walk then only goes round to keep the order. */
  wantsMore(): boolean;
}

export interface WalkOptions {
  /** Messages in the queue when the walk starts (`checkQueue`'s count): the walk fetches each of them once. */
  readonly depth: number;
  /** Messages per page (default WALK_PAGE_MAX). */
  readonly pageMax?: number;
  /** Longest wait for a page's copies to be confirmed (default WALK_CONFIRM_TIMEOUT_MS). */
  readonly confirmTimeoutMs?: number;
}

/** How far a walk got: every message it settled was either copied to the tail or removed. */
export interface WalkProgress {
  /** Messages in the queue at the start. */
  readonly depth: number;
  /** Messages handed to the visitor. */
  readonly visited: number;
  /** Messages fetched and settled (kept as a copy at the tail, or removed). */
  readonly settled: number;
  /** Of those, removed. */
  readonly removed: number;
}

export type WalkResult = WalkProgress;

/** The channel a walk reads with: a confirm channel, and the walk's own (a page is acked with one multiple ack). */
export type WalkChannel = Pick<ConfirmChannel, 'get' | 'ack' | 'publish' | 'on' | 'removeListener'>;

/**
 * The walk's channel failed part-way (closed with its connection, a channel error, copies neither
 * confirmed nor refused in time). One line that says how far it got; exit 3 like a broker that went away.
 */
export class WalkInterruptedError extends FatalError {
  constructor(
    readonly queue: string,
    readonly progress: WalkProgress,
    /** The page in hand, fetched but not settled: the broker hands these back to the queue. */
    readonly unsettled: readonly GetMessage[],
    cause: unknown,
  ) {
    const back = unsettled.length > 0 ? `; the ${unsettled.length} in hand went back to ${queue}` : '';
    super(
      `reading ${queue} stopped after ${progress.settled} of ${progress.depth} messages (${describeCause(cause)})${back}`,
      ExitCode.serviceUnavailable,
      { cause },
    );
  }
}

/**
 * Walks `queue` once; see the module comment. Every message fetched is settled before it returns. When
 * the visitor throws, its page is kept (copied to the tail in order) and its error rethrown; when the
 * channel fails, WalkInterruptedError.
 */
export async function walkQueue(channel: WalkChannel, queue: string, options: WalkOptions, visitor: QueueVisitor): Promise<WalkResult> {
  return new QueueWalk(channel, queue, options).run(visitor);
}

/** One walk's progress and its steps (fetch a page, visit it, copy what is kept, ack the page). */
class QueueWalk {
  private readonly pageMax: number;
  private fetched = 0;
  private visited = 0;
  private settled = 0;
  private removed = 0;
  /** A channel error (404, 406 …) says more than the "Channel closed" of the call that fails after it. */
  private channelError: Error | null = null;

  constructor(
    private readonly channel: WalkChannel,
    private readonly queue: string,
    private readonly options: WalkOptions,
  ) {
    this.pageMax = Math.max(1, options.pageMax ?? WALK_PAGE_MAX);
  }

  async run(visitor: QueueVisitor): Promise<WalkResult> {
    const onError = (err: Error) => (this.channelError = err);
    this.channel.on('error', onError);
    try {
      for (;;) {
        const { page, exhausted } = await this.fetchPage();
        if (page.length === 0) break;
        const visiting = visitor.wantsMore();
        const settlements = visiting ? await this.visit(page, visitor) : page.map((): Settlement => 'keep');
        if (visiting) this.visited += page.length;
        await this.settle(page, settlements);
        if (visiting) visitor.settled?.(page, settlements);
        if (exhausted) break;
      }
    } finally {
      this.channel.removeListener('error', onError);
    }
    return this.progress();
  }

  /** Up to a page; `exhausted` when the queue ran out before `depth` or the walk reached it. */
  private async fetchPage(): Promise<{ page: GetMessage[]; exhausted: boolean }> {
    const page: GetMessage[] = [];
    try {
      while (page.length < this.pageMax && this.fetched < this.options.depth) {
        const msg = await this.channel.get(this.queue, { noAck: false });
        // Fewer than at the start: another reader took some (one reader at a time keeps the order).
        if (msg === false) return { page, exhausted: true };
        this.fetched++;
        page.push(msg);
      }
    } catch (err) {
      throw this.interrupted(err, page);
    }
    return { page, exhausted: this.fetched >= this.options.depth };
  }

  /** The visitor's decisions for a page; when it throws, the page is kept, in order, and its error rethrown. */
  private async visit(page: readonly GetMessage[], visitor: QueueVisitor): Promise<readonly Settlement[]> {
    try {
      const settlements = await visitor.visit(page);
      if (settlements.length !== page.length) throw new Error(`a visit settled ${settlements.length} of ${page.length} messages`);
      return settlements;
    } catch (err) {
      try {
        await this.settle(
          page,
          page.map((): Settlement => 'keep'),
        );
      } catch {
        // The channel is gone too: the broker hands the page back. The visitor's error is the cause.
      }
      throw err;
    }
  }

  /**
   * Copies the kept messages to the tail, in the page's order, and once every copy is confirmed acks
   * the whole page in one frame: an original is never removed before its copy is safe.
   */
  private async settle(page: readonly GetMessage[], settlements: readonly Settlement[]): Promise<void> {
    const kept = page.filter((_, i) => settlements[i] !== 'remove');
    try {
      if (kept.length > 0) await this.copyToTail(kept);
      this.channel.ack(page[page.length - 1]!, true);
    } catch (err) {
      throw this.interrupted(err, page);
    }
    this.settled += page.length;
    this.removed += page.length - kept.length;
  }

  /** Publishes a copy of each message to the queue and waits for all confirms (bounded); a return or nack fails the page. */
  private async copyToTail(messages: readonly GetMessage[]): Promise<void> {
    const timeoutMs = this.options.confirmTimeoutMs ?? WALK_CONFIRM_TIMEOUT_MS;
    let returned = 0;
    const onReturn = () => void returned++;
    let timer: NodeJS.Timeout | undefined;
    this.channel.on('return', onReturn);
    try {
      // A page is bounded, so a publish() that returns false (buffered) needs no wait for 'drain' here.
      const confirms = messages.map(
        (msg) =>
          new Promise<void>((resolve, reject) => {
            // amqplib calls back with "message nacked" (the broker refused it) or "channel closed".
            this.channel.publish('', this.queue, msg.content, copyOptions(msg), (err: unknown) =>
              err ? reject(new Error(`copy not confirmed: ${describeCause(err)}`, { cause: err })) : resolve(),
            );
          }),
      );
      // Promise.all reports the first failure; the others (a closed channel fails them all) are expected.
      for (const confirm of confirms) confirm.catch(() => undefined);
      const overdue = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`copies not confirmed within ${timeoutMs} ms`)), timeoutMs);
      });
      await Promise.race([Promise.all(confirms), overdue]);
      // RabbitMQ sends a message's basic.return before its confirm: by now every return has arrived.
      if (returned > 0) throw new Error(`${returned} of ${messages.length} copies came back unroutable (the queue is gone)`);
    } finally {
      clearTimeout(timer);
      this.channel.removeListener('return', onReturn);
    }
  }

  private interrupted(err: unknown, unsettled: readonly GetMessage[]): WalkInterruptedError {
    if (err instanceof WalkInterruptedError) return err;
    return new WalkInterruptedError(this.queue, this.progress(), unsettled, this.channelError ?? err);
  }

  private progress(): WalkProgress {
    return { depth: this.options.depth, visited: this.visited, settled: this.settled, removed: this.removed };
  }
}

/** Headers a copy starts without: the broker's own delivery counters, and sender-selected routing (it would send the copy to other queues). */
const DROPPED_HEADERS = ['x-delivery-count', 'x-acquired-count', 'CC', 'BCC'];

/** The publish options of a message's copy: its properties, minus what the module comment lists. */
function copyOptions(msg: GetMessage): Options.Publish {
  // amqplib types these properties as `any`; they are what the broker delivered.
  const p = msg.properties as Omit<Options.Publish, 'headers'> & { headers?: MessagePropertyHeaders };
  let headers: MessagePropertyHeaders | undefined;
  if (p.headers !== undefined) {
    headers = { ...p.headers };
    for (const name of DROPPED_HEADERS) delete headers[name];
  }
  return {
    mandatory: true,
    contentType: p.contentType,
    contentEncoding: p.contentEncoding,
    headers,
    deliveryMode: p.deliveryMode,
    priority: p.priority,
    correlationId: p.correlationId,
    replyTo: p.replyTo,
    expiration: p.expiration,
    messageId: p.messageId,
    timestamp: p.timestamp,
    type: p.type,
    appId: p.appId,
  };
}

/**
 * Up to `limitMax` messages of `queue`, read in place: the queue keeps them all, in their order (a
 * round of the whole queue, as above). What verify, `tx show` and the tests read the dead and errors
 * queues with. `channel` should be a confirm channel of its own (`createConfirmChannel`).
 */
export async function peekQueue(channel: ConfirmChannel, queue: string, limitMax: number): Promise<GetMessage[]> {
  const { messageCount } = await channel.checkQueue(queue);
  const seen: GetMessage[] = [];
  await walkQueue(
    channel,
    queue,
    { depth: messageCount },
    {
      visit: (page) => {
        for (const msg of page) if (seen.length < limitMax) seen.push(msg);
        return page.map((): Settlement => 'keep');
      },
      wantsMore: () => seen.length < limitMax,
    },
  );
  return seen;
}
