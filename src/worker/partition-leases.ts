import type { ConsumeMessage } from 'amqplib';
import type { Delivery, ManagedChannel, ManagedConsumer } from '../amqp/managed-channel.js';
import type { PartitionLeaseStore } from '../db/partition-leases.js';
import type { Logger } from '../log.js';

/**
 * How many of `partitions` the worker `me` should hold when `liveWorkers` are alive: the live
 * workers sorted by id, each gets floor(N / live), and the first N mod live one more. The shares
 * add up to N exactly, so every worker converges on the same split (a plain ceil(N / live) for
 * everyone lets two workers keep 2 + 2 of 4 partitions while a third gets none). A worker not yet
 * in the list (its first heartbeat is not visible) counts itself in.
 */
export function fairShare(partitions: number, liveWorkers: readonly string[], me: string): number {
  const workers = [...new Set([...liveWorkers, me])].sort();
  const rank = workers.indexOf(me);
  return Math.floor(partitions / workers.length) + (rank < partitions % workers.length ? 1 : 0);
}

/** Timing of the leases. The lease must span several heartbeats, so one slow heartbeat loses nothing. */
export interface LeaseTiming {
  readonly heartbeatMs: number;
  readonly leaseMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { heartbeatMs: 1_000, leaseMs: 6_000 };

/**
 * How long a partition being given up may wait for its in-flight messages before a warning says so. Its
 * lease is kept (and renewed) until they are settled, however long that takes: released earlier, the next
 * holder would apply the partition's later messages while this worker still retries an earlier one in
 * place (up to --max-attempts, each after a retry delay and a lock wait: over a minute with the defaults).
 */
const RELEASE_DRAIN_WARN_MS = 60_000;

/**
 * The consumers of an ordered worker (README "Per-account ordering"): one per partition queue this
 * worker holds a lease on. Every heartbeat it renews its leases, works out its fair share from the
 * live workers, claims free or expired partitions up to it and gives up those above it: the
 * consumer is cancelled first, and the lease released only once that partition's in-flight messages
 * are settled, so the next holder starts after the last of them. Single active consumer on the
 * queues stays the safety net for a worker that lost its lease without noticing.
 *
 * It stands in for the worker's one ManagedConsumer: pause/resume (database outage) and cancel
 * (shutdown) act on all held partitions.
 */
export class PartitionConsumers {
  private readonly consumers = new Map<number, ManagedConsumer>();
  /** Partitions this worker holds a lease on (including those being given up). */
  private readonly owned = new Set<number>();
  /** Partitions being given up: consumer cancelled, waiting for their in-flight messages. */
  private readonly releasing = new Map<number, number>();
  /** Partitions being given up whose long drain was already warned about. */
  private readonly drainWarned = new Set<number>();
  /** Unsettled deliveries and their partition. */
  private readonly inFlight = new Map<ConsumeMessage, number>();
  private paused = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private lastHeartbeatOkMs = Date.now();

  constructor(
    private readonly channel: ManagedChannel,
    private readonly queues: readonly string[],
    private readonly onMessage: (delivery: Delivery) => void,
    private readonly store: PartitionLeaseStore,
    private readonly options: { readonly workerId: string; readonly timing: LeaseTiming; readonly drainWarnMs?: number },
    private readonly log: Logger,
  ) {}

  /** Starts heartbeating (the first claim is at once). */
  start(): void {
    if (this.stopped || this.ticking || this.timer) return;
    this.runTick();
  }

  /** The partitions consumed right now (held and not being given up), ascending. */
  get active(): number[] {
    return [...this.owned].filter((p) => !this.releasing.has(p)).sort((a, b) => a - b);
  }

  /** A delivery was acked or handed back. */
  settled(msg: ConsumeMessage): void {
    this.inFlight.delete(msg);
  }

  /** The consume channel is gone: its deliveries can never be settled (RabbitMQ redelivers them). */
  channelLost(): void {
    this.inFlight.clear();
  }

  async pause(): Promise<void> {
    this.paused = true;
    await Promise.all([...this.consumers.values()].map((c) => c.pause()));
  }

  async resume(): Promise<void> {
    this.paused = false;
    if (this.stopped) return;
    await Promise.all(this.active.map((p) => this.consumers.get(p)?.resume() ?? Promise.resolve()));
  }

  /** Shutdown: no more heartbeats or claims, every consumer cancelled (in-flight can still be settled). */
  async cancel(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.ticking;
    await Promise.all([...this.consumers.values()].map((c) => c.cancel()));
  }

  /** After the in-flight messages are settled: give every lease up so the others take over at once. */
  async leave(): Promise<void> {
    try {
      await this.store.leave(this.options.workerId);
    } catch (err) {
      // The leases then expire on their own, after leaseMs.
      this.log.warn({ err: (err as Error).message }, 'could not release the partition leases; they expire on their own');
    }
    this.owned.clear();
  }

  private runTick(): void {
    this.ticking = this.tick()
      .catch((err) => this.onHeartbeatFailed(err))
      .finally(() => {
        this.ticking = null;
        if (!this.stopped) {
          this.timer = setTimeout(() => {
            this.timer = null;
            this.runTick();
          }, this.options.timing.heartbeatMs);
          this.timer.unref();
        }
      });
  }

  private onHeartbeatFailed(err: unknown): void {
    this.log.warn({ err: (err as Error).message }, 'partition heartbeat failed');
    if (Date.now() - this.lastHeartbeatOkMs <= this.options.timing.leaseMs || this.owned.size === 0) return;
    // Our leases have expired by now and others may hold them: stop consuming (SAC covers the gap).
    this.log.warn({ partitions: [...this.owned] }, 'partition leases expired without renewal; no longer consuming them');
    for (const p of this.owned) void this.consumers.get(p)?.pause();
    this.owned.clear();
    this.releasing.clear();
    this.drainWarned.clear();
  }

  private async tick(): Promise<void> {
    const { workerId, timing } = this.options;
    const view = await this.store.heartbeat(workerId, timing.leaseMs);
    this.lastHeartbeatOkMs = Date.now();
    if (this.stopped) return;
    const held = new Set(view.held);
    for (const p of [...this.owned].filter((q) => !held.has(q))) {
      // Another worker took it (our lease expired): SAC keeps this consumer active until it goes.
      this.log.warn({ partition: p }, 'partition lease lost; no longer consuming it');
      await this.consumers.get(p)?.pause();
      this.owned.delete(p);
      this.releasing.delete(p);
    }
    // Held in the database but not here: leases of an earlier run of this worker id.
    for (const p of view.held) if (!this.owned.has(p)) this.take(p);
    for (const [p, sinceMs] of this.releasing) {
      const inFlight = this.inFlightOf(p);
      if (inFlight > 0) {
        const waitedMs = Date.now() - sinceMs;
        if (waitedMs >= (this.options.drainWarnMs ?? RELEASE_DRAIN_WARN_MS) && !this.drainWarned.has(p)) {
          this.drainWarned.add(p);
          this.log.warn(
            { partition: p, inFlight, waitedMs },
            'partition being given up still has messages in flight; keeping its lease until they are settled',
          );
        }
        continue;
      }
      this.drainWarned.delete(p);
      await this.store.release(workerId, p);
      this.owned.delete(p);
      this.releasing.delete(p);
      this.log.info({ partition: p, holding: this.active }, 'partition given up');
    }
    const quota = fairShare(this.queues.length, view.liveWorkers, workerId);
    const active = this.active;
    if (active.length > quota) {
      // The highest-numbered go: any choice works, a stable one is easier to read in the logs.
      for (const p of active.slice(quota)) {
        this.releasing.set(p, Date.now());
        await this.consumers.get(p)?.pause();
      }
      return;
    }
    const claimed: number[] = [];
    for (const p of view.free) {
      if (this.active.length >= quota) break;
      if (this.owned.has(p)) continue;
      if (await this.store.claim(workerId, p, timing.leaseMs)) {
        this.take(p);
        claimed.push(p);
      }
    }
    if (claimed.length > 0) this.log.info({ claimed, holding: this.active, liveWorkers: view.liveWorkers.length }, 'partitions claimed');
  }

  /** Starts consuming a partition whose lease this worker holds. */
  private take(p: number): void {
    this.owned.add(p);
    this.releasing.delete(p);
    this.drainWarned.delete(p);
    const existing = this.consumers.get(p);
    if (existing) {
      if (!this.paused) void existing.resume();
      return;
    }
    const consumer = this.channel.consume(
      this.queues[p]!,
      (d) => {
        this.inFlight.set(d.msg, p);
        this.onMessage(d);
      },
      { label: `partition ${p} consumer` },
    );
    this.consumers.set(p, consumer);
    if (this.paused) void consumer.pause();
  }

  private inFlightOf(p: number): number {
    let n = 0;
    for (const q of this.inFlight.values()) if (q === p) n++;
    return n;
  }
}
