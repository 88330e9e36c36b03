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

/**
 * Currencies whose entries do not sum to zero (at most one row per currency). Per currency, not over
 * the whole ledger: 500 EUR taken from one account and 500 USD given to another sum to zero together
 * but create dollars and destroy euros. Entries of an account that does not exist form a group of
 * their own (currency NULL). One pass over `ledger_entries`, each entry's account by primary key; the
 * GROUP BY keeps a row per currency.
 */
export const UNBALANCED_LEDGER: ViolationQuery<{ currency: string | null; s: string }> = (() => {
  const from = `FROM ledger_entries e LEFT JOIN accounts a ON a.id = e.account_id GROUP BY a.currency HAVING SUM(e.amount_minor) <> 0`;
  return {
    countSql: `SELECT COUNT(*) AS n FROM (SELECT a.currency ${from}) x`,
    examplesSql: `SELECT a.currency, SUM(e.amount_minor) AS s ${from}`,
  };
})();

/**
 * Entries on an account of another currency than their transaction's (or on an account that does not
 * exist). Every posting of a transaction is in its currency: its own account's, the system account's
 * of that currency, a transfer's destination's. Entries without a transaction are
 * ENTRIES_WITHOUT_OUTCOME's. One pass over `ledger_entries`, its transaction and its account each by
 * primary key.
 */
export const ENTRIES_OFF_CURRENCY = violationsFrom<{
  transaction_id: string;
  type: string | null;
  currency: string | null;
  account_id: string;
  account_currency: string | null;
}>(
  `FROM ledger_entries e JOIN transactions t ON t.id = e.transaction_id LEFT JOIN accounts a ON a.id = e.account_id
    WHERE NOT (a.currency <=> t.currency)`,
  'e.transaction_id, t.type, t.currency, e.account_id, a.currency AS account_currency',
);

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
 * Applied transfers that do anything but move their amount from one customer account to another of
 * the transaction's currency: not exactly two entries, −amount on the source and +amount on the
 * destination, or either side not a customer account of that currency (authorize() rejects both
 * `currency_mismatch`). A transfer that passes touches no system account and no other currency, so
 * transfers leave the total of customer balances in each currency unchanged. Its two accounts are
 * read by primary key.
 */
export const TRANSFERS_OFF_CUSTOMERS: ViolationQuery<{
  id: string;
  c: string;
  debits: string;
  credits: string;
  currency: string | null;
  from_account: string | null;
  to_account: string | null;
}> = (() => {
  const debit = 'CASE WHEN e.account_id = t.account_id AND e.amount_minor = -t.amount_minor THEN 1 ELSE 0 END';
  const credit = 'CASE WHEN e.account_id = t.to_account_id AND e.amount_minor = t.amount_minor THEN 1 ELSE 0 END';
  // Constant per transfer; inside MIN() because the GROUP BY is on t.id alone (see POSTINGS_OFF_TYPE).
  const customersOfCurrency = `CASE WHEN src.kind <=> 'customer' AND src.currency <=> t.currency AND dst.kind <=> 'customer' AND dst.currency <=> t.currency THEN 1 ELSE 0 END`;
  /** An account as the example shows it: `customer EUR`, `system USD`, or `missing`. */
  const side = (a: string) => `COALESCE(CONCAT(MIN(${a}.kind), ' ', MIN(${a}.currency)), 'missing')`;
  const from = `FROM transactions t
     LEFT JOIN accounts src ON src.id = t.account_id
     LEFT JOIN accounts dst ON dst.id = t.to_account_id
     LEFT JOIN ledger_entries e ON e.transaction_id = t.id
     WHERE t.type = 'transfer' AND t.status = 'applied'
     GROUP BY t.id
     HAVING COUNT(e.id) <> 2 OR SUM(${debit}) <> 1 OR SUM(${credit}) <> 1 OR MIN(${customersOfCurrency}) = 0`;
  return {
    countSql: `SELECT COUNT(*) AS n FROM (SELECT t.id ${from}) x`,
    examplesSql: `SELECT t.id, COUNT(e.id) AS c, SUM(${debit}) AS debits, SUM(${credit}) AS credits,
        MIN(t.currency) AS currency, ${side('src')} AS from_account, ${side('dst')} AS to_account ${from}`,
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
 * Holds that are not what their authorization reserved: every hold is made by an applied
 * `card_authorization` of the same id, on the same account, of the same amount and currency, on a
 * customer account of that currency. A hold grown, moved or made up after the fact shows here (the
 * other direction, an applied authorization without a hold, is authorizationsUnsettled's). Reads
 * `holds` once, its transaction and its account each by primary key.
 */
export const HOLDS_OFF_AUTHORIZATION = violationsFrom<{
  id: string;
  account_id: string;
  authorized_minor: string;
  currency: string;
  account: string | null;
  authorization: string | null;
}>(
  `FROM holds h LEFT JOIN transactions t ON t.id = h.id LEFT JOIN accounts a ON a.id = h.account_id
    WHERE NOT (t.type <=> 'card_authorization' AND t.status <=> 'applied' AND t.account_id <=> h.account_id
               AND t.amount_minor <=> h.authorized_minor AND t.currency <=> h.currency
               AND a.kind <=> 'customer' AND a.currency <=> h.currency)`,
  `h.id, h.account_id, h.authorized_minor, h.currency, CONCAT(a.kind, ' ', a.currency) AS account,
   CONCAT(t.status, ' ', COALESCE(t.type, 'untyped'), ' of ', COALESCE(t.amount_minor, '?'), ' ', COALESCE(t.currency, '?'),
          ' on account ', COALESCE(t.account_id, '?')) AS authorization`,
);

/** The types that act on an existing hold: named by `authorization_id` (a refund by capture: its capture's hold). */
const ON_A_HOLD = `('card_capture', 'card_void', 'card_refund')`;

/**
 * Applied captures, voids and refunds whose `authorization_id` names no hold, or a hold on another
 * account or in another currency: authorizeCard() rejects them (`unknown_authorization`,
 * `currency_mismatch`), so none of them is ever applied. HOLDS_OFF_LEDGER starts from the holds and
 * cannot see these. One pass over `transactions`, each hold by primary key.
 */
export const CARD_OPERATIONS_OFF_HOLD = violationsFrom<{
  id: string;
  type: string;
  account_id: string | null;
  authorization_id: string | null;
  hold_account_id: string | null;
}>(
  `FROM transactions t LEFT JOIN holds h ON h.id = t.authorization_id
    WHERE t.status = 'applied' AND t.type IN ${ON_A_HOLD}
      AND NOT (h.account_id <=> t.account_id AND h.currency <=> t.currency)`,
  't.id, t.type, t.account_id, t.authorization_id, h.account_id AS hold_account_id',
);

/**
 * A hold's state against the applied captures and voids of its history, as authorizeCard() and the
 * expiry sweep (db/hold-expiry.ts) write them. Each rule is a condition on `h` (the hold) and `f` (its
 * applied captures and voids, NULL when it has none) and the words that name it in an example.
 * `apply_order` (the outcome rows' AUTO_INCREMENT) orders a hold's history, within a batch as well;
 * `processed_at` is the worker's clock the expiry was judged by, `updated_at` the sweep's when it
 * expired the hold. Whether a capture was `final` is not recorded, so a hold `captured` short of its
 * authorization is only required to have a capture at all.
 */
const HOLD_HISTORY_RULES: readonly { readonly sql: string; readonly text: string }[] = [
  { sql: `h.state = 'voided' AND COALESCE(f.voids, 0) = 0`, text: 'voided without an applied void' },
  { sql: `h.state <> 'voided' AND f.voids > 0`, text: 'an applied void, yet not voided' },
  { sql: `f.voids > 1`, text: 'voided more than once' },
  { sql: `f.last_order > f.void_order`, text: 'a capture or void applied after its void' },
  { sql: `f.last_at >= h.expires_at`, text: 'a capture or void applied at or after its expiry' },
  // The sweep sets updated_at to the time it judged the hold due (expires_at <= now); a refund later only moves it on.
  { sql: `h.state = 'expired' AND h.updated_at < h.expires_at`, text: 'expired before its expiry' },
  { sql: `h.state = 'open' AND h.captured_minor <> 0`, text: 'open with captures' },
  {
    sql: `h.state = 'partially_captured' AND NOT (h.captured_minor > 0 AND h.captured_minor < h.authorized_minor)`,
    text: 'partially captured without a partial capture',
  },
  { sql: `h.state = 'captured' AND COALESCE(f.captures, 0) = 0`, text: 'captured without an applied capture' },
  { sql: `h.state <> 'captured' AND h.captured_minor = h.authorized_minor`, text: 'captured in full, yet not captured' },
];

/**
 * Holds whose state does not follow from their history (HOLD_HISTORY_RULES): voided iff an applied
 * void, nothing captured or voided after it or past the expiry, expired only once due, captured only
 * by captures. `transactions` has no index on `authorization_id`, so the history is one pass over
 * `transactions` grouped by it (a temporary table with a row per hold that has captures or voids),
 * joined to `holds` read once, like HOLDS_OFF_LEDGER.
 */
export const HOLDS_OFF_HISTORY = violationsFrom<{
  id: string;
  state: string;
  authorized_minor: string;
  captured_minor: string;
  problems: string;
}>(
  `FROM holds h LEFT JOIN (SELECT authorization_id,
            SUM(CASE WHEN type = 'card_void' THEN 1 ELSE 0 END) AS voids,
            SUM(CASE WHEN type = 'card_capture' THEN 1 ELSE 0 END) AS captures,
            MIN(CASE WHEN type = 'card_void' THEN apply_order END) AS void_order,
            MAX(apply_order) AS last_order,
            MAX(processed_at) AS last_at
       FROM transactions WHERE status = 'applied' AND type IN ('card_capture', 'card_void') AND authorization_id IS NOT NULL
       GROUP BY authorization_id) f ON f.authorization_id = h.id
     WHERE ${HOLD_HISTORY_RULES.map((r) => `(${r.sql})`).join(' OR ')}`,
  `h.id, h.state, h.authorized_minor, h.captured_minor,
   CONCAT_WS('; ', ${HOLD_HISTORY_RULES.map((r) => `CASE WHEN ${r.sql} THEN ${sqlLiteral(r.text)} END`).join(', ')}) AS problems`,
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
