import type { ChannelModel } from 'amqplib';
import type { Topology } from '../amqp/topology.js';
import type { Knex } from '../db/knex.js';
import { ACCOUNTING_PREFETCH_MAX } from '../accounting/statements-consumer.js';
import type { CheckResult } from './verify.js';

/**
 * Reconciliation of the accounting side against the ledger, for `txsim verify`: every recorded
 * outcome has exactly one statement line, each line says what the ledger says, every account's
 * sequence numbers are 1..n without repeats, and the balance on a complete statement equals the
 * ledger's. An outcome without a line is only a loss once nothing is left on the way to the
 * accounting side: unsent in the outbox, ready in the queue, or held by a connected consumer.
 */
export interface AccountingReconciliation {
  /** No violation and nothing lost (events still on their way are not violations). */
  readonly ok: boolean;
  /** Drained and complete: nothing unsent, nothing queued, no outcome without its line. */
  readonly settled: boolean;
  /** Recorded outcomes that should have a statement line (every transaction except openings). */
  readonly outcomes: number;
  readonly statements: number;
  /** Outbox events not yet published. */
  readonly outboxUnsent: number;
  /** Events ready in the accounting queue; null when the broker could not be asked. */
  readonly queued: number | null;
  /** Consumers on the accounting queue; null when the broker could not be asked. */
  readonly consumers: number | null;
  /** Outcomes without a statement line … */
  readonly missing: number;
  /** … of which may still be on their way … */
  readonly pending: number;
  /** … and of which cannot be anywhere any more. */
  readonly lost: number;
  readonly missingExamples: string[];
  readonly checks: CheckResult[];
  readonly webhooks: { readonly pending: number; readonly delivered: number; readonly failed: number };
  /** Deliveries that were not accounting events (kept in accounting_invalid_events). */
  readonly invalidEvents: number;
}

const EXAMPLES = 5;
const ER_NO_SUCH_TABLE = 1146;
/** Transactions that have an accounting event: all but seeded opening balances (those have no outbox event). */
const HAS_EVENT = `(t.type IS NULL OR t.type <> 'opening')`;

/**
 * Reconciles the accounting tables with the ledger. Returns null when the accounting tables do not
 * exist (a database set up before accounting existed; `txsim setup` adds them).
 */
export async function reconcileAccounting(deps: { db: Knex; connection: ChannelModel | null; topology: Topology }): Promise<AccountingReconciliation | null> {
  try {
    return await reconcile(deps);
  } catch (err) {
    if ((err as { errno?: number }).errno === ER_NO_SUCH_TABLE) return null;
    throw err;
  }
}

async function reconcile(deps: { db: Knex; connection: ChannelModel | null; topology: Topology }): Promise<AccountingReconciliation> {
  const { db } = deps;
  const scalar = async (sql: string): Promise<number> => {
    const [rows] = (await db.raw(sql)) as [Record<string, unknown>[]];
    return Number(rows[0]?.n ?? 0);
  };
  const list = async (sql: string): Promise<Record<string, unknown>[]> => ((await db.raw(`${sql} LIMIT ${EXAMPLES}`)) as [Record<string, unknown>[]])[0];

  // The queue first, the tables after: an event the consumer stores in between is then seen as
  // stored rather than as neither queued nor stored.
  const queue = await queueState(deps);
  const outboxUnsent = await scalar('SELECT COUNT(*) AS n FROM outbox_events WHERE sent_at IS NULL');
  const outcomes = await scalar(`SELECT COUNT(*) AS n FROM transactions t WHERE ${HAS_EVENT}`);
  const statements = await scalar('SELECT COUNT(*) AS n FROM accounting_statements');
  const missingWhere = `FROM transactions t WHERE ${HAS_EVENT} AND NOT EXISTS (SELECT 1 FROM accounting_statements s WHERE s.transaction_id = t.id)`;
  const missing = await scalar(`SELECT COUNT(*) AS n ${missingWhere}`);
  const missingExamples = (await list(`SELECT t.id ${missingWhere} ORDER BY t.processed_at`)).map((r) => String(r.id));

  // A connected consumer may hold up to its prefetch unacknowledged; checkQueue counts only ready ones.
  const heldBound = queue ? queue.consumers * ACCOUNTING_PREFETCH_MAX : 0;
  const pending = queue === null ? missing : Math.min(missing, outboxUnsent + queue.ready + heldBound);
  const settled = missing === 0 && outboxUnsent === 0 && queue !== null && queue.ready === 0;

  const checks: CheckResult[] = [];
  const check = async (name: string, description: string, fromSql: string, select: string, format: (r: Record<string, unknown>) => string) => {
    const violations = await scalar(`SELECT COUNT(*) AS n FROM (SELECT 1 AS one ${fromSql}) x`);
    const examples = violations > 0 ? (await list(`SELECT ${select} ${fromSql}`)).map(format) : [];
    checks.push({ name, description, violations, examples });
  };

  await check(
    'statement_once_per_outcome',
    'no outcome has more than one statement line',
    'FROM accounting_statements GROUP BY transaction_id HAVING COUNT(*) > 1',
    'transaction_id, COUNT(*) AS c',
    (r) => `${r.transaction_id} has ${r.c} lines`,
  );
  await check(
    'statement_has_outcome',
    'every statement line belongs to a recorded outcome',
    'FROM accounting_statements s LEFT JOIN transactions t ON t.id = s.transaction_id WHERE t.id IS NULL',
    's.event_id, s.transaction_id',
    (r) => `event ${r.event_id}: no transaction ${r.transaction_id}`,
  );
  await check(
    'statement_matches_outcome',
    'each statement line says what the ledger recorded (outcome, reason, amount, balance after)',
    `FROM accounting_statements s JOIN transactions t ON t.id = s.transaction_id
      WHERE NOT (s.outcome <=> t.status AND s.reason <=> t.reason AND s.type <=> t.type AND s.currency <=> t.currency
                 AND s.amount_minor <=> t.amount_minor AND s.balance_after_minor <=> t.balance_after_minor
                 AND (s.account_id IS NULL OR s.account_id = t.account_id))`,
    's.transaction_id, s.outcome, t.status, s.balance_after_minor, t.balance_after_minor AS ledger_balance',
    (r) => `${r.transaction_id}: statement ${r.outcome} ${r.balance_after_minor ?? '-'}, ledger ${r.status} ${r.ledger_balance ?? '-'}`,
  );
  // Sequence numbers: never repeated, never beyond the account's counter, and — once everything has
  // arrived — exactly 1..event_seq.
  await check(
    'statement_sequence',
    settled ? "each account's statement numbers run 1..n without gaps or repeats" : "no account's statement repeats or skips ahead of a number",
    `FROM accounting_statements s LEFT JOIN accounts a ON a.id = s.account_id WHERE s.account_id IS NOT NULL
      GROUP BY s.account_id, a.event_seq
      HAVING COUNT(*) <> COUNT(DISTINCT s.account_seq) OR a.event_seq IS NULL OR MAX(s.account_seq) > a.event_seq
             ${settled ? 'OR COUNT(*) <> a.event_seq' : ''}`,
    's.account_id, COUNT(*) AS c, COUNT(DISTINCT s.account_seq) AS d, MAX(s.account_seq) AS m, a.event_seq',
    (r) => `account ${r.account_id}: ${r.c} lines, ${r.d} distinct numbers, highest #${r.m}, account counter ${r.event_seq ?? 'none'}`,
  );
  // One statement, so one consistent snapshot of the ledger, the counters and the statements: an
  // account whose statement has every number up to its counter must show the ledger's balance.
  await check(
    'statement_balance_equals_ledger',
    "a complete statement's last balance equals the account's ledger balance",
    `FROM accounts a
       JOIN (SELECT account_id, COUNT(DISTINCT account_seq) AS n, MAX(account_seq) AS m FROM accounting_statements WHERE account_id IS NOT NULL GROUP BY account_id) st ON st.account_id = a.id
       JOIN accounting_statements last ON last.account_id = a.id
            AND last.account_seq = (SELECT MAX(x.account_seq) FROM accounting_statements x WHERE x.account_id = a.id AND x.outcome = 'applied')
       LEFT JOIN (SELECT account_id, SUM(amount_minor) AS s FROM ledger_entries GROUP BY account_id) le ON le.account_id = a.id
      WHERE st.n = a.event_seq AND st.m = a.event_seq AND last.balance_after_minor <> COALESCE(le.s, 0)`,
    'a.id, last.balance_after_minor, COALESCE(le.s, 0) AS ledger',
    (r) => `account ${r.id}: statement ${r.balance_after_minor}, ledger ${r.ledger}`,
  );

  const [webhookRows] = (await db.raw('SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status')) as [{ status: string; n: string }[]];
  const byStatus = Object.fromEntries(webhookRows.map((r) => [r.status, Number(r.n)]));
  const invalidEvents = await scalar('SELECT COUNT(*) AS n FROM accounting_invalid_events');
  const lost = missing - pending;
  return {
    ok: lost === 0 && checks.every((c) => c.violations === 0),
    settled,
    outcomes,
    statements,
    outboxUnsent,
    queued: queue?.ready ?? null,
    consumers: queue?.consumers ?? null,
    missing,
    pending,
    lost,
    missingExamples,
    checks,
    webhooks: { pending: byStatus.pending ?? 0, delivered: byStatus.delivered ?? 0, failed: byStatus.failed ?? 0 },
    invalidEvents,
  };
}

/** Ready messages and consumers of the accounting queue; null without a broker or without the queue. */
async function queueState(deps: { connection: ChannelModel | null; topology: Topology }): Promise<{ ready: number; consumers: number } | null> {
  if (!deps.connection) return null;
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {});
  try {
    const q = await channel.checkQueue(deps.topology.accountingQueue);
    return { ready: q.messageCount, consumers: q.consumerCount };
  } catch {
    return null;
  } finally {
    await channel.close().catch(() => {});
  }
}
