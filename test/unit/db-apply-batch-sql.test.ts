import { describe, expect, it } from 'vitest';
import { batchReadRows, batchReadStatements, BatchWrites, type OutcomeRecord } from '../../src/db/apply-batch-sql.js';
import { storableDate } from '../../src/domain/dates.js';

const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
const outcome: OutcomeRecord = {
  id: 't1',
  runId: null,
  type: 'deposit',
  accountId: 7,
  amountMinor: 1234n,
  currency: 'EUR',
  merchant: "O'Brien",
  toAccountId: null,
  toBalanceAfterMinor: null,
  authorizationId: null,
  bodyHash: 'h',
  status: 'applied',
  reason: null,
  detail: null,
  balanceAfterMinor: 99_000_000_000_000_000n,
  workerId: 'w1',
  attempts: 2,
  createdAtIso: '2026-01-01T00:00:00.000Z',
  processedAt: at,
};

describe('the batch reads', () => {
  it('lock the accounts in the given order first, then read the recorded outcomes', () => {
    expect(batchReadStatements([1, 5], ['a', 'b'])).toEqual([
      "SELECT id, currency, balance_minor, held_minor, event_seq FROM accounts WHERE id IN (1, 5) AND kind = 'customer' ORDER BY id FOR UPDATE",
      "SELECT id, body_hash, status, reason FROM transactions WHERE id IN ('a', 'b')",
    ]);
  });

  it('leave out a statement whose list is empty, and find each result by its statement', () => {
    expect(batchReadStatements([], ['a'])).toEqual(["SELECT id, body_hash, status, reason FROM transactions WHERE id IN ('a')"]);
    expect(batchReadStatements([], [])).toEqual([]);
    const recorded = [{ id: 'a', body_hash: 'h', status: 'applied', reason: null }];
    expect(batchReadRows([recorded], [], ['a'])).toEqual({ locked: [], holds: [], captures: [], recorded });
    const locked = [{ id: '1', currency: 'EUR', balance_minor: '5', held_minor: '0', event_seq: '0' }];
    expect(batchReadRows([locked], [1], [])).toEqual({ locked, holds: [], captures: [], recorded: [] });
    expect(batchReadRows([locked, recorded], [1], ['a'])).toEqual({ locked, holds: [], captures: [], recorded });
  });

  it('read the holds of captures, voids and refunds after the account locks, only when there are any', () => {
    expect(batchReadStatements([1], ['a', 'h'], ['h'])).toEqual([
      "SELECT id, currency, balance_minor, held_minor, event_seq FROM accounts WHERE id IN (1) AND kind = 'customer' ORDER BY id FOR UPDATE",
      "SELECT id, account_id, currency, merchant, state, authorized_minor, captured_minor, refunded_minor, expires_at, created_at FROM holds WHERE id IN ('h')",
      "SELECT id, body_hash, status, reason FROM transactions WHERE id IN ('a', 'h')",
    ]);
    const locked = [{ id: '1' }];
    const holds = [{ id: 'h' }];
    const recorded = [{ id: 'a' }];
    expect(batchReadRows([locked, holds, recorded], [1], ['a', 'h'], ['h'])).toEqual({ locked, holds, captures: [], recorded });
  });

  it("read a refund's capture, and the capture's hold, when a refund names a captureId", () => {
    expect(batchReadStatements([1], ['r', 'c'], [], ['c'])).toEqual([
      "SELECT id, currency, balance_minor, held_minor, event_seq FROM accounts WHERE id IN (1) AND kind = 'customer' ORDER BY id FOR UPDATE",
      "SELECT id, account_id, currency, merchant, state, authorized_minor, captured_minor, refunded_minor, expires_at, created_at FROM holds WHERE id IN (SELECT authorization_id FROM transactions WHERE id IN ('c'))",
      "SELECT c.id, c.authorization_id, c.amount_minor, COALESCE(r.refunded_minor, 0) AS refunded_minor FROM transactions c LEFT JOIN capture_refunds r ON r.capture_id = c.id WHERE c.id IN ('c') AND c.type = 'card_capture' AND c.status = 'applied'",
      "SELECT id, body_hash, status, reason FROM transactions WHERE id IN ('r', 'c')",
    ]);
    const [locked, holds, captures, recorded] = [[{ id: '1' }], [{ id: 'h' }], [{ id: 'c' }], [{ id: 'r' }]];
    expect(batchReadRows([locked, holds, captures, recorded], [1], ['r', 'c'], [], ['c'])).toEqual({ locked, holds, captures, recorded });
  });
});

describe('the batch writes', () => {
  it('are nothing for a batch that recorded nothing', () => {
    expect(new BatchWrites().statements([])).toEqual([]);
  });

  it('are one multi-row INSERT per table and one UPDATE of every touched account, values escaped', () => {
    const writes = new BatchWrites();
    writes.addOutcome(outcome);
    writes.addOutcome({
      ...outcome,
      id: 't2',
      status: 'rejected',
      reason: 'insufficient_funds',
      detail: 'x'.repeat(300),
      balanceAfterMinor: null,
      createdAtIso: '0001-01-01T00:00:00Z',
      type: 'transfer',
      merchant: null,
      toAccountId: 8,
    });
    writes.addEntry('t1', 7, 1234n, at);
    writes.addEntry('t1', -1, -1234n, at);
    writes.addOutboxEvent({
      eventId: 'e1',
      transactionId: 't1',
      accountId: 7,
      accountSeq: 3n,
      type: 'deposit',
      amountMinor: 1234n,
      currency: 'EUR',
      outcome: 'applied',
      reason: null,
      balanceAfterMinor: 5n,
      createdAt: at,
    });
    const statements = writes.statements([
      { id: 3, balanceMinor: 10n, heldMinor: 0n, eventSeq: 2n },
      { id: 7, balanceMinor: 20n, heldMinor: 5n, eventSeq: 3n },
    ]);
    expect(statements).toHaveLength(4);
    expect(statements[0]).toBe(
      'INSERT INTO transactions (id, run_id, type, account_id, amount_minor, currency, merchant, to_account_id, to_balance_after_minor, authorization_id, capture_id, body_hash, status, reason, detail, balance_after_minor, worker_id, attempts, created_at, processed_at, account_seq, seq_stream) VALUES ' +
        "('t1', NULL, 'deposit', 7, 1234, 'EUR', 'O\\'Brien', NULL, NULL, NULL, NULL, 'h', 'applied', NULL, NULL, 99000000000000000, 'w1', 2, '2026-01-01 00:00:00.000', '2026-01-02 03:04:05.678', NULL, NULL), " +
        `('t2', NULL, 'transfer', 7, 1234, 'EUR', NULL, 8, NULL, NULL, NULL, 'h', 'rejected', 'insufficient_funds', '${'x'.repeat(255)}', NULL, 'w1', 2, NULL, '2026-01-02 03:04:05.678', NULL, NULL)`,
    );
    expect(statements[1]).toBe(
      "INSERT INTO ledger_entries (transaction_id, account_id, amount_minor, created_at) VALUES ('t1', 7, 1234, '2026-01-02 03:04:05.678'), ('t1', -1, -1234, '2026-01-02 03:04:05.678')",
    );
    expect(statements[2]).toBe(
      "INSERT INTO outbox_events (event_id, transaction_id, account_id, account_seq, type, amount_minor, currency, outcome, reason, balance_after_minor, created_at) VALUES ('e1', 't1', 7, 3, 'deposit', 1234, 'EUR', 'applied', NULL, 5, '2026-01-02 03:04:05.678')",
    );
    expect(statements[3]).toBe(
      'UPDATE accounts SET balance_minor = CASE id WHEN 3 THEN 10 WHEN 7 THEN 20 END, held_minor = CASE id WHEN 3 THEN 0 WHEN 7 THEN 5 END, event_seq = CASE id WHEN 3 THEN 2 WHEN 7 THEN 3 END WHERE id IN (3, 7)',
    );
  });
});

describe('dates DATETIME(3) can hold', () => {
  it('keeps years 1000-9999 and turns anything else into NULL', () => {
    expect(storableDate('2026-01-01T00:00:00Z')).toEqual(new Date(Date.UTC(2026, 0, 1)));
    expect(storableDate('0999-12-31T23:59:59Z')).toBeNull();
    expect(storableDate('+010000-01-01T00:00:00Z')).toBeNull();
    expect(storableDate('not a date')).toBeNull();
  });
});
