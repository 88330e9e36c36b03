import type { ConsumeMessage } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import type { Delivery, ManagedChannel } from '../../src/amqp/managed-channel.js';
import type { LeaseView, PartitionLeaseStore } from '../../src/db/partition-leases.js';
import { PartitionConsumers } from '../../src/worker/partition-leases.js';
import { recordingLogger } from './worker-harness.js';

/** The lease table in memory, with the semantics of src/db/partition-leases.ts. */
class MemoryLeases implements PartitionLeaseStore {
  readonly heartbeats = new Map<string, number>();
  readonly leases: { worker: string | null; expiresAtMs: number }[];

  constructor(partitions: number) {
    this.leases = Array.from({ length: partitions }, () => ({ worker: null, expiresAtMs: 0 }));
  }

  heartbeat(workerId: string, leaseMs: number): Promise<LeaseView> {
    const now = Date.now();
    this.heartbeats.set(workerId, now + leaseMs);
    for (const l of this.leases) if (l.worker === workerId) l.expiresAtMs = now + leaseMs;
    return Promise.resolve({
      liveWorkers: [...this.heartbeats].filter(([, exp]) => exp > now).map(([w]) => w),
      held: this.heldBy(workerId),
      free: this.leases.flatMap((l, p) => (l.worker === null || l.expiresAtMs <= now ? [p] : [])),
    });
  }

  claim(workerId: string, p: number, leaseMs: number): Promise<boolean> {
    const l = this.leases[p]!;
    if (l.worker !== null && l.worker !== workerId && l.expiresAtMs > Date.now()) return Promise.resolve(false);
    l.worker = workerId;
    l.expiresAtMs = Date.now() + leaseMs;
    return Promise.resolve(true);
  }

  release(workerId: string, p: number): Promise<void> {
    if (this.leases[p]!.worker === workerId) this.leases[p] = { worker: null, expiresAtMs: 0 };
    return Promise.resolve();
  }

  async leave(workerId: string): Promise<void> {
    for (let p = 0; p < this.leases.length; p++) await this.release(workerId, p);
    this.heartbeats.delete(workerId);
  }

  heldBy(workerId: string): number[] {
    return this.leases.flatMap((l, p) => (l.worker === workerId ? [p] : []));
  }
}

/** A stand-in for the consume channel: records each partition consumer and whether it is subscribed. */
function fakeChannel() {
  const consumers = new Map<string, { active: boolean; onMessage: (d: Delivery) => void }>();
  const channel = {
    consume(queue: string, onMessage: (d: Delivery) => void) {
      const c = {
        active: true,
        onMessage,
        pause: () => Promise.resolve(void (c.active = false)),
        resume: () => Promise.resolve(void (c.active = true)),
        cancel: () => Promise.resolve(void (c.active = false)),
      };
      consumers.set(queue, c);
      return c;
    },
  } as unknown as ManagedChannel;
  const subscribed = () => [...consumers].filter(([, c]) => c.active).map(([q]) => Number(q.slice(1)));
  return { channel, consumers, subscribed };
}

const QUEUES = ['p0', 'p1', 'p2', 'p3'];
// The lease outlasts any stall a loaded test machine gives the heartbeat (a lapsed lease is claimed by the other worker).
const TIMING = { heartbeatMs: 10, leaseMs: 1_000 };
const running: PartitionConsumers[] = [];

function worker(store: MemoryLeases, id: string, drainWarnMs?: number) {
  const fake = fakeChannel();
  const delivered: Delivery[] = [];
  const { log, lines } = recordingLogger();
  const pc = new PartitionConsumers(
    fake.channel,
    QUEUES,
    (d) => delivered.push(d),
    store,
    { workerId: id, timing: TIMING, ...(drainWarnMs === undefined ? {} : { drainWarnMs }) },
    log,
  );
  running.push(pc);
  pc.start();
  return { pc, ...fake, delivered, lines };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 8_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) if (check()) return;
  throw new Error(`timed out waiting for ${what}`);
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((pc) => pc.cancel()));
});

describe('PartitionConsumers (the lease balancer of an ordered worker)', () => {
  it('a lone worker takes every partition; a second one gets half; the one that leaves hands its share over', async () => {
    const store = new MemoryLeases(4);
    const a = worker(store, 'a');
    await until(() => a.pc.active.length === 4, 'a to hold 4');
    expect(a.subscribed()).toEqual([0, 1, 2, 3]);
    const b = worker(store, 'b');
    await until(() => store.heldBy('a').length === 2 && store.heldBy('b').length === 2, 'a 2 + 2 split');
    // a gave up its highest partitions and stopped consuming them; b consumes exactly those.
    expect(store.heldBy('a')).toEqual([0, 1]);
    expect(a.subscribed()).toEqual([0, 1]);
    expect(b.subscribed()).toEqual([2, 3]);
    await b.pc.cancel();
    await b.pc.leave();
    await until(() => store.heldBy('a').length === 4, 'a to take b’s partitions back');
    expect(a.subscribed()).toEqual([0, 1, 2, 3]);
  });

  it('gives a partition up only once its in-flight messages are settled', async () => {
    const store = new MemoryLeases(4);
    const a = worker(store, 'a');
    await until(() => a.pc.active.length === 4, 'a to hold 4');
    // A message of partition 3 is being applied when b joins.
    const msg = { fields: { deliveryTag: 1 } } as ConsumeMessage;
    a.consumers.get('p3')!.onMessage({ msg, generation: 1 });
    const b = worker(store, 'b');
    await until(() => store.heldBy('b').length === 1, 'b to claim the free partition');
    // Partition 3 is no longer consumed by a, but its lease stays with a while the message is in flight.
    await new Promise((r) => setTimeout(r, 100));
    expect(a.subscribed()).toEqual([0, 1]);
    expect(store.heldBy('a')).toEqual([0, 1, 3]);
    expect(store.heldBy('b')).toEqual([2]);
    a.pc.settled(msg);
    await until(() => store.heldBy('b').length === 2, 'b to get partition 3 after the ack');
    expect(store.heldBy('a')).toEqual([0, 1]);
    expect(b.subscribed()).toEqual([2, 3]);
  });

  it('keeps the lease of a partition being given up for as long as a message of it is in flight, and says so', async () => {
    const store = new MemoryLeases(4);
    const a = worker(store, 'a', 50);
    await until(() => a.pc.active.length === 4, 'a to hold 4');
    // A message of partition 3 retries in place for longer than the drain's warning time (a minute by default).
    const msg = { fields: { deliveryTag: 1 } } as ConsumeMessage;
    a.consumers.get('p3')!.onMessage({ msg, generation: 1 });
    const b = worker(store, 'b');
    await until(() => b.pc.active.length === 1, 'b to claim the free partition');
    await until(() => a.lines.some((l) => l.msg.startsWith('partition being given up still has messages in flight')), 'the warning');
    await new Promise((r) => setTimeout(r, 300));
    // Never released while in flight: b would apply the partition's later messages first.
    expect(store.heldBy('a')).toEqual([0, 1, 3]);
    expect(a.lines.filter((l) => l.msg.startsWith('partition being given up')).map((l) => l.partition)).toEqual([3]);
    a.pc.settled(msg);
    await until(() => store.heldBy('b').length === 2, 'b to get partition 3 after the ack');
  });

  it('a worker that dies without leaving loses its partitions when the lease expires', async () => {
    const store = new MemoryLeases(4);
    const a = worker(store, 'a');
    const b = worker(store, 'b');
    await until(() => store.heldBy('a').length === 2 && store.heldBy('b').length === 2, 'a 2 + 2 split');
    // b stops heartbeating (a crash): no leave().
    await b.pc.cancel();
    await until(() => store.heldBy('a').length === 4, 'a to re-claim the expired leases');
    expect(a.subscribed()).toEqual([0, 1, 2, 3]);
  });
});
