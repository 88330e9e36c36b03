import { randomBytes } from 'node:crypto';
import amqp, { type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peekQueue, walkQueue, WalkInterruptedError, type Settlement } from '../../src/amqp/queue-walk.js';
import { inspectQueue } from '../../src/dead-letters/inspect-errors.js';
import { peekDeadIds } from '../../src/verify/broker-counts.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { queueDepth, runTxsim, waitFor } from '../helpers/txsim.js';
import { closeConnectionFromBroker, drain, parkDeposits, settledDepth } from './queue-walk-helpers.js';

/**
 * The walk that inspect-errors, replay-dead, verify and `tx show` read the errors and dead queues
 * with (src/amqp/queue-walk.ts), against the real broker: a channel closed mid-walk ends it with one
 * line that says how far it got and loses nothing; and a read never hands a message back, so no read
 * counts towards a quorum queue's delivery limit (20 by default from RabbitMQ 4.0, where a message
 * past it is dropped from a queue without a dead-letter target — the errors and dead queues have none).
 */

let ns: TestNamespace;

beforeAll(async () => {
  ns = await createTestNamespace('qwalk');
  expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
});

afterAll(async () => {
  await ns?.cleanup();
});

/** A queue of this test's own, deleted after `body` (a quorum queue unless `args` say otherwise). */
async function withQueue(suffix: string, args: Record<string, unknown>, body: (queue: string) => Promise<void>): Promise<void> {
  const queue = `${ns.name}.${suffix}`;
  const setup = await ns.amqp.createChannel();
  await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', ...args } });
  try {
    await body(queue);
  } finally {
    await setup.deleteQueue(queue).catch(() => {});
    await setup.close().catch(() => {});
  }
}

describe('walkQueue when its connection is closed mid-walk', () => {
  it('ends with one line saying how far it got; what it removed is gone, every other message still there once', async () => {
    await withQueue('walk-cut', {}, async (queue) => {
      const ids = await parkDeposits(ns.amqp, queue, 70);
      // A connection of the walk's own, named so that the management API can close just this one.
      const connectionName = `queue-walk test ${randomBytes(4).toString('hex')}`;
      const connection: ChannelModel = await amqp.connect(ns.config.amqpUrl, { clientProperties: { connection_name: connectionName } });
      connection.on('error', () => {});
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => {});
      const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
      const removed: string[] = [];
      let pages = 0;
      const walk = walkQueue(
        channel,
        queue,
        { depth: 70 },
        {
          wantsMore: () => true,
          visit: async (page: readonly GetMessage[]) => {
            // The second page is in hand when the broker closes the connection, as an operator (or a
            // restarting node) would: the visitor has decided, the walk has not settled the page yet.
            if (++pages === 2) {
              await closeConnectionFromBroker(ns.config.rabbitmqApiUrl, (c) => c.client_properties?.connection_name === connectionName);
              await closed;
            }
            // Every seventh message of the first page is removed (acked with its page).
            return page.map((m, i): Settlement => {
              if (pages === 1 && (i + 1) % 7 === 0) {
                removed.push((JSON.parse(m.content.toString()) as { id: string }).id);
                return 'remove';
              }
              return 'keep';
            });
          },
        },
      );
      await expect(walk).rejects.toThrow(
        new RegExp(
          `^reading ${queue.replace(/\./g, '\\.')} stopped after 32 of 70 messages \\(.+\\); the 32 in hand went back to ${queue.replace(/\./g, '\\.')}$`,
        ),
      );
      const err = (await walk.catch((e: unknown) => e)) as WalkInterruptedError;
      expect(err).toBeInstanceOf(WalkInterruptedError);
      expect(err.message).not.toContain('\n');
      expect(err.progress).toEqual({ depth: 70, visited: 64, settled: 32, removed: 4 });
      expect(err.unsettled).toHaveLength(32);
      expect(err.exitCode).toBe(3);
      await connection.close().catch(() => {});

      // Nothing lost, nothing twice: the 66 not removed, each once (the order is rotated: the cut round).
      expect(removed).toHaveLength(4);
      expect(await settledDepth(ns.amqp, queue)).toBe(66);
      const left = (await drain(ns.amqp, queue)).map((m) => m.id);
      expect(left).toHaveLength(66);
      expect([...left].sort()).toEqual(ids.filter((id) => !removed.includes(id)).sort());
    });
  });
});

describe('inspect-errors --ack when its connection is closed mid-walk', () => {
  it('reports what it showed and removed before, as partial, and the rest stays in the queue', async () => {
    const dead = ns.topology.deadQueue;
    const ids = await parkDeposits(ns.amqp, dead, 70);
    const connectionName = `queue-walk inspect test ${randomBytes(4).toString('hex')}`;
    const connection: ChannelModel = await amqp.connect(ns.config.amqpUrl, { clientProperties: { connection_name: connectionName } });
    connection.on('error', () => {});
    // The broker closes the connection while the walk waits for the 40th message (the second page, 7 in hand).
    let gets = 0;
    const closingOnGet40 = <C extends Channel>(channel: C): C => {
      const get = channel.get.bind(channel);
      channel.get = async (queue, options) => {
        if (++gets === 40)
          await closeConnectionFromBroker(ns.config.rabbitmqApiUrl, (c) => c.client_properties?.connection_name === connectionName);
        return get(queue, options);
      };
      return channel;
    };
    const createChannel = connection.createChannel.bind(connection);
    const createConfirmChannel = connection.createConfirmChannel.bind(connection);
    connection.createChannel = async () => closingOnGet40(await createChannel());
    connection.createConfirmChannel = async () => closingOnGet40(await createConfirmChannel());
    try {
      const report = await inspectQueue({ connection, topology: ns.topology }, { queue: 'dead', limit: 10, reason: null, ack: true });
      expect(report).toMatchObject({ queue: dead, depth: 70, scanned: 32, partial: true, removed: 10, byReason: { ER_LOCK_DEADLOCK: 32 } });
      expect(report.messages.map((m) => m.id)).toEqual(ids.slice(0, 10));
      expect(report.interrupted).toMatch(
        new RegExp(`^reading ${dead.replace(/\./g, '\\.')} stopped after 32 of 70 messages \\(.+\\); the 7 in hand went back to`),
      );
    } finally {
      await connection.close().catch(() => {});
    }
    // The 10 shown are gone; the other 60 are there, once each.
    expect(await settledDepth(ns.amqp, dead)).toBe(60);
    const left = (await drain(ns.amqp, dead)).map((m) => m.id);
    expect([...left].sort()).toEqual(ids.slice(10).sort());
  });
});

describe('a read never hands a message back (RabbitMQ 4 delivery limit)', () => {
  // RabbitMQ 4.0+ gives every quorum queue a delivery limit of 20 (a policy may set one on 3.x too); 3.10.8
  // has no default, so the limit is set here as a queue argument, which 3.10 honours the same way: a
  // message handed back more than 20 times is dropped (no dead-letter target, like the errors and dead
  // queues), and with a limit set a handed-back message goes near the head, not to the tail.
  it('21 reads of a quorum queue with a delivery limit of 20 keep every message, in order', async () => {
    await withQueue('walk-limited', { 'x-delivery-limit': 20 }, async (queue) => {
      const ids = await parkDeposits(ns.amqp, queue, 40);
      const channel = await ns.amqp.createConfirmChannel();
      try {
        for (let read = 1; read <= 21; read++) {
          // Handed-back messages reach a quorum queue's count through Raft a little later; copies are counted once confirmed.
          await waitFor(async () => (await queueDepth(ns.amqp, queue)) === 40, 10_000, `all 40 in ${queue} before read ${read}`);
          const seen = (await peekQueue(channel, queue, 10_000)).map((m) => (JSON.parse(m.content.toString()) as { id: string }).id);
          expect(seen, `read ${read}`).toEqual(ids);
        }
      } finally {
        await channel.close();
      }
      expect(await settledDepth(ns.amqp, queue)).toBe(40);
      const drained = await drain(ns.amqp, queue);
      expect(drained.map((m) => m.id)).toEqual(ids);
    });
  });

  it("after inspect-errors --dead, verify's read and replay-dead, no parked message carries a delivery count", async () => {
    const dead = ns.topology.deadQueue;
    const ids = await parkDeposits(ns.amqp, dead, 40);
    for (let i = 0; i < 2; i++) {
      const inspected = await runTxsim(['inspect-errors', '--dead', '--json'], ns.env);
      expect(inspected.code, inspected.stderr).toBe(0);
    }
    expect((await peekDeadIds({ connection: ns.amqp, topology: ns.topology }, 10_000)).size).toBe(40);
    // An id that is not parked: replay-dead reads the whole queue, replays nothing (exit 5).
    const replay = await runTxsim(['replay-dead', '--id', '00000000-0000-4000-8000-000000000000'], ns.env);
    expect(replay.code, replay.stderr).toBe(5);

    expect(await settledDepth(ns.amqp, dead)).toBe(40);
    const drained = await drain(ns.amqp, dead);
    expect(drained.map((m) => m.id)).toEqual(ids);
    // Handed back, a quorum queue's message carries x-delivery-count (3.10: +1 a return; 0, or from 3.12 no
    // header, on a first delivery) and the redelivered flag.
    for (const m of drained)
      expect({ redelivered: m.redelivered, deliveryCount: m.deliveryCount ?? 0 }, m.id).toEqual({ redelivered: false, deliveryCount: 0 });
  });
});
