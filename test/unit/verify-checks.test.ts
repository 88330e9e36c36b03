import { describe, expect, it } from 'vitest';
import type { ViolationQuery } from '../../src/db/violations.js';
import { EXAMPLES, judge, runChecks, type AnyCheck, type CheckDefinition, type ViolationReader } from '../../src/verify/checks.js';
import { expectedPostingsText, LEDGER_CHECKS } from '../../src/verify/ledger-checks.js';
import { POSTINGS_BY_TYPE } from '../../src/db/ledger-checks.js';
import { authorize, openingPostings, systemAccountId, type Posting } from '../../src/domain/ledger.js';
import { authorizeCard, type Hold } from '../../src/domain/holds.js';
import { TRANSACTION_TYPES, type TransactionMessage } from '../../src/domain/transaction.js';
import { pendingOf, reconciliationChecks } from '../../src/verify/reconcile.js';
import { ACCOUNTING_EVENTS_PER_MESSAGE_MAX } from '../../src/domain/accounting-event.js';

const query = (name: string): ViolationQuery<{ id: string }> => ({ countSql: `count ${name}`, examplesSql: `rows ${name}` });
const check = (name: string): CheckDefinition<{ id: string }> => ({
  name,
  description: `${name} holds`,
  query: query(name),
  example: (r) => `bad ${r.id}`,
});

/** A reader that answers from a table of counts and rows, and records what it was asked. */
function fakeReader(answers: Record<string, { count: number; rows: { id: string }[] }>): ViolationReader & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    count: (q) => {
      asked.push(q.countSql);
      return Promise.resolve(answers[q.countSql.slice('count '.length)]?.count ?? 0);
    },
    rows: <Row>(q: ViolationQuery<Row>, limit: number) => {
      asked.push(`${q.examplesSql} limit ${limit}`);
      return Promise.resolve((answers[q.examplesSql.slice('rows '.length)]?.rows ?? []) as Row[]);
    },
  };
}

describe('judging a check', () => {
  it('passes with no violations and shows no examples, whatever rows were read', () => {
    expect(judge(check('a'), 0, [{ id: '1' }])).toEqual({ name: 'a', description: 'a holds', violations: 0, examples: [] });
  });

  it('fails with the count and one example line per row, at most EXAMPLES of them', () => {
    const rows = Array.from({ length: EXAMPLES + 3 }, (_, i) => ({ id: String(i) }));
    const result = judge(check('a'), 42, rows);
    expect(result.violations).toBe(42);
    expect(result.examples).toEqual(rows.slice(0, EXAMPLES).map((r) => `bad ${r.id}`));
  });
});

describe('the check runner', () => {
  it('runs every check in order and asks for examples only where something is broken, with one limit', async () => {
    const reader = fakeReader({ b: { count: 2, rows: [{ id: 'x' }, { id: 'y' }] } });
    const results = await runChecks(reader, [check('a'), check('b'), check('c')] as AnyCheck[]);
    expect(results.map((r) => [r.name, r.violations, r.examples])).toEqual([
      ['a', 0, []],
      ['b', 2, ['bad x', 'bad y']],
      ['c', 0, []],
    ]);
    expect(reader.asked).toEqual(['count a', 'count b', `rows b limit ${EXAMPLES}`, 'count c']);
  });
});

describe('the ledger checks', () => {
  it('keep the names scripts read from `verify --json`, in the reported order', () => {
    expect(LEDGER_CHECKS.map((c) => c.name)).toEqual([
      'entries_balance_per_transaction',
      'ledger_sums_to_zero',
      'balance_equals_entries',
      'no_negative_balance',
      'applied_once',
      'rejected_without_effect',
      'entries_have_outcome',
      'transfers_keep_customer_total',
      'entries_in_transaction_currency',
      'held_equals_open_holds',
      'no_negative_available',
      'holds_within_limits',
      'holds_match_ledger',
      'holds_match_authorization',
      'card_operations_on_own_hold',
      'holds_state_matches_history',
      'authorizations_settled',
      'refunds_within_capture',
      'postings_match_type',
    ]);
  });

  it('read their example rows as before (money from SUM() as a whole number)', () => {
    const byName = new Map(LEDGER_CHECKS.map((c) => [c.name, c]));
    expect(byName.get('ledger_sums_to_zero')!.example({ s: '14.000' })).toBe('ledger sums to 14');
    expect(byName.get('entries_balance_per_transaction')!.example({ transaction_id: 't1', s: '7' })).toBe('t1 sums to 7');
    expect(byName.get('rejected_without_effect')!.example({ id: 't2', reason: 'invalid_message' })).toBe(
      't2 (invalid_message) has entries',
    );
  });
});

describe('postings_match_type', () => {
  const now = new Date('2026-12-06T10:00:00.000Z');
  const account = { id: 7, currency: 'EUR', balanceMinor: 10_000n, heldMinor: 0n };
  const destination = { id: 8, currency: 'EUR', balanceMinor: 0n, heldMinor: 0n };
  const hold: Hold = {
    id: '00000000-0000-4000-8000-0000000000aa',
    accountId: 7,
    currency: 'EUR',
    merchant: 'Hotel',
    state: 'partially_captured',
    authorizedMinor: 3_000n,
    capturedMinor: 1_000n,
    refundedMinor: 0n,
    expiresAt: new Date('2026-12-13T10:00:00.000Z'),
    createdAt: now,
  };

  /** What the code that posts (authorize, authorizeCard, accounts seed) posts for 500 of a type on account 7. */
  function postedBy(type: string): Posting[] {
    if (type === 'opening') return openingPostings(7, 'EUR', 500n);
    const message = {
      id: '00000000-0000-4000-8000-000000000001',
      type,
      accountId: 7,
      amountMinor: 500,
      currency: 'EUR',
      createdAt: now.toISOString(),
      merchant: 'Hotel',
      ...(type === 'transfer' ? { toAccountId: 8 } : {}),
      ...(type.startsWith('card_') && type !== 'card_payment' && type !== 'card_authorization' ? { authorizationId: hold.id } : {}),
    } as TransactionMessage;
    const decision =
      type.startsWith('card_') && type !== 'card_payment'
        ? authorizeCard(message, account, hold, now)
        : authorize(message, account, destination);
    if (!decision.ok) throw new Error(`${type}: ${decision.detail}`);
    return decision.postings;
  }

  /** What the check expects of the same transaction, from POSTINGS_BY_TYPE alone. */
  function expectedBy(type: string): Posting[] {
    const p = POSTINGS_BY_TYPE[type];
    if (!p) return [];
    const own = BigInt(p.sign) * 500n;
    return [
      { accountId: 7, amountMinor: own },
      { accountId: p.other === 'destination' ? 8 : systemAccountId(p.other, 'EUR'), amountMinor: -own },
    ];
  }

  it.each([...TRANSACTION_TYPES, 'opening'])('expects of a %s exactly what the workers (or accounts seed) post', (type) => {
    const byAccount = (postings: Posting[]) => [...postings].sort((a, b) => a.accountId - b.accountId);
    expect(byAccount(expectedBy(type))).toEqual(byAccount(postedBy(type)));
  });

  it('shows what was posted beside what was expected', () => {
    const check = LEDGER_CHECKS.find((c) => c.name === 'postings_match_type')!;
    const cashOut = systemAccountId('cash_out', 'EUR');
    const row = {
      id: 't1',
      type: 'withdrawal',
      account_id: '41',
      amount_minor: '100',
      other_account_id: String(cashOut),
      entries: `41 +100, ${cashOut} -100`,
    };
    expect(check.example(row)).toBe(
      `t1 (withdrawal of 100 on account 41): posted 41 +100, ${cashOut} -100; expected 41 -100, ${cashOut} +100`,
    );
    expect(check.example({ ...row, type: 'card_void', other_account_id: null })).toBe(
      `t1 (card_void of 100 on account 41): posted 41 +100, ${cashOut} -100; expected nothing`,
    );
    expect(check.example({ ...row, entries: null })).toContain('posted nothing; expected 41 -100');
    // A type name that is also an Object property is still a type that posts nothing.
    expect(expectedPostingsText({ ...row, type: 'constructor' })).toBe('nothing');
  });

  it('is written as one grouped pass over transactions, its type table quoted into the SQL', () => {
    const check = LEDGER_CHECKS.find((c) => c.name === 'postings_match_type')!;
    expect(check.query.countSql).toMatch(/GROUP BY t\.id\s+HAVING/);
    expect(check.query.countSql).toContain(`WHEN 'withdrawal' THEN 'cash_out'`);
    expect(check.query.countSql).toContain(`WHEN 'transfer' THEN t.to_account_id`);
  });
});

describe('the reconciliation checks', () => {
  it('are strict about sequence gaps only once everything has arrived', () => {
    const open = reconciliationChecks(false).find((c) => c.name === 'statement_sequence')!;
    const settled = reconciliationChecks(true).find((c) => c.name === 'statement_sequence')!;
    expect(open.description).toBe("no account's statement repeats or skips ahead of a number");
    expect(settled.description).toBe("each account's statement numbers run 1..n without gaps or repeats");
    expect(open.query.countSql).not.toContain('COUNT(*) <> a.event_seq');
    expect(settled.query.countSql).toContain('COUNT(*) <> a.event_seq');
  });

  it('keep their names and order', () => {
    expect(reconciliationChecks(true).map((c) => c.name)).toEqual([
      'statement_once_per_outcome',
      'statement_has_outcome',
      'statement_matches_outcome',
      'statement_sequence',
      'statement_balance_equals_ledger',
    ]);
  });
});

describe('lines still on their way', () => {
  it('without the broker, every missing line may still come (none is called lost) and nothing is settled', () => {
    expect(pendingOf({ queue: null, outboxUnsent: 0, missing: 7 })).toEqual({ pending: 7, settled: false });
  });

  it('are bounded by what is unsent, queued and held by consumers', () => {
    expect(pendingOf({ queue: { ready: 0, consumers: 0 }, outboxUnsent: 4, missing: 10 })).toEqual({ pending: 4, settled: false });
    expect(pendingOf({ queue: { ready: 0, consumers: 0 }, outboxUnsent: 0, missing: 0 })).toEqual({ pending: 0, settled: true });
  });

  it('count a queued message as up to ACCOUNTING_EVENTS_PER_MESSAGE_MAX events (the relay puts several in one)', () => {
    const missing = 3 * ACCOUNTING_EVENTS_PER_MESSAGE_MAX;
    expect(pendingOf({ queue: { ready: 2, consumers: 0 }, outboxUnsent: 1, missing })).toEqual({
      pending: 1 + 2 * ACCOUNTING_EVENTS_PER_MESSAGE_MAX,
      settled: false,
    });
  });

  it('count a connected consumer as holding up to its prefetch', () => {
    expect(pendingOf({ queue: { ready: 0, consumers: 1 }, outboxUnsent: 0, missing: 3 }).pending).toBe(3);
  });
});
