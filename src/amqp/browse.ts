import type { Channel, GetMessage } from 'amqplib';

/**
 * The messages of `queue`, fetched one at a time without ack, at most `limitMax` of them: how txsim
 * reads a queue without consuming it (verify, inspect-errors, replay-dead). Nothing is removed unless
 * the caller acks a message on `channel`; everything else returns to the queue, in order, when the
 * channel closes. Close the channel when done: the messages stay held until then.
 */
export async function* browseQueue(channel: Pick<Channel, 'get'>, queue: string, limitMax: number): AsyncGenerator<GetMessage> {
  for (let fetched = 0; fetched < limitMax; fetched++) {
    const msg = await channel.get(queue, { noAck: false });
    if (msg === false) return;
    yield msg;
  }
}
