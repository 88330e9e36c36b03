import type { Knex } from './knex.js';
import { countOf, rowsOf } from './rows.js';
import { violationsFrom, type ViolationQuery } from './violations.js';

/**
 * The reads `verify` reconciles the accounting side with: counts over the outbox, the statements,
 * the webhook deliveries and the invalid events, and the statements' invariants as violation
 * queries (verify/reconcile.ts names and judges them). Every function fails with errno 1146 when
 * the accounting tables do not exist.
 */

/** Transactions that have an accounting event: all but seeded opening balances (those have no outbox event). */
const HAS_EVENT = `(t.type IS NULL OR t.type <> 'opening')`;
/**
 * The statement lines the ledger expects, one row each: the outcome's line (type as recorded, or
 * NULL), for an applied transfer also the destination's `transfer_in` line, and for a hold the
 * workers expired its `hold_expired` line (under the authorization's id).
 */
const EXPECTED_LINES = `(SELECT t.id, t.type AS line_type, t.processed_at FROM transactions t WHERE ${HAS_EVENT}
   UNION ALL SELECT t.id, 'transfer_in', t.processed_at FROM transactions t WHERE t.type = 'transfer' AND t.status = 'applied'
   UNION ALL SELECT h.id, 'hold_expired', h.updated_at FROM holds h WHERE h.state = 'expired')`;
const MISSING_STATEMENT = `FROM ${EXPECTED_LINES} e WHERE NOT EXISTS (SELECT 1 FROM accounting_statements s WHERE s.transaction_id = e.id AND s.type <=> e.line_type)`;

async function scalar(db: Knex, sql: string): Promise<number> {
  return countOf(rowsOf<{ n: string }>(await db.raw(sql))[0]?.n);
}

/** Outbox events not yet published. */
export function unsentOutboxCount(db: Knex): Promise<number> {
  return scalar(db, 'SELECT COUNT(*) AS n FROM outbox_events WHERE sent_at IS NULL');
}

/** Statement lines the recorded outcomes should have (an applied transfer has two: one per account). */
export function outcomesWithEventCount(db: Knex): Promise<number> {
  return scalar(db, `SELECT COUNT(*) AS n FROM ${EXPECTED_LINES} e`);
}

export function statementLineCount(db: Knex): Promise<number> {
  return scalar(db, 'SELECT COUNT(*) AS n FROM accounting_statements');
}

/** Statement lines the outcomes should have and do not. */
export function missingStatementCount(db: Knex): Promise<number> {
  return scalar(db, `SELECT COUNT(*) AS n ${MISSING_STATEMENT}`);
}

/** The oldest `limit` outcomes missing a statement line. */
export async function missingStatementIds(db: Knex, limit: number): Promise<string[]> {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`bad limit ${limit}`);
  return rowsOf<{ id: string }>(await db.raw(`SELECT e.id ${MISSING_STATEMENT} ORDER BY e.processed_at LIMIT ${limit}`)).map((r) =>
    String(r.id),
  );
}

/** Webhook deliveries by status. */
export async function webhookCounts(db: Knex): Promise<{ pending: number; delivered: number; failed: number }> {
  const rows = rowsOf<{ status: string; n: string }>(await db.raw('SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status'));
  const byStatus = new Map(rows.map((r) => [r.status, countOf(r.n)]));
  return { pending: byStatus.get('pending') ?? 0, delivered: byStatus.get('delivered') ?? 0, failed: byStatus.get('failed') ?? 0 };
}

/** Deliveries that were not accounting events. */
export function invalidEventCount(db: Knex): Promise<number> {
  return scalar(db, 'SELECT COUNT(*) AS n FROM accounting_invalid_events');
}

/** Outcomes with more than one statement line of a kind (a transfer has one `transfer` and one `transfer_in` line). */
export const REPEATED_STATEMENTS = violationsFrom<{ transaction_id: string; c: string }>(
  'FROM accounting_statements GROUP BY transaction_id, type HAVING COUNT(*) > 1',
  'transaction_id, COUNT(*) AS c',
);

/** Statement lines without a recorded outcome. */
export const STATEMENTS_WITHOUT_OUTCOME = violationsFrom<{ event_id: string; transaction_id: string }>(
  'FROM accounting_statements s LEFT JOIN transactions t ON t.id = s.transaction_id WHERE t.id IS NULL',
  's.event_id, s.transaction_id',
);

/** Statement lines that say something other than the ledger's outcome row. */
export const STATEMENTS_OFF_OUTCOME = violationsFrom<{
  transaction_id: string;
  outcome: string;
  status: string;
  balance_after_minor: string | null;
  ledger_balance: string | null;
}>(
  `FROM accounting_statements s JOIN transactions t ON t.id = s.transaction_id
      WHERE NOT (s.outcome <=> t.status AND s.reason <=> t.reason AND s.currency <=> t.currency AND s.amount_minor <=> t.amount_minor
                 AND CASE WHEN s.type = 'transfer_in'
                          THEN t.type = 'transfer' AND s.account_id <=> t.to_account_id AND s.balance_after_minor <=> t.to_balance_after_minor
                          ELSE s.type <=> t.type AND s.balance_after_minor <=> t.balance_after_minor
                               AND (s.account_id IS NULL OR s.account_id = t.account_id) END)
             AND NOT (s.type <=> 'hold_expired')
          OR s.type = 'hold_expired' AND NOT (t.type = 'card_authorization' AND t.status = 'applied' AND s.outcome = 'applied'
                 AND s.reason IS NULL AND s.currency <=> t.currency AND s.account_id <=> t.account_id
                 AND EXISTS (SELECT 1 FROM holds h WHERE h.id = s.transaction_id AND h.state = 'expired'
                             AND s.amount_minor = h.authorized_minor - h.captured_minor))`,
  `s.transaction_id, s.outcome, t.status, s.balance_after_minor,
   CASE WHEN s.type = 'transfer_in' THEN t.to_balance_after_minor ELSE t.balance_after_minor END AS ledger_balance`,
);

export type SequenceRow = { account_id: string; c: string; d: string; m: string; event_seq: string | null };

/**
 * Accounts whose statement numbers repeat or run past the account's counter; once `settled`
 * (everything has arrived), also those whose numbers are not exactly 1..counter.
 */
export function statementSequenceBreaks(settled: boolean): ViolationQuery<SequenceRow> {
  return violationsFrom<SequenceRow>(
    `FROM accounting_statements s LEFT JOIN accounts a ON a.id = s.account_id WHERE s.account_id IS NOT NULL
      GROUP BY s.account_id, a.event_seq
      HAVING COUNT(*) <> COUNT(DISTINCT s.account_seq) OR a.event_seq IS NULL OR MAX(s.account_seq) > a.event_seq
             ${settled ? 'OR COUNT(*) <> a.event_seq' : ''}`,
    's.account_id, COUNT(*) AS c, COUNT(DISTINCT s.account_seq) AS d, MAX(s.account_seq) AS m, a.event_seq',
  );
}

/**
 * Accounts with a complete statement (every number up to the counter) whose last balance is not the
 * ledger's. One statement, so one consistent snapshot of the ledger, the counters and the statements.
 */
export const STATEMENT_BALANCES_OFF_LEDGER = violationsFrom<{ id: string; balance_after_minor: string; ledger: string }>(
  `FROM accounts a
       JOIN (SELECT account_id, COUNT(DISTINCT account_seq) AS n, MAX(account_seq) AS m FROM accounting_statements WHERE account_id IS NOT NULL GROUP BY account_id) st ON st.account_id = a.id
       JOIN accounting_statements last ON last.account_id = a.id
            AND last.account_seq = (SELECT MAX(x.account_seq) FROM accounting_statements x WHERE x.account_id = a.id AND x.outcome = 'applied')
       LEFT JOIN (SELECT account_id, SUM(amount_minor) AS s FROM ledger_entries GROUP BY account_id) le ON le.account_id = a.id
      WHERE st.n = a.event_seq AND st.m = a.event_seq AND last.balance_after_minor <> COALESCE(le.s, 0)`,
  'a.id, last.balance_after_minor, COALESCE(le.s, 0) AS ledger',
);
