import type { Channel, GetMessage } from 'amqplib';

/**
 * Reading a queue without consuming it, a page at a time, and leaving it as it was: the same
 * messages in the same order (the errors and dead queues are read by people and replayed in order).
 *
 * AMQP has no "peek": a message is fetched (`basic.get`, unacked) and then put back (`basic.nack`
 * with requeue) or removed (`basic.ack`). Where a message that is put back goes depends on the
 * queue, and was measured on the quorum queues these are (RabbitMQ 3.10):
 *
 * - a nack puts it at the tail, in the order of the nacks, while the queue holds other messages;
 * - closing a channel that holds messages puts them back at the head but shuffled, and a single
 *   return of more than about 32 messages is shuffled too.
 *
 * So holding thousands of messages and closing the channel (what inspect-errors did) reorders the
 * queue, and holds it all meanwhile. Instead the walk fetches at most `WALK_PAGE_MAX` messages,
 * settles them in their order (nack each in turn, ack those the caller removes), and goes on until
 * every message that was in the queue at the start has been fetched once: each page goes to the
 * tail behind the rest, so after a full round the queue is in its first order again, and nothing more
 * than one page was ever held. The price: the whole queue is walked even when the caller only needs
 * its head, and a message that arrives during the walk ends up among the older ones.
 *
 * A broker that puts a nacked message back at the head (classic queues, where "original position"
 * is documented) would hand the same page out again. The walk notices it (the message it put back
 * first comes straight back) and holds instead: everything it keeps stays fetched until the end
 * (at most `holdMax`), and goes back to its place then.
 */

/** Most messages held unacked at once; a return of more than about 32 comes back shuffled (see above). */
export const WALK_PAGE_MAX = 32;

/** What becomes of a fetched message: put back, or removed from the queue. */
export type Settlement = 'keep' | 'remove';

export interface QueueVisitor {
  /** Decides each message of a page, in order (it may wait, e.g. for publish confirms); nothing is settled before it returns. */
  visit(page: readonly GetMessage[]): Promise<readonly Settlement[]> | readonly Settlement[];
  /** False once the visitor needs no more messages: the walk then only puts the rest back in place. */
  wantsMore(): boolean;
}

export interface WalkOptions {
  /** Messages in the queue when the walk starts (`checkQueue`'s count): the walk fetches each of them once. */
  readonly depth: number;
  /** Most messages held at once when the broker puts nacked messages back at the head (then every kept one is held to the end). */
  readonly holdMax: number;
  /** Messages per page (default WALK_PAGE_MAX). */
  readonly pageMax?: number;
}

export interface WalkResult {
  /** Messages handed to the visitor. */
  readonly visited: number;
  /** True when the walk reached the end: every message that was in the queue at the start, or all it still had, was fetched. */
  readonly complete: boolean;
  /** `cycle`: pages went to the tail, round the whole queue; `hold`: the broker puts messages back at the head. */
  readonly mode: 'cycle' | 'hold';
}

type WalkChannel = Pick<Channel, 'get' | 'ack' | 'nack'>;

/** Walks `queue` once; see the module comment. Every message fetched is settled before it returns (or throws). */
export async function walkQueue(channel: WalkChannel, queue: string, options: WalkOptions, visitor: QueueVisitor): Promise<WalkResult> {
  const pageMax = Math.max(1, options.pageMax ?? WALK_PAGE_MAX);
  let fetched = 0;
  let visited = 0;
  // Where the broker puts a message back is learnt from the first message fetched after a page that
  // put some back: the first of those again (head), or the next one (tail). Until then, `keptLast`.
  let learnt = false;
  let keptLast: GetMessage[] | null = null;
  let exhausted = false;
  while (fetched < options.depth && !exhausted) {
    const page: GetMessage[] = [];
    while (page.length < pageMax && fetched < options.depth) {
      const msg = await channel.get(queue, { noAck: false });
      // Fewer than at the start: another reader took some (one reader at a time keeps the order).
      if (msg === false) {
        exhausted = true;
        break;
      }
      if (page.length === 0 && keptLast !== null) {
        if (fingerprint(msg) === fingerprint(keptLast[0]!))
          return holdWalk(channel, queue, options, visitor, { first: msg, returned: keptLast, fetched, visited });
        // They went to the tail: the rest of the walk is a round of the queue.
        learnt = true;
        keptLast = null;
      }
      fetched++;
      page.push(msg);
    }
    if (page.length === 0) break;
    const visiting = visitor.wantsMore();
    const settlements = visiting ? await visitOrPutBack(channel, page, visitor) : page.map((): Settlement => 'keep');
    if (visiting) visited += page.length;
    settle(channel, page, settlements);
    if (!learnt) {
      const kept = page.filter((_, i) => settlements[i] !== 'remove');
      keptLast = kept.length > 0 ? kept : null;
    }
  }
  return { visited, complete: exhausted || fetched >= options.depth, mode: 'cycle' };
}

/**
 * The walk on a broker that puts nacked messages back at the head: `first` is the first of `returned`
 * (the last page's kept messages) come back. Those are fetched again and held without a second visit;
 * then the walk goes on holding every message it keeps, up to `holdMax` in all, and puts all of them
 * back at the end, where the broker returns each to its place.
 */
async function holdWalk(
  channel: WalkChannel,
  queue: string,
  options: WalkOptions,
  visitor: QueueVisitor,
  state: { first: GetMessage; returned: readonly GetMessage[]; fetched: number; visited: number },
): Promise<WalkResult> {
  const held: GetMessage[] = [state.first];
  let { fetched, visited } = state;
  let exhausted = false;
  try {
    // The rest of the returned page, in its order; anything else is a message not seen yet.
    const fresh: GetMessage[] = [];
    for (const expected of state.returned.slice(1)) {
      const msg = await channel.get(queue, { noAck: false });
      if (msg === false) break;
      if (fingerprint(msg) === fingerprint(expected)) held.push(msg);
      else {
        fresh.push(msg);
        break;
      }
    }
    const pageMax = Math.max(1, options.pageMax ?? WALK_PAGE_MAX);
    let page = fresh;
    fetched += fresh.length;
    while (visitor.wantsMore()) {
      while (page.length < pageMax && fetched < options.depth && held.length + page.length < options.holdMax) {
        const msg = await channel.get(queue, { noAck: false });
        if (msg === false) {
          exhausted = true;
          break;
        }
        fetched++;
        page.push(msg);
      }
      if (page.length === 0) break;
      const settlements = await visitOrPutBack(channel, page, visitor);
      visited += page.length;
      page.forEach((msg, i) => (settlements[i] === 'remove' ? channel.ack(msg) : held.push(msg)));
      page = [];
    }
    // Not visited (the visitor had enough): back as they came.
    held.push(...page);
  } finally {
    for (const msg of held) channel.nack(msg, false, true);
  }
  return { visited, complete: exhausted || fetched >= options.depth, mode: 'hold' };
}

/** The visitor's decisions for a page; when it throws, the page is put back in order first. */
async function visitOrPutBack(channel: WalkChannel, page: readonly GetMessage[], visitor: QueueVisitor): Promise<readonly Settlement[]> {
  try {
    const settlements = await visitor.visit(page);
    if (settlements.length !== page.length) throw new Error(`a visit settled ${settlements.length} of ${page.length} messages`);
    return settlements;
  } catch (err) {
    settle(
      channel,
      page,
      page.map(() => 'keep'),
    );
    throw err;
  }
}

/** Acks the removed and nacks (requeue) the kept, one by one in the page's order: the order they go back in. */
function settle(channel: WalkChannel, page: readonly GetMessage[], settlements: readonly Settlement[]): void {
  page.forEach((msg, i) => (settlements[i] === 'remove' ? channel.ack(msg) : channel.nack(msg, false, true)));
}

/**
 * What tells one message from another when it comes back: its bytes and properties, without what the
 * broker changes on a return (the delivery count). Two parked copies alike to the byte would be taken
 * for one; every message the workers park or reject carries its own time, so they are not.
 */
function fingerprint(msg: GetMessage): string {
  const { headers, ...properties } = msg.properties;
  const { 'x-delivery-count': _deliveryCount, ...stable } = (headers ?? {}) as Record<string, unknown>;
  return JSON.stringify([msg.content.toString('base64'), properties, stable]);
}

/**
 * Up to `limitMax` messages of `queue`, read in place: the queue keeps them all, in their order (a
 * round of the whole queue, as above). What verify and the tests read the dead and errors queues with.
 */
export async function peekQueue(
  channel: WalkChannel & Pick<Channel, 'checkQueue'>,
  queue: string,
  limitMax: number,
): Promise<GetMessage[]> {
  const { messageCount } = await channel.checkQueue(queue);
  const seen: GetMessage[] = [];
  await walkQueue(
    channel,
    queue,
    { depth: messageCount, holdMax: limitMax },
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
