import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemAccountId } from '../../src/domain/ledger.js';
import { type VerifyChecksJson as VerifyJson, failedChecks } from '../helpers/verify-checks.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { txBody } from '../helpers/publish.js';
import { runTxsim, startWorker, waitFor, waitForConsumers, type WorkerProcess } from '../helpers/txsim.js';
import { CARD_FLOW_GEN_ARGS, publishAndWait } from './card-helpers.js';

// verify's postings check against real workers: every type the workers apply (and the opening
// balances `accounts seed` books) passes it, and a posting corrupted by hand — wrong sign, wrong
// account, wrong amount — is found even when every other check still holds: the entries sum to zero,
// there are two of them, and the balance (and balance after) agree with them.

const CHECK = 'postings_match_type';

/** gen's card-flow flags with every type in the mix (the card-flow tests leave out withdrawals and card payments). */
const GEN_ARGS = CARD_FLOW_GEN_ARGS.map((arg, i, all) =>
  all[i - 1] === '--mix' ? 'deposit=15,withdrawal=10,card_payment=10,transfer=15,card_authorization=50' : arg,
);

describe('verify: each applied transaction posts what its type posts', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  // Accounts 41-43 are left out of gen's run, so the corruptions below touch nothing else.
  const withdrawal = txBody({ type: 'withdrawal', accountId: 41, amountMinor: 100 });
  const deposit = txBody({ type: 'deposit', accountId: 42, amountMinor: 250 });
  const payment = txBody({ type: 'card_payment', accountId: 43, amountMinor: 75, merchant: 'Bakery' });

  beforeAll(async () => {
    ns = await createTestNamespace('vpost');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(43, { openingBalanceMinor: 10_000_000n });
    worker = startWorker('p1', ns.env, ['--batch-size', '50', '--expire-every', '250ms']);
    await waitForConsumers(ns, 1, 'the worker');
  });

  afterAll(async () => {
    await worker?.stop();
    await ns.cleanup();
  });

  it('passes on what the workers apply: every type, card flows, expired holds and opening balances', async () => {
    const gen = await runTxsim(['gen', '300', '--rate', '300', '--accounts', '1-40', '--seed', 'vpost-1', '--json', ...GEN_ARGS], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const runId = (JSON.parse(gen.stdout) as { runId: string }).runId;
    await publishAndWait(ns, [withdrawal, deposit, payment]);
    // The holds left open expire ~3 s after their authorization (and post nothing when the sweep expires them).
    await waitFor(
      async () => Number((await ns.db('holds').whereIn('state', ['open', 'partially_captured']).count({ n: '*' }))[0]!.n) === 0,
      30_000,
      'every hold closed',
    );
    const verify = await runTxsim(['verify', '--run', runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout) as VerifyJson;
    expect(report.checks.find((c) => c.name === CHECK)).toMatchObject({ violations: 0, examples: [] });
    // The run really applied every type the check knows, and the sweep expired some holds.
    const types = (await ns.db('transactions').where('status', 'applied').distinct('type')).map((r: { type: string }) => r.type);
    expect(types.sort()).toEqual(
      [
        'card_authorization',
        'card_capture',
        'card_payment',
        'card_refund',
        'card_void',
        'deposit',
        'opening',
        'transfer',
        'withdrawal',
      ].sort(),
    );
    expect(Number((await ns.db('holds').where('state', 'expired').count({ n: '*' }))[0]!.n)).toBeGreaterThan(0);
  });

  /** Runs verify (JSON, then text) over a corruption made by `corrupt` and undone by `repair`. */
  async function verifyCorrupted(corrupt: () => Promise<void>, repair: () => Promise<void>) {
    await corrupt();
    try {
      const json = await runTxsim(['verify', '--json'], ns.env);
      const text = await runTxsim(['verify'], ns.env);
      return { json, report: JSON.parse(json.stdout) as VerifyJson, text };
    } finally {
      await repair();
    }
  }

  it('finds a withdrawal booked with its signs flipped (+100 to the customer, −100 to cash_out, balances to match)', async () => {
    const id = String(withdrawal.id);
    // The customer gains 200 over what the withdrawal should leave: its balance and balance after say so too.
    const flip = (delta: number) => async () => {
      await ns.db.transaction(async (trx) => {
        await trx('ledger_entries')
          .where('transaction_id', id)
          .update({ amount_minor: trx.raw('-amount_minor') });
        await trx('accounts').where('id', 41).increment('balance_minor', delta);
        await trx('transactions').where('id', id).increment('balance_after_minor', delta);
      });
    };
    const { json, report, text } = await verifyCorrupted(flip(200), flip(-200));
    expect(json.code, json.stdout + json.stderr).toBe(4);
    // Every other check holds: only the new one sees it.
    expect(failedChecks(report)).toEqual({ [CHECK]: 1 });
    expect(report.checks.find((c) => c.name === CHECK)!.examples).toEqual([
      `${id} (withdrawal of 100 on account 41): posted 41 +100, ${systemAccountId('cash_out', 'EUR')} -100; expected 41 -100, ${systemAccountId('cash_out', 'EUR')} +100`,
    ]);
    expect(text.code).toBe(4);
    expect(text.stdout).toContain(id);
    expect(text.stderr).toMatch(new RegExp(`verification failed: ${CHECK}\\b`));
  });

  it('finds a deposit whose other side is on cash_out instead of cash_in', async () => {
    const id = String(deposit.id);
    const move = (from: number, to: number) => async () => {
      await ns.db('ledger_entries').where({ transaction_id: id, account_id: from }).update({ account_id: to });
    };
    const cashIn = systemAccountId('cash_in', 'EUR');
    const cashOut = systemAccountId('cash_out', 'EUR');
    const { json, report } = await verifyCorrupted(move(cashIn, cashOut), move(cashOut, cashIn));
    expect(json.code, json.stdout + json.stderr).toBe(4);
    expect(failedChecks(report)).toEqual({ [CHECK]: 1 });
    expect(report.checks.find((c) => c.name === CHECK)!.examples[0]).toContain(`${id} (deposit of 250 on account 42)`);
  });

  it('finds a card payment posted for 70 instead of 75', async () => {
    const id = String(payment.id);
    const shrink = (by: number) => async () => {
      await ns.db.transaction(async (trx) => {
        await trx('ledger_entries')
          .where('transaction_id', id)
          .update({ amount_minor: trx.raw('amount_minor - SIGN(amount_minor) * ?', [by]) });
        await trx('accounts').where('id', 43).increment('balance_minor', by);
        await trx('transactions').where('id', id).increment('balance_after_minor', by);
      });
    };
    const { json, report } = await verifyCorrupted(shrink(5), shrink(-5));
    expect(json.code, json.stdout + json.stderr).toBe(4);
    expect(failedChecks(report)).toEqual({ [CHECK]: 1 });
    expect(report.checks.find((c) => c.name === CHECK)!.examples[0]).toContain(`${id} (card_payment of 75 on account 43): posted 43 -70`);
  });
});
