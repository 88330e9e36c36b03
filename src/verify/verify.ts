import type { ChannelModel } from 'amqplib';
import { browseQueue } from '../amqp/browse.js';
import type { Topology } from '../amqp/topology.js';
import type { Knex } from '../db/knex.js';
import { transactionIdFor } from '../domain/ids.js';
import { parseMinor } from '../domain/money.js';
import { NotFoundError } from '../errors.js';
import { reconcileAccounting, type AccountingReconciliation } from './reconcile.js';

/** One invariant check: how many violations, and a few examples to start digging from. */
export interface CheckResult {
  readonly name: string;
  readonly description: string;
  readonly violations: number;
  readonly examples: string[];
}

/** Where each published id of a run ended up. */
export interface RunAccount {
  readonly runId: string;
  readonly status: string;
  readonly requested: number;
  readonly published: number;
  readonly confirmed: number;
  readonly expected: number;
  /** Ids of an unfinished (killed) run past its last recorded progress that are nowhere: probably never sent. */
  readonly notPublished: number;
  readonly applied: number;
  readonly rejected: number;
  readonly rejectedByReason: Record<string, number>;
  readonly parked: number;
  readonly returned: number;
  /** Missing ids while messages are still in the process/retry queues. */
  readonly pending: number;
  /** Missing ids with nothing left in the queues: lost. */
  readonly lost: number;
  /** Ids with more than one effect (applied twice). */
  readonly duplicated: number;
  readonly queued: number;
  readonly lostExamples: string[];
  readonly duplicatedExamples: string[];
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly checks: CheckResult[];
  readonly totals: { customerAccounts: number; transactions: number; applied: number; rejected: number; entries: number; customerBalanceMinor: string };
  readonly run: RunAccount | null;
  /** Statements of the accounting side against the ledger; null when its tables do not exist. */
  readonly accounting: AccountingReconciliation | null;
}

const EXAMPLES = 5;

/**
 * Proves the books: each transaction's entries sum to zero, the whole ledger sums to zero, every
 * customer balance equals its entries and is not negative, every applied transaction has exactly
 * one pair of entries and no rejected one has any. With a run id, also accounts for every id the
 * run published: applied, rejected, parked, still queued — or lost / duplicated. Also reconciles
 * the accounting statements with the ledger (see reconcile.ts).
 */
export async function verifyBooks(
  deps: { db: Knex; connection: ChannelModel | null; topology: Topology },
  options: { runId: string | null; peekLimit?: number },
): Promise<VerifyReport> {
  const { db } = deps;
  const checks: CheckResult[] = [];
  const check = async (name: string, description: string, countSql: string, exampleSql: string, format: (row: Record<string, unknown>) => string) => {
    const [countRows] = (await db.raw(countSql)) as [Record<string, unknown>[]];
    const violations = Number(countRows[0]?.n ?? 0);
    // Examples only when there is something to show: on a large ledger each query is a full scan.
    const [exampleRows] = violations > 0 ? ((await db.raw(`${exampleSql} LIMIT ${EXAMPLES}`)) as [Record<string, unknown>[]]) : [[]];
    checks.push({ name, description, violations, examples: exampleRows.map(format) });
  };

  await check(
    'entries_balance_per_transaction',
    "each transaction's entries sum to zero",
    'SELECT COUNT(*) AS n FROM (SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING SUM(amount_minor) <> 0) x',
    'SELECT transaction_id, SUM(amount_minor) AS s FROM ledger_entries GROUP BY transaction_id HAVING SUM(amount_minor) <> 0',
    (r) => `${r.transaction_id} sums to ${r.s}`,
  );
  const [[sumRow]] = (await db.raw('SELECT COALESCE(SUM(amount_minor), 0) AS s, COUNT(*) AS n FROM ledger_entries')) as [[{ s: string; n: string }]];
  const ledgerSum = parseMinor(sumRow.s);
  checks.push({ name: 'ledger_sums_to_zero', description: 'the whole ledger sums to zero', violations: ledgerSum === 0n ? 0 : 1, examples: ledgerSum === 0n ? [] : [`ledger sums to ${ledgerSum}`] });
  await check(
    'balance_equals_entries',
    "each customer balance equals the sum of its entries",
    `SELECT COUNT(*) AS n FROM (SELECT a.id FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id WHERE a.kind = 'customer' GROUP BY a.id, a.balance_minor HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)) x`,
    `SELECT a.id, a.balance_minor, COALESCE(SUM(e.amount_minor), 0) AS s FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id WHERE a.kind = 'customer' GROUP BY a.id, a.balance_minor HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)`,
    (r) => `account ${r.id}: balance ${r.balance_minor}, entries ${r.s}`,
  );
  await check(
    'no_negative_balance',
    'no customer balance is negative',
    `SELECT COUNT(*) AS n FROM accounts WHERE kind = 'customer' AND balance_minor < 0`,
    `SELECT id, balance_minor FROM accounts WHERE kind = 'customer' AND balance_minor < 0`,
    (r) => `account ${r.id}: ${r.balance_minor}`,
  );
  await check(
    'applied_once',
    'every applied transaction has exactly one pair of entries (none applied twice)',
    `SELECT COUNT(*) AS n FROM (SELECT t.id FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'applied' GROUP BY t.id HAVING COUNT(e.id) <> 2) x`,
    `SELECT t.id, COUNT(e.id) AS c FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'applied' GROUP BY t.id HAVING COUNT(e.id) <> 2`,
    (r) => `${r.id} has ${r.c} entries`,
  );
  await check(
    'rejected_without_effect',
    'no rejected transaction has entries',
    `SELECT COUNT(*) AS n FROM transactions t JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'rejected'`,
    `SELECT t.id, t.reason FROM transactions t JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.status = 'rejected'`,
    (r) => `${r.id} (${r.reason}) has entries`,
  );
  await check(
    'entries_have_outcome',
    'every entry belongs to a recorded transaction',
    `SELECT COUNT(*) AS n FROM ledger_entries e LEFT JOIN transactions t ON t.id = e.transaction_id WHERE t.id IS NULL`,
    `SELECT e.transaction_id FROM ledger_entries e LEFT JOIN transactions t ON t.id = e.transaction_id WHERE t.id IS NULL`,
    (r) => `entry of unknown transaction ${r.transaction_id}`,
  );

  const [[totalsRow]] = (await db.raw(
    `SELECT (SELECT COUNT(*) FROM accounts WHERE kind = 'customer') AS accounts,
            (SELECT COALESCE(SUM(balance_minor), 0) FROM accounts WHERE kind = 'customer') AS balance,
            (SELECT COUNT(*) FROM transactions WHERE type IS NULL OR type <> 'opening') AS tx,
            (SELECT COUNT(*) FROM transactions WHERE status = 'applied' AND (type IS NULL OR type <> 'opening')) AS applied,
            (SELECT COUNT(*) FROM transactions WHERE status = 'rejected') AS rejected`,
  )) as [[Record<string, string>]];
  const totals = {
    customerAccounts: Number(totalsRow.accounts),
    transactions: Number(totalsRow.tx),
    applied: Number(totalsRow.applied),
    rejected: Number(totalsRow.rejected),
    entries: Number(sumRow.n),
    customerBalanceMinor: parseMinor(totalsRow.balance ?? '0').toString(),
  };

  const run = options.runId ? await accountForRun(deps, options.runId, options.peekLimit ?? 50_000) : null;
  const accounting = await reconcileAccounting(deps);
  const ok = checks.every((c) => c.violations === 0) && (run === null || (run.lost === 0 && run.duplicated === 0)) && (accounting === null || accounting.ok);
  return { ok, checks, totals, run, accounting };
}

async function accountForRun(deps: { db: Knex; connection: ChannelModel | null; topology: Topology }, runId: string, peekLimit: number): Promise<RunAccount> {
  const { db } = deps;
  const run = await db('runs').where('id', runId).first();
  if (!run) throw new NotFoundError(`run ${runId} not found (txsim gen prints its run id)`);
  const requested = Number(run.count_requested);
  const published = Number(run.published);
  // A finished run sent exactly `published` ids: 0..published-1. A run still going (or killed) may
  // have sent any prefix of what it was asked for, so every requested id counts.
  const expected = run.status === 'running' ? requested : published;
  const returned = new Set((await db('run_returns').where('run_id', runId).select('transaction_id')).map((r: { transaction_id: string }) => r.transaction_id));
  const parkedIds = await peekDeadIds(deps, peekLimit);
  const rejectedByReason: Record<string, number> = {};
  let applied = 0;
  let rejected = 0;
  let parked = 0;
  const missing: string[] = [];
  let notPublished = 0;
  for (let start = 0; start < expected; start += 1_000) {
    const ids = Array.from({ length: Math.min(1_000, expected - start) }, (_, i) => transactionIdFor(runId, start + i));
    const rows: { id: string; status: string; reason: string | null }[] = await db('transactions').whereIn('id', ids).select('id', 'status', 'reason');
    const found = new Map(rows.map((r) => [r.id, r]));
    for (const [offset, id] of ids.entries()) {
      const row = found.get(id);
      if (row?.status === 'applied') applied++;
      else if (row?.status === 'rejected') {
        rejected++;
        rejectedByReason[row.reason ?? 'unknown'] = (rejectedByReason[row.reason ?? 'unknown'] ?? 0) + 1;
      } else if (parkedIds.has(id)) parked++;
      else if (returned.has(id)) continue;
      else if (run.status === 'running' && start + offset >= published) notPublished++;
      else missing.push(id);
    }
  }
  const [dupRows] = (await db.raw(
    `SELECT t.id FROM transactions t JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.run_id = ? GROUP BY t.id HAVING COUNT(e.id) > 2`,
    [runId],
  )) as [{ id: string }[]];
  const queued = await queuedCount(deps);
  const pending = Math.min(missing.length, queued);
  return {
    runId,
    status: String(run.status),
    requested,
    published,
    confirmed: Number(run.confirmed),
    expected,
    notPublished,
    applied,
    rejected,
    rejectedByReason,
    parked,
    returned: returned.size,
    pending,
    lost: missing.length - pending,
    duplicated: dupRows.length,
    queued,
    lostExamples: missing.slice(0, EXAMPLES),
    duplicatedExamples: dupRows.slice(0, EXAMPLES).map((r) => r.id),
  };
}

/** Messages still to be processed: ready in the process queue and waiting in the delay queues. */
async function queuedCount(deps: { connection: ChannelModel | null; topology: Topology }): Promise<number> {
  if (!deps.connection) return 0;
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {});
  try {
    let total = 0;
    for (const name of [deps.topology.processQueue, ...deps.topology.retryQueues.map((q) => q.name)]) {
      total += (await channel.checkQueue(name)).messageCount;
    }
    return total;
  } finally {
    await channel.close().catch(() => {});
  }
}

/**
 * Ids in the parking queue, read without removing anything: messages are fetched unacknowledged
 * and the channel is then closed, which hands them all back to the queue.
 */
export async function peekDeadIds(deps: { connection: ChannelModel | null; topology: Topology }, limit: number): Promise<Set<string>> {
  const ids = new Set<string>();
  if (!deps.connection) return ids;
  const channel = await deps.connection.createChannel();
  channel.on('error', () => {});
  try {
    for await (const msg of browseQueue(channel, deps.topology.deadQueue, limit)) {
      if (msg.properties.messageId) ids.add(String(msg.properties.messageId).toLowerCase());
    }
  } finally {
    await channel.close().catch(() => {});
  }
  return ids;
}
