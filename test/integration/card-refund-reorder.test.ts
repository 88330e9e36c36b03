import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { queueDepth, runTxsim, startWorker, waitFor, waitForConsumers, type WorkerProcess } from '../helpers/txsim.js';
import { authorization, capture, funds, outcomeOf } from './card-helpers.js';

// A refund by authorizationId sent after its capture, while that capture waits in a delay queue
// (its authorization came late): the refund waits for it instead of being lost as
// refund_exceeds_capture, and is still bounded by what was captured in the end.

/** One delay step, long enough to publish the authorization and the refunds while the capture waits in it. */
const RETRY_DELAY_MS = 2_000;
const ATTEMPTS_MAX = 4;

const refund = (accountId: number, authorizationId: unknown, amountMinor: number) =>
  txBody({ type: 'card_refund', accountId, authorizationId, amountMinor });

describe('a refund by authorizationId behind a capture in a delay queue', () => {
  let ns: TestNamespace;
  let env: NodeJS.ProcessEnv;
  let workers: WorkerProcess[] = [];
  const delayQueue = () => `${ns.name}.retry.${RETRY_DELAY_MS}ms`;

  beforeAll(async () => {
    ns = await createTestNamespace('refund');
    // The namespace's own delays (100, 300 ms) would bring the capture back before the refund is
    // tried; one 2 s step makes the order of the scenario certain.
    env = { ...ns.env, TXSIM_RETRY_DELAYS: String(RETRY_DELAY_MS) };
    expect((await runTxsim(['setup'], env)).code).toBe(0);
    await ns.seed(2, { openingBalanceMinor: 10_000n });
    workers = ['r1', 'r2', 'r3'].map((id) =>
      startWorker(id, env, ['--batch-size', id === 'r1' ? '1' : '20', '--prefetch', '20', '--max-attempts', String(ATTEMPTS_MAX)]),
    );
    await waitForConsumers(ns, 3, 'three consumers', 20_000);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    // cleanup() deletes the namespace's default delay queues, not this one.
    const channel = await ns.amqp.createChannel();
    await channel.deleteQueue(delayQueue()).catch(() => {});
    await channel.close().catch(() => {});
    await ns.cleanup();
  });

  it('the capture and one refund are applied; the refund sent twice counts once; a second refund beyond the capture is rejected on its last attempt', async () => {
    const auth = authorization(1, 1_000);
    const early = capture(1, auth.id, 300);
    await publishRaw(ns.amqp, ns.topology, [{ body: early }]);
    // The capture found no authorization and waits in the delay queue.
    await waitFor(async () => (await queueDepth(ns.amqp, delayQueue())) === 1, 10_000, 'the capture deferred', 20);
    await publishRaw(ns.amqp, ns.topology, [{ body: auth }]);
    await waitFor(async () => (await outcomeOf(ns, auth.id))?.status === 'applied', 10_000, 'the authorization applied', 20);
    expect(await outcomeOf(ns, early.id), 'the capture is still in the delay queue').toBeUndefined();

    // 200 + 200 exceed the 300 captured: one of the two must be rejected, whichever comes second.
    const first = refund(1, auth.id, 200);
    const second = refund(1, auth.id, 200);
    await publishRaw(ns.amqp, ns.topology, [{ body: first }, { body: first }, { body: second }]);
    const ids = [early, first, second].map((b) => String(b.id));
    await waitFor(
      async () => Number((await ns.db('transactions').whereIn('id', ids).count({ n: '*' }))[0]!.n) === ids.length,
      30_000,
      'three outcomes',
    );

    expect(await outcomeOf(ns, early.id)).toMatchObject({ status: 'applied' });
    const refunds = [(await outcomeOf(ns, first.id))!, (await outcomeOf(ns, second.id))!];
    expect(
      refunds.filter((r) => r.status === 'applied'),
      JSON.stringify(refunds),
    ).toHaveLength(1);
    const rejected = refunds.filter((r) => r.status === 'rejected');
    expect(rejected, JSON.stringify(refunds)).toEqual([{ status: 'rejected', reason: 'refund_exceeds_capture', attempts: ATTEMPTS_MAX }]);
    // 300 captured, 200 refunded once (the copy of `first` is a duplicate or was never applied twice).
    expect(await funds(ns, 1)).toEqual({ balance: 9_900n, held: 700n });
    const refundEntries = await ns.db('ledger_entries').whereIn('transaction_id', [String(first.id), String(second.id)]);
    expect(refundEntries).toHaveLength(2);
    expect(await ns.db('holds').where('id', String(auth.id)).first('state', 'captured_minor', 'refunded_minor')).toEqual({
      state: 'partially_captured',
      captured_minor: '300',
      refunded_minor: '200',
    });
  });
});
