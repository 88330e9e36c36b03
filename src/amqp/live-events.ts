import type { Channel } from 'amqplib';
import type { Logger } from '../log.js';

/**
 * Publishes live events (the worker's attempt and stage events on `<ns>.feed`): not confirmed, not
 * persistent, not mandatory. A live view nobody may be watching must never hold a message back, so
 * while the channel's socket buffer is full, events are skipped (and counted) until it drains.
 */
export class LiveEvents {
  /** The channel whose socket buffer is full: events are skipped until it drains. */
  private congested: Channel | null = null;
  /** Events not published: no channel, a congested one, or the publish threw. */
  skipped = 0;

  constructor(
    private readonly channel: () => Channel | null,
    private readonly exchange: string,
    private readonly log: Logger,
    /** What the events are, for the debug line of one that could not be published. */
    private readonly what: string,
  ) {}

  /** Whether an event published now could go out (a channel, not congested); counts a skip when not. */
  ready(): boolean {
    const channel = this.channel();
    if (channel && channel !== this.congested) return true;
    this.skipped++;
    return false;
  }

  publish(routingKey: string, body: Buffer): void {
    const channel = this.channel();
    if (!channel || channel === this.congested) {
      this.skipped++;
      return;
    }
    try {
      const writable = channel.publish(this.exchange, routingKey, body, { contentType: 'application/json', persistent: false });
      if (!writable) {
        this.congested = channel;
        channel.once('drain', () => {
          if (this.congested === channel) this.congested = null;
        });
      }
    } catch (err) {
      this.skipped++;
      this.log.debug({ err: (err as Error).message }, `${this.what} not published`);
    }
  }
}
