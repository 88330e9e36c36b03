import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openingTransactionId } from '../../src/domain/ids.js';
import { systemAccountId } from '../../src/domain/ledger.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim } from '../helpers/txsim.js';

/**
 * What `accounts` prints for people: a system account's balance is its entry sum (its stored
 * balance is never updated), a limited list says how much it left out, and a seed in another
 * currency over existing accounts says what it actually did.
 */
describe('txsim accounts', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('acct');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    const seed = await runTxsim(['accounts', 'seed', '--count', '7'], ns.env);
    expect(seed.code, seed.stderr).toBe(0);
    expect(seed.stdout).toContain('accounts 1..7: 7 created (opening balance 1,000.00 EUR each)');
  });

  afterAll(async () => {
    await ns?.cleanup();
  });

  it('show <system account>: the balance is the sum of its entries', async () => {
    const r = await runTxsim(['accounts', 'show', String(systemAccountId('opening_equity', 'EUR'))], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('balance -7,000.00 EUR');
    expect(r.stdout).not.toContain('balance 0.00');
    // It owns no transactions: what it lists is what was posted to it, one opening balance per customer.
    for (let id = 1; id <= 7; id++) expect(r.stdout).toMatch(new RegExp(`opening to ${id}\\s+1,000\\.00\\s+applied\\s`));
    const list = await runTxsim(['accounts', 'list', '--system'], ns.env);
    expect(list.stdout).toMatch(/opening_equity EUR\s+EUR\s+-7,000\.00/);
  });

  it('list --limit says how many it showed of how many', async () => {
    const r = await runTxsim(['accounts', 'list', '--limit', '5'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('showing 5 of 7 customer accounts; --limit 7 shows all');
    const all = await runTxsim(['accounts', 'list'], ns.env);
    expect(all.stdout).not.toContain('showing');
  });

  it('seed --currency USD over EUR accounts warns and reports what it did', async () => {
    const r = await runTxsim(['accounts', 'seed', '--count', '9', '--currency', 'USD', '--opening-balance', '500'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('accounts 1..9: 2 created (opening balance 5.00 USD each), 7 already existed (left unchanged)');
    expect(r.stderr).toContain(
      'txsim: warning: 7 existing accounts of 1..9 are EUR, not USD: left as they were (currency, balance and entries unchanged); only the 2 created got USD',
    );
    const rows = await ns.db('accounts').whereBetween('id', [1, 9]).orderBy('id').select('currency', 'balance_minor');
    expect(rows.map((a: { currency: string }) => a.currency)).toEqual([...Array(7).fill('EUR'), 'USD', 'USD']);
  });

  it('seed --opening-balance is read from its digits: beyond 2^53 exact, up to 10^18; anything else is a usage error', async () => {
    const r = await runTxsim(
      ['accounts', 'seed', '--count', '1', '--first-id', '100', '--opening-balance', '9007199254740993', '--json'],
      ns.env,
    );
    expect(r.code, r.stderr).toBe(0);
    const [[row]] = (await ns.db.raw('SELECT CAST(balance_minor AS CHAR) AS b FROM accounts WHERE id = 100')) as [[{ b: string }]];
    expect(row.b).toBe('9007199254740993');
    for (const [value, message] of [
      ['1000000000000000001', '--opening-balance: 1000000000000000001 must be between 0 and 1000000000000000000 (minor units)'],
      ['12.50', '--opening-balance: "12.50" is not a whole number of minor units'],
      ['-1', '--opening-balance: -1 must be between 0 and 1000000000000000000 (minor units)'],
    ]) {
      const bad = await runTxsim(['accounts', 'seed', '--count', '1', '--first-id', '101', '--opening-balance', value!], ns.env);
      expect(bad.code, value).toBe(2);
      expect(bad.stderr).toContain(message);
    }
    expect(await ns.db('accounts').where('id', 101).first()).toBeUndefined();
  });

  it('seed --currency must be an active ISO 4217 currency, in any case', async () => {
    const bad = await runTxsim(['accounts', 'seed', '--count', '1', '--first-id', '102', '--currency', 'zzz'], ns.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--currency: "zzz" is not an active ISO 4217 currency (e.g. EUR, USD, JPY)');
    const yen = await runTxsim(
      ['accounts', 'seed', '--count', '1', '--first-id', '102', '--currency', 'jpy', '--opening-balance', '500'],
      ns.env,
    );
    expect(yen.code, yen.stderr).toBe(0);
    expect(yen.stdout).toContain('(opening balance 500 JPY each)'); // yen has no minor unit: 500 minor units are ¥500
    expect(await ns.db('accounts').where('id', 102).first('currency')).toEqual({ currency: 'JPY' });
  });

  it("list, show and tx show print amounts with their currency's decimals (500 JPY is 500, 1234 KWD is 1.234)", async () => {
    const kwd = await runTxsim(
      ['accounts', 'seed', '--count', '1', '--first-id', '103', '--currency', 'KWD', '--opening-balance', '1234'],
      ns.env,
    );
    expect(kwd.code, kwd.stderr).toBe(0);
    const list = await runTxsim(['accounts', 'list', '--limit', '200'], ns.env);
    expect(list.stdout).toMatch(/^102\s+Customer 102\s+JPY\s+500$/m);
    expect(list.stdout).toMatch(/^103\s+Customer 103\s+KWD\s+1\.234$/m);
    const system = await runTxsim(['accounts', 'list', '--system'], ns.env);
    expect(system.stdout).toMatch(/opening_equity KWD\s+KWD\s+-1\.234/);
    const show = await runTxsim(['accounts', 'show', '103'], ns.env);
    expect(show.stdout).toContain('balance 1.234 KWD');
    // The recent transactions below the header: the opening deposit, in the same decimals.
    expect(show.stdout).toMatch(/opening\s+1\.234\s+applied\s+1\.234\s/);
    const tx = await runTxsim(['tx', 'show', openingTransactionId(102)], ns.env);
    expect(tx.code, tx.stderr).toBe(0);
    expect(tx.stdout).toContain('of 500 JPY on account 102; balance after 500 JPY');
    expect(tx.stdout).toMatch(/^\s*102\s+500 JPY$/m);
    expect(tx.stdout).toMatch(/-500 JPY$/m);
  });
});
