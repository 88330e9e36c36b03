import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemAccountId } from '../../src/domain/ledger.js';
import { examplesOf, failedChecks, verifyJson } from '../helpers/verify-checks.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { txBody } from '../helpers/publish.js';
import { runTxsim, startWorker, waitFor, waitForConsumers, type WorkerProcess } from '../helpers/txsim.js';
import { authorization, capture, outcomeOf, publishAndWait } from './card-helpers.js';

// verify's hold checks against books a defective worker could write: a hold that is not its
// authorization, a capture that names no hold, a void that leaves its hold open, a hold expired,
// voided or captured without the history that would make it so. Each book is written by hand over
// flows real workers applied, verified, then undone; the legitimate flows themselves must pass.

describe('verify: holds agree with their authorizations and their history', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;

  beforeAll(async () => {
    ns = await createTestNamespace('vhold');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(10, { openingBalanceMinor: 100_000n });
    worker = startWorker('h1', ns.env, ['--batch-size', '10', '--expire-every', '250ms']);
    await waitForConsumers(ns, 1, 'the worker');
  });

  afterAll(async () => {
    await worker?.stop();
    await ns.cleanup();
  });

  /** An applied outcome row written by hand (no entries: the caller adds those it needs). */
  async function insertApplied(row: Record<string, unknown>): Promise<string> {
    const id = randomUUID();
    const now = new Date();
    await ns.db('transactions').insert({
      id,
      currency: 'EUR',
      status: 'applied',
      body_hash: 'x'.repeat(64),
      worker_id: 'defective',
      balance_after_minor: 0,
      created_at: now,
      processed_at: now,
      ...row,
    });
    return id;
  }

  /** A hold's state changed by hand (its account's `held` released to match), verified, then restored. */
  async function verifyWithState(holdId: unknown, accountId: number, state: string, releasedMinor: number) {
    const id = String(holdId);
    const before: { state: string } = await ns.db('holds').where('id', id).first('state');
    const set = async (to: string, heldDelta: number) => {
      await ns.db.transaction(async (trx) => {
        await trx('holds').where('id', id).update({ state: to });
        await trx('accounts').where('id', accountId).increment('held_minor', heldDelta);
      });
    };
    await set(state, -releasedMinor);
    try {
      return await verifyJson(ns.env);
    } finally {
      await set(before.state, releasedMinor);
    }
  }

  it('passes every legitimate ending: partial and final captures, voids, refunds, expiry', async () => {
    const partial = authorization(1, 3_000);
    const voided = authorization(2, 1_000);
    const refunded = authorization(3, 2_000);
    const expiring = authorization(4, 500, { expiresAt: new Date(Date.now() + 1_500).toISOString() });
    const full = authorization(5, 800);
    await publishAndWait(ns, [partial, voided, refunded, expiring, full]);
    const captured = capture(3, refunded.id, 2_000);
    await publishAndWait(ns, [capture(1, partial.id, 1_000), capture(5, full.id, 300), capture(2, voided.id, 400), captured]);
    // After the partial capture it follows (messages of different types may be consumed in any order).
    const voiding = txBody({ type: 'card_void', accountId: 2, authorizationId: voided.id, amountMinor: undefined });
    await publishAndWait(ns, [
      voiding,
      capture(1, partial.id, 500, { final: true }),
      capture(5, full.id, 500),
      txBody({ type: 'card_refund', accountId: 3, authorizationId: refunded.id, captureId: captured.id, amountMinor: 700 }),
    ]);
    expect(await outcomeOf(ns, voiding.id)).toMatchObject({ status: 'applied' });
    await waitFor(
      async () => (await ns.db('holds').where('id', String(expiring.id)).first('state'))?.state === 'expired',
      30_000,
      'expiry',
    );
    const states = await ns.db('holds').orderBy('account_id').select('account_id', 'state');
    expect(states.map((h: { account_id: string; state: string }) => `${h.account_id} ${h.state}`)).toEqual([
      '1 captured',
      '2 voided',
      '3 captured',
      '4 expired',
      '5 captured',
    ]);
    const { code, report, out } = await verifyJson(ns.env);
    expect(code, out).toBe(0);
    expect(failedChecks(report)).toEqual({});
  });

  it('finds a hold of more than its authorization (holds_match_authorization)', async () => {
    const auth = authorization(6, 1_000);
    await publishAndWait(ns, [auth]);
    const id = String(auth.id);
    // Grown to 5000, with `held` to match: every other check still holds.
    const grow = async (by: number) => {
      await ns.db.transaction(async (trx) => {
        await trx('holds').where('id', id).increment('authorized_minor', by);
        await trx('accounts').where('id', 6).increment('held_minor', by);
      });
    };
    await grow(4_000);
    try {
      const { code, report, out } = await verifyJson(ns.env);
      expect(code, out).toBe(4);
      expect(failedChecks(report)).toEqual({ holds_match_authorization: 1 });
      expect(examplesOf(report, 'holds_match_authorization')).toEqual([
        `hold ${id} (5000 EUR on account 6, customer EUR): authorization applied card_authorization of 1000 EUR on account 6`,
      ]);
    } finally {
      await grow(-4_000);
    }
  });

  it('finds a capture applied without any hold (card_operations_on_own_hold)', async () => {
    const authorizationId = randomUUID();
    const id = await insertApplied({ type: 'card_capture', account_id: 7, amount_minor: 700, authorization_id: authorizationId });
    await ns.db('ledger_entries').insert([
      { transaction_id: id, account_id: 7, amount_minor: -700 },
      { transaction_id: id, account_id: systemAccountId('card_settlement', 'EUR'), amount_minor: 700 },
    ]);
    await ns.db('accounts').where('id', 7).decrement('balance_minor', 700);
    try {
      const { code, report, out } = await verifyJson(ns.env);
      expect(code, out).toBe(4);
      expect(failedChecks(report)).toEqual({ card_operations_on_own_hold: 1 });
      expect(examplesOf(report, 'card_operations_on_own_hold')).toEqual([
        `${id} (card_capture on account 7): authorization ${authorizationId} has no hold`,
      ]);
    } finally {
      await ns.db('ledger_entries').where('transaction_id', id).delete();
      await ns.db('transactions').where('id', id).delete();
      await ns.db('accounts').where('id', 7).increment('balance_minor', 700);
    }
  });

  it('finds a void applied while its hold stays open and is captured later (holds_state_matches_history)', async () => {
    const auth = authorization(8, 1_000);
    await publishAndWait(ns, [auth]);
    const voidId = await insertApplied({ type: 'card_void', account_id: 8, authorization_id: String(auth.id) });
    const later = capture(8, auth.id, 1_000);
    await publishAndWait(ns, [later]);
    try {
      expect((await outcomeOf(ns, later.id))?.status).toBe('applied');
      const { code, report, out } = await verifyJson(ns.env);
      expect(code, out).toBe(4);
      expect(failedChecks(report)).toEqual({ holds_state_matches_history: 1 });
      expect(examplesOf(report, 'holds_state_matches_history')).toEqual([
        `hold ${String(auth.id)} captured (authorized 1000, captured 1000): an applied void, yet not voided; a capture or void applied after its void`,
      ]);
    } finally {
      // Without the void the book is an authorization captured in full: legitimate.
      await ns.db('transactions').where('id', voidId).delete();
    }
  });

  it('finds a hold expired before its expiry, voided without a void, captured without a capture', async () => {
    const auth = authorization(9, 1_000);
    await publishAndWait(ns, [auth]);
    const id = String(auth.id);
    for (const [state, problem] of [
      ['expired', 'expired before its expiry'],
      ['voided', 'voided without an applied void'],
      ['captured', 'captured without an applied capture'],
    ] as const) {
      const { code, report, out } = await verifyWithState(id, 9, state, 1_000);
      expect(code, `${state}: ${out}`).toBe(4);
      expect(failedChecks(report), state).toEqual({ holds_state_matches_history: 1 });
      expect(examplesOf(report, 'holds_state_matches_history')).toEqual([`hold ${id} ${state} (authorized 1000, captured 0): ${problem}`]);
    }
  });

  it('passes again once the books are repaired', async () => {
    const { code, report, out } = await verifyJson(ns.env);
    expect(code, out).toBe(0);
    expect(failedChecks(report)).toEqual({});
  });
});
