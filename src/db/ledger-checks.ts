import type { SystemAccountCode } from '../domain/ledger.js';
import { sqlLiteral } from './sql-literal.js';
import { violationsFrom, type ViolationQuery } from './violations.js';

/**
 * The ledger's invariants as queries for the rows that break them (verify/ledger-checks.ts names and
 * judges them). Each is a full scan on a large ledger: examples are only asked for when the count
 * is not zero.
 */

/** Transactions whose entries do not sum to zero. */
export const UNBALANCED_TRANSACTIONS: ViolationQuery<{ transaction_id: string; s: string }> = {
  countSql: 'SELECT COUNT(*) AS n FROM (SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING SUM(amount_minor) <> 0) x',
  examplesSql: 'SELECT transaction_id, SUM(amount_minor) AS s FROM ledger_entries GROUP BY transaction_id HAVING SUM(amount_minor) <> 0',
};

/** The whole ledger, when it does not sum to zero (at most one row). */
export const UNBALANCED_LEDGER: ViolationQuery<{ s: string }> = {
  countSql: 'SELECT CASE WHEN COALESCE(SUM(amount_minor), 0) <> 0 THEN 1 ELSE 0 END AS n FROM ledger_entries',
  examplesSql: 'SELECT SUM(amount_minor) AS s FROM ledger_entries HAVING COALESCE(SUM(amount_minor), 0) <> 0',
};

/** Customer accounts whose balance is not the sum of their entries. */
export const BALANCES_OFF_ENTRIES: ViolationQuery<{ id: string; balance_minor: string; s: string }> = {
  countSql: `SELECT COUNT(*) AS n FROM (SELECT a.id FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id WHERE a.kind = 'customer' GROUP BY a.id, a.balance_minor HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)) x`,
  examplesSql: `SELECT a.id, a.balance_minor, COALESCE(SUM(e.amount_minor), 0) AS s FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id WHERE a.kind = 'customer' GROUP BY a.id, a.balance_minor HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)`,
};

/** Customer accounts below zero. */
export const NEGATIVE_BALANCES: ViolationQuery<{ id: string; balance_minor: string }> = {
  countSql: `SELECT COUNT(*) AS n FROM accounts WHERE kind = 'customer' AND balance_minor < 0`,
  examplesSql: `SELECT id, balance_minor FROM accounts WHERE kind = 'customer' AND balance_minor < 0`,
};

/** Types that post no entries when applied: an authorization reserves, a void releases (v1.1). */
const POSTS_NOTHING = `t.type IN ('card_authorization', 'card_void')`;

/** Applied transactions without exactly one pair of entries (none for those that post nothing). */
export const APPLIED_NOT_ONCE: ViolationQuery<{ id: string; c: string }> = {
  countSql: `SELECT COUNT(*) AS n FROM (SELECT t.id FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'applied' GROUP BY t.id, t.type HAVING COUNT(e.id) <> CASE WHEN ${POSTS_NOTHING} THEN 0 ELSE 2 END) x`,
  examplesSql: `SELECT t.id, COUNT(e.id) AS c FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'applied' GROUP BY t.id, t.type HAVING COUNT(e.id) <> CASE WHEN ${POSTS_NOTHING} THEN 0 ELSE 2 END`,
};

/** Entries of rejected transactions. */
export const REJECTED_WITH_ENTRIES: ViolationQuery<{ id: string; reason: string | null }> = {
  countSql: `SELECT COUNT(*) AS n FROM transactions t JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'rejected'`,
  examplesSql: `SELECT t.id, t.reason FROM transactions t JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'rejected'`,
};

/** Entries whose transaction has no recorded outcome. */
export const ENTRIES_WITHOUT_OUTCOME: ViolationQuery<{ transaction_id: string }> = {
  countSql: `SELECT COUNT(*) AS n FROM ledger_entries e LEFT JOIN transactions t ON t.id = e.transaction_id WHERE t.id IS NULL`,
  examplesSql: `SELECT e.transaction_id FROM ledger_entries e LEFT JOIN transactions t ON t.id = e.transaction_id WHERE t.id IS NULL`,
};

/**
 * Applied transfers that do anything but move their amount from the source to the destination: not
 * exactly two entries, −amount on the source and +amount on the destination. A transfer that passes
 * touches no system account, so transfers leave the total of customer balances unchanged.
 */
export const TRANSFERS_OFF_CUSTOMERS: ViolationQuery<{ id: string; c: string; debits: string; credits: string }> = (() => {
  const from = `FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
     WHERE t.type = 'transfer' AND t.status = 'applied'
     GROUP BY t.id
     HAVING COUNT(e.id) <> 2
         OR SUM(CASE WHEN e.account_id = t.account_id AND e.amount_minor = -t.amount_minor THEN 1 ELSE 0 END) <> 1
         OR SUM(CASE WHEN e.account_id = t.to_account_id AND e.amount_minor = t.amount_minor THEN 1 ELSE 0 END) <> 1`;
  return {
    countSql: `SELECT COUNT(*) AS n FROM (SELECT t.id ${from}) x`,
    examplesSql: `SELECT t.id, COUNT(e.id) AS c,
        SUM(CASE WHEN e.account_id = t.account_id AND e.amount_minor = -t.amount_minor THEN 1 ELSE 0 END) AS debits,
        SUM(CASE WHEN e.account_id = t.to_account_id AND e.amount_minor = t.amount_minor THEN 1 ELSE 0 END) AS credits ${from}`,
  };
})();

/**
 * What an applied transaction of each type posts: `sign` is the sign of the entry on its own account
 * (`account_id`), and the other entry, of the opposite amount, goes to `other` — the system account of
 * that code in the transaction's currency, or a transfer's destination (`to_account_id`). A type not
 * listed posts nothing: an authorization and a void change `held` only, and a hold's expiry records
 * no transaction at all. Written out here, apart from the code that posts (domain/ledger.ts,
 * domain/holds.ts, `accounts seed`), so that a bug there cannot vouch for itself; a unit test holds
 * the two together.
 */
export const POSTINGS_BY_TYPE: Readonly<Record<string, { readonly sign: 1 | -1; readonly other: SystemAccountCode | 'destination' }>> = {
  opening: { sign: 1, other: 'opening_equity' },
  deposit: { sign: 1, other: 'cash_in' },
  withdrawal: { sign: -1, other: 'cash_out' },
  card_payment: { sign: -1, other: 'card_settlement' },
  card_capture: { sign: -1, other: 'card_settlement' },
  card_refund: { sign: 1, other: 'card_settlement' },
  transfer: { sign: -1, other: 'destination' },
};

/** `CASE t.type WHEN … THEN … END` over POSTINGS_BY_TYPE (NULL for a type that posts nothing). */
function caseOfType(value: (posting: (typeof POSTINGS_BY_TYPE)[string]) => string | null): string {
  const arms = Object.entries(POSTINGS_BY_TYPE).flatMap(([type, posting]) => {
    const v = value(posting);
    return v === null ? [] : [`WHEN ${sqlLiteral(type)} THEN ${v}`];
  });
  return `CASE t.type ${arms.join(' ')} END`;
}

/** The sign of the entry on the transaction's own account; NULL: the type posts nothing. */
const OWN_SIGN = caseOfType((p) => String(p.sign));
/** The code of the system account that takes the other side (NULL for a transfer: its destination does). */
const SYSTEM_CODE = caseOfType((p) => (p.other === 'destination' ? null : sqlLiteral(p.other)));
/** The account of the other entry: the transfer's destination, or the system account joined as `s`. */
const OTHER_ACCOUNT = caseOfType((p) => (p.other === 'destination' ? 't.to_account_id' : 's.id'));
/** Entries matching each of the two postings the type makes: 1, or 0 for a type that posts nothing. */
const PER_POSTING = `CASE WHEN ${OWN_SIGN} IS NULL THEN 0 ELSE 1 END`;

/**
 * Applied transactions whose entries are not exactly what their type posts: for a type that posts,
 * two entries, `sign × amount` on its account and `−sign × amount` on the other account (two entries
 * that match the two postings are exactly them: the two accounts are never the same); for a type
 * that posts nothing, no entry. This sees what the other checks cannot: a withdrawal booked +100 / −100
 * instead of −100 / +100, with balances to match, still sums to zero and has two entries.
 *
 * One pass, like APPLIED_NOT_ONCE: `transactions` read in primary-key order, which is the GROUP BY's
 * order (no temporary table, no sort), each row's system account by `uq_accounts_system` (code,
 * currency) and its entries by `ix_ledger_transaction`. Grouped by `t.id` alone — adding `t.type`
 * made MariaDB sort a million rows — so every other column is read inside an aggregate (constant per
 * group), which MariaDB requires in HAVING and which also stands under MySQL 8's ONLY_FULL_GROUP_BY.
 */
export const POSTINGS_OFF_TYPE = violationsFrom<{
  id: string;
  type: string | null;
  account_id: string | null;
  amount_minor: string | null;
  other_account_id: string | null;
  entries: string | null;
}>(
  `FROM transactions t
     LEFT JOIN accounts s ON s.kind = 'system' AND s.code = ${SYSTEM_CODE} AND s.currency = t.currency
     LEFT JOIN ledger_entries e ON e.transaction_id = t.id
     WHERE t.status = 'applied'
     GROUP BY t.id
     HAVING COUNT(e.id) <> 2 * MIN(${PER_POSTING})
         OR SUM(CASE WHEN e.account_id = t.account_id AND e.amount_minor = ${OWN_SIGN} * t.amount_minor THEN 1 ELSE 0 END) <> MIN(${PER_POSTING})
         OR SUM(CASE WHEN e.account_id = ${OTHER_ACCOUNT} AND e.amount_minor = -1 * ${OWN_SIGN} * t.amount_minor THEN 1 ELSE 0 END) <> MIN(${PER_POSTING})`,
  `t.id, MIN(t.type) AS type, MIN(t.account_id) AS account_id, MIN(t.amount_minor) AS amount_minor, MIN(${OTHER_ACCOUNT}) AS other_account_id,
   GROUP_CONCAT(CONCAT(e.account_id, ' ', IF(e.amount_minor > 0, '+', ''), e.amount_minor) ORDER BY e.id SEPARATOR ', ') AS entries`,
);

/** What each customer's open holds reserve (v1.1): the rest of every open or partially captured hold. */
const OPEN_HOLDS = `SELECT account_id, SUM(authorized_minor - captured_minor) AS s FROM holds WHERE state IN ('open', 'partially_captured') GROUP BY account_id`;

/** Customer accounts whose `held_minor` is not what their open holds reserve. */
export const HELD_OFF_HOLDS = violationsFrom<{ id: string; held_minor: string; s: string }>(
  `FROM accounts a LEFT JOIN (${OPEN_HOLDS}) h ON h.account_id = a.id WHERE a.kind = 'customer' AND a.held_minor <> COALESCE(h.s, 0)`,
  'a.id, a.held_minor, COALESCE(h.s, 0) AS s',
);

/** Customer accounts whose available money (balance − held) is negative. */
export const NEGATIVE_AVAILABLE = violationsFrom<{ id: string; balance_minor: string; held_minor: string }>(
  `FROM accounts a WHERE a.kind = 'customer' AND a.balance_minor - a.held_minor < 0`,
  'a.id, a.balance_minor, a.held_minor',
);

/** Holds captured beyond what they authorized, or refunded beyond what they captured. */
export const HOLDS_OVERDRAWN = violationsFrom<{ id: string; authorized_minor: string; captured_minor: string; refunded_minor: string }>(
  'FROM holds WHERE captured_minor > authorized_minor OR refunded_minor > captured_minor OR captured_minor < 0 OR refunded_minor < 0',
  'id, authorized_minor, captured_minor, refunded_minor',
);

/**
 * Holds whose captured and refunded amounts are not the sums of their applied captures and refunds
 * (the ledger's record of them): a capture counted twice or lost would show here.
 */
export const HOLDS_OFF_LEDGER = violationsFrom<{
  id: string;
  captured_minor: string;
  captures: string;
  refunded_minor: string;
  refunds: string;
}>(
  `FROM holds h LEFT JOIN (SELECT authorization_id,
            SUM(CASE WHEN type = 'card_capture' THEN amount_minor ELSE 0 END) AS captures,
            SUM(CASE WHEN type = 'card_refund' THEN amount_minor ELSE 0 END) AS refunds
       FROM transactions WHERE status = 'applied' AND authorization_id IS NOT NULL GROUP BY authorization_id) t ON t.authorization_id = h.id
     WHERE h.captured_minor <> COALESCE(t.captures, 0) OR h.refunded_minor <> COALESCE(t.refunds, 0)`,
  'h.id, h.captured_minor, COALESCE(t.captures, 0) AS captures, h.refunded_minor, COALESCE(t.refunds, 0) AS refunds',
);

/**
 * Applied authorizations that are not captured, voided, expired or still open before their expiry:
 * no hold at all, or a hold still open more than `graceS` seconds past its `expires_at` (the workers'
 * sweep should have expired it). UTC_TIMESTAMP: `expires_at` is stored in UTC, whatever the session's zone.
 */
export function authorizationsUnsettled(graceS: number): ViolationQuery<{ id: string; state: string | null; expires_at: Date | null }> {
  if (!Number.isSafeInteger(graceS) || graceS < 0) throw new RangeError(`bad grace ${graceS}`);
  return violationsFrom(
    `FROM transactions t LEFT JOIN holds h ON h.id = t.id
      WHERE t.type = 'card_authorization' AND t.status = 'applied'
        AND (h.id IS NULL OR (h.state IN ('open', 'partially_captured') AND h.expires_at < UTC_TIMESTAMP(3) - INTERVAL ${graceS} SECOND))`,
    't.id, h.state, h.expires_at',
  );
}

/**
 * Refunds by capture (`captureId`) beyond what their capture took, or naming something that is not an
 * applied capture of the same hold.
 */
export const REFUNDS_OVER_CAPTURE = violationsFrom<{ id: string; captured: string | null; refunded: string }>(
  `FROM transactions r LEFT JOIN transactions c ON c.id = r.capture_id
      WHERE r.type = 'card_refund' AND r.status = 'applied' AND r.capture_id IS NOT NULL
      GROUP BY r.capture_id, c.amount_minor, c.type, c.status, c.authorization_id
      HAVING SUM(r.amount_minor) > COALESCE(c.amount_minor, 0) OR NOT (c.type <=> 'card_capture' AND c.status <=> 'applied')
          OR SUM(CASE WHEN r.authorization_id <=> c.authorization_id THEN 0 ELSE 1 END) > 0`,
  'r.capture_id AS id, c.amount_minor AS captured, SUM(r.amount_minor) AS refunded',
);
