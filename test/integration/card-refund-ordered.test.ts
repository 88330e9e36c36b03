import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topologyFor } from '../../src/amqp/topology.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { queueState, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { authorization, capture, funds, outcomeOf, publishAndWait } from './card-helpers.js';

// Ordered mode (setup --partitions): a capture sent before a refund is decided before it (retried in
// place, holding its partition), so a refund by authorizationId beyond what was captured is refused
// at once rather than waiting for captures that cannot be behind it, which would stall its partition.

const PARTITIONS = 2;

describe('a refund by authorizationId beyond its capture, ordered mode', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess | undefined;

  beforeAll(async () => {
    ns = await createTestNamespace('refundord');
    const setup = await runTxsim(['setup', '--partitions', String(PARTITIONS)], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(2, { openingBalanceMinor: 10_000n });
    ns = { ...ns, topology: topologyFor(ns.name, ns.config.retryDelaysMs, PARTITIONS) };
    worker = startWorker('o1', ns.env, ['--max-attempts', '5', '--batch-size', '20', '--prefetch', '20']);
    const partitionQueues = ns.topology.ordered!.partitionQueues;
    await waitFor(
      async () => (await Promise.all(partitionQueues.map((q) => queueState(ns.amqp, q)))).every((s) => s.consumerCount === 1),
      30_000,
      'the worker on every partition',
    );
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    if (ns?.topology.ordered) {
      const channel = await ns.amqp.createChannel();
      for (const q of ns.topology.ordered.partitionQueues) await channel.deleteQueue(q).catch(() => {});
      await channel.deleteExchange(ns.topology.ordered.exchange).catch(() => {});
      await channel.close().catch(() => {});
    }
    await ns?.cleanup();
  });

  it('is rejected refund_exceeds_capture on its first attempt', async () => {
    const auth = authorization(1, 1_000);
    const captured = capture(1, auth.id, 300);
    const over = txBody({ type: 'card_refund', accountId: 1, authorizationId: auth.id, amountMinor: 400 });
    await publishRaw(ns.amqp, ns.topology, [{ body: auth }, { body: captured }]);
    await waitFor(async () => (await outcomeOf(ns, captured.id))?.status === 'applied', 30_000, 'the capture applied');
    await publishAndWait(ns, [over]);
    expect(await outcomeOf(ns, over.id)).toEqual({ status: 'rejected', reason: 'refund_exceeds_capture', attempts: 1 });
    expect(await funds(ns, 1)).toEqual({ balance: 9_700n, held: 700n });
  });
});
