import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADERS, PROCESS_QUEUE_DELIVERY_LIMIT } from '../../src/amqp/topology.js';
import { findFailures } from '../../src/db/transaction-failures.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { peekQueue, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

/**
 * Hands each message back to the process queue unacknowledged `returns[id]` times, as workers that
 * crash while holding it would: nack with requeue, and the last time only after the consumer is
 * cancelled, so the broker keeps the message (with its delivery count) for the next consumer.
 */
async function returnToQueue(ns: TestNamespace, returns: Record<string, number>): Promise<void> {
  const channel = await ns.amqp.createChannel();
  await channel.prefetch(10);
  const held = new Map<string, ConsumeMessage>();
  let allHeld!: () => void;
  const done = new Promise<void>((resolve) => (allHeld = resolve));
  const { consumerTag } = await channel.consume(ns.topology.processQueue, (msg) => {
    if (!msg) return;
    const id = String(msg.properties.messageId);
    const returnedSoFar = Number(msg.properties.headers?.['x-delivery-count'] ?? 0);
    if (returnedSoFar + 1 < returns[id]!) return channel.nack(msg, false, true);
    held.set(id, msg);
    if (held.size === Object.keys(returns).length) allHeld();
  });
  await done;
  await channel.cancel(consumerTag);
  for (const msg of held.values()) channel.nack(msg, false, true);
  await channel.close();
}

describe('a message at the process queue delivery limit', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess | undefined;

  beforeAll(async () => {
    ns = await createTestNamespace('dl');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(2, { openingBalanceMinor: 10_000n });
  });

  afterAll(async () => {
    await worker?.stop();
    await ns.cleanup();
  });

  it('is parked by the worker with a record; one returned a time fewer is applied', async () => {
    const spent = txBody({ accountId: 1, amountMinor: 700 });
    const lastChance = txBody({ accountId: 2, amountMinor: 300 });
    const [spentId, lastChanceId] = [String(spent.id), String(lastChance.id)];
    await publishRaw(ns.amqp, ns.topology, [{ body: spent }, { body: lastChance }]);
    // The broker's own dead-lettering comes one return later than `spent`'s: at the limit + 1.
    await returnToQueue(ns, {
      [spentId]: PROCESS_QUEUE_DELIVERY_LIMIT,
      [lastChanceId]: PROCESS_QUEUE_DELIVERY_LIMIT - 1,
    });

    worker = startWorker('dl', ns.env);
    await waitFor(
      async () => (await ns.db('transactions').where('id', lastChanceId).first('status')) !== undefined,
      30_000,
      'the last-chance outcome',
    );
    await waitFor(async () => (await findFailures(ns.db, spentId)).length > 0, 30_000, 'the parked record');

    expect((await ns.db('transactions').where('id', lastChanceId).first('status')).status).toBe('applied');
    expect(await ns.db('transactions').where('id', spentId).first('status')).toBeUndefined();
    const [record] = await findFailures(ns.db, spentId);
    expect(record).toMatchObject({ state: 'parked', errorCode: 'delivery_limit', accountId: 1, attempt: 1 });
    expect(record!.errorMessage).toContain(`delivered ${PROCESS_QUEUE_DELIVERY_LIMIT + 1} times`);

    // In the parking queue with the worker's headers (so inspect-errors filters it as delivery_limit), not RabbitMQ's x-death.
    const channel = await ns.amqp.createConfirmChannel();
    const parked = (await peekQueue(channel, ns.topology.deadQueue)).filter((m) => m.properties.messageId === spentId);
    await channel.close();
    expect(parked).toHaveLength(1);
    expect(String(parked[0]!.properties.headers?.[HEADERS.lastError])).toMatch(/^delivery_limit: /);
    expect(parked[0]!.properties.headers?.['x-death']).toBeUndefined();
    expect(JSON.parse(parked[0]!.content.toString())).toEqual(spent);

    const shown = await runTxsim(['tx', 'show', spentId, '--json'], ns.env);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      status: 'parked',
      queue: ns.topology.deadQueue,
      lastError: { code: 'delivery_limit' },
    });
    const inspected = await runTxsim(['inspect-errors', '--dead', '--reason', 'delivery_limit', '--json'], ns.env);
    expect(inspected.code).toBe(0);
    expect(inspected.stdout).toContain(spentId);
    expect(inspected.stdout).not.toContain(lastChanceId);
  }, 90_000);
});
