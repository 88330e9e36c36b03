/**
 * Turns per-message settlement into as few AMQP frames as possible. Deliveries on a channel carry
 * increasing tags; a worker finishes them out of order (batches commit concurrently). An ack with
 * `multiple` settles every outstanding tag up to it, so it may only be sent for a tag once every
 * earlier outstanding tag is finished too. This tracks that frontier. A requeue (nack) is sent at
 * once and only for its own tag.
 */
export class AckTracker {
  /** Tags delivered and not yet settled on the broker, in delivery (= increasing) order. */
  private readonly outstanding: number[] = [];
  private head = 0;
  /** Tags finished locally whose ack has not been sent yet. */
  private readonly finished = new Set<number>();
  /** Finished tags that were requeued (already settled), so the frontier passes them without an ack. */
  private readonly requeued = new Set<number>();

  constructor(private readonly send: { ack: (tag: number, multiple: boolean) => void; nack: (tag: number) => void }) {}

  /** Registers a delivery as it arrives. */
  delivered(tag: number): void {
    this.outstanding.push(tag);
  }

  /** The delivery is done: ack it — now, or together with earlier ones as soon as they are done. */
  ack(tag: number): void {
    this.finished.add(tag);
    this.flush();
  }

  /** Hands the delivery back to the queue right away (it will be redelivered). */
  requeue(tag: number): void {
    this.send.nack(tag);
    // Settled on the broker: it no longer holds back the acks of later tags.
    this.finished.add(tag);
    this.requeued.add(tag);
    this.flush();
  }

  /** Deliveries not yet settled (for metrics and tests). */
  get pending(): number {
    return this.outstanding.length - this.head;
  }

  private flush(): void {
    let last: number | null = null;
    while (this.head < this.outstanding.length && this.finished.has(this.outstanding[this.head]!)) {
      const tag = this.outstanding[this.head++]!;
      this.finished.delete(tag);
      // A requeued tag is already settled; the ack frontier just moves past it.
      if (this.requeued.delete(tag)) continue;
      last = tag;
    }
    if (last !== null) this.send.ack(last, true);
    // Keep the array from growing without bound.
    if (this.head > 4_096 && this.head * 2 > this.outstanding.length) {
      this.outstanding.splice(0, this.head);
      this.head = 0;
    }
  }
}
