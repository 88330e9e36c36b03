import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemAccountId } from '../../src/domain/ledger.js';
import { examplesOf, failedChecks, verifyJson } from '../helpers/verify-checks.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { txBody } from '../helpers/publish.js';
import { runTxsim, startWorker, waitForConsumers, type WorkerProcess } from '../helpers/txsim.js';
import { publishAndWait } from './card-helpers.js';

// verify's currency checks: money never changes currency. A transfer booked from a EUR account to a
// USD account with entries and balances that agree with each other sums to zero over the whole
// ledger, yet creates dollars and destroys euros; a transfer into a system account leaves the
// customers. Each book is written as a defective worker would write it, verified, then undone.

describe('verify: each currency balances on its own', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;

  beforeAll(async () => {
    ns = await createTestNamespace('vcur');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(2, { openingBalanceMinor: 100_000n });
    await ns.seed(2, { firstId: 101, openingBalanceMinor: 100_000n, currency: 'USD' });
    worker = startWorker('c1', ns.env, ['--batch-size', '10']);
    await waitForConsumers(ns, 1, 'the worker');
    // Legitimate transfers in both currencies: what the checks must let through.
    await publishAndWait(ns, [
      txBody({ type: 'transfer', accountId: 1, toAccountId: 2, amountMinor: 300 }),
      txBody({ type: 'transfer', accountId: 101, toAccountId: 102, amountMinor: 400, currency: 'USD' }),
    ]);
    expect(Number((await ns.db('transactions').where({ type: 'transfer', status: 'applied' }).count({ n: '*' }))[0]!.n)).toBe(2);
  });

  afterAll(async () => {
    await worker?.stop();
    await ns.cleanup();
  });

  /** An applied transfer written by hand: its row, its two entries and both balances, all agreeing. */
  async function bookTransfer(from: number, to: number, amountMinor: number, currency: string): Promise<() => Promise<void>> {
    const id = randomUUID();
    const now = new Date();
    await ns.db.transaction(async (trx) => {
      await trx('transactions').insert({
        id,
        type: 'transfer',
        account_id: from,
        to_account_id: to,
        amount_minor: amountMinor,
        currency,
        status: 'applied',
        body_hash: 'x'.repeat(64),
        worker_id: 'defective',
        balance_after_minor: 0,
        created_at: now,
        processed_at: now,
      });
      await trx('ledger_entries').insert([
        { transaction_id: id, account_id: from, amount_minor: -amountMinor, created_at: now },
        { transaction_id: id, account_id: to, amount_minor: amountMinor, created_at: now },
      ]);
      await trx('accounts').where('id', from).decrement('balance_minor', amountMinor);
      await trx('accounts').where('id', to).increment('balance_minor', amountMinor);
    });
    return async () => {
      await ns.db.transaction(async (trx) => {
        await trx('ledger_entries').where('transaction_id', id).delete();
        await trx('transactions').where('id', id).delete();
        await trx('accounts').where('id', from).increment('balance_minor', amountMinor);
        await trx('accounts').where('id', to).decrement('balance_minor', amountMinor);
      });
    };
  }

  it('passes the legitimate transfers of each currency', async () => {
    const { code, report, out } = await verifyJson(ns.env);
    expect(code, out).toBe(0);
    expect(failedChecks(report)).toEqual({});
  });

  it('finds an applied EUR transfer from a EUR account credited to a USD account', async () => {
    const undo = await bookTransfer(2, 101, 500, 'EUR');
    try {
      const { code, report, out } = await verifyJson(ns.env);
      expect(code, out).toBe(4);
      // EUR lost 500 and USD gained 500: zero over the whole ledger, not in either currency.
      expect(failedChecks(report)).toEqual({
        ledger_sums_to_zero: 2,
        entries_in_transaction_currency: 1,
        transfers_keep_customer_total: 1,
      });
      expect(examplesOf(report, 'ledger_sums_to_zero').sort()).toEqual(['ledger sums to -500 in EUR', 'ledger sums to 500 in USD']);
      expect(examplesOf(report, 'entries_in_transaction_currency')).toEqual([
        expect.stringMatching(/\(transfer in EUR\): entry on account 101 in USD$/) as unknown as string,
      ]);
      expect(examplesOf(report, 'transfers_keep_customer_total')[0]).toMatch(/EUR from customer EUR to customer USD$/);
      const text = await runTxsim(['verify'], ns.env);
      expect(text.code).toBe(4);
      expect(text.stderr).toMatch(/verification failed: .*ledger_sums_to_zero/);
    } finally {
      await undo();
    }
  });

  it('finds an applied transfer whose destination is a system account (money leaves the customers)', async () => {
    const cashIn = systemAccountId('cash_in', 'EUR');
    const undo = await bookTransfer(1, cashIn, 200, 'EUR');
    try {
      const { code, report, out } = await verifyJson(ns.env);
      expect(code, out).toBe(4);
      // Balanced in its currency, two entries of the right signs on the accounts it names: only the transfer check sees it.
      expect(failedChecks(report)).toEqual({ transfers_keep_customer_total: 1 });
      expect(examplesOf(report, 'transfers_keep_customer_total')[0]).toMatch(/EUR from customer EUR to system EUR$/);
    } finally {
      await undo();
    }
  });

  it('passes again once the books are repaired', async () => {
    const { code, out } = await verifyJson(ns.env);
    expect(code, out).toBe(0);
  });
});
