import type { Knex } from '../db/knex.js';
import { bookTotals, ledgerSummary } from '../db/ledger.js';
import type { BrokerDeps } from './broker-counts.js';
import { databaseReader, runChecks, type CheckResult } from './checks.js';
import { LEDGER_CHECKS } from './ledger-checks.js';
import { checkOrdering, type OrderingResult } from './ordering-check.js';
import { reconcileAccounting, type AccountingReconciliation } from './reconcile.js';
import { accountForRun, type RunAccount } from './run-account.js';

export type { CheckResult } from './checks.js';
export type { RunAccount } from './run-account.js';
export type { OrderingResult } from './ordering-check.js';

/**
 * `ok`: nothing wrong and nothing on its way; `pending`: nothing wrong yet, but not everything has
 * arrived; `incomplete`: nothing wrong in the database, but RabbitMQ could not be read, so what is
 * still queued or parked is not known; `failed`: a violation or a loss (whether or not the broker
 * could be read: a violation found is proved either way).
 */
export type VerifyStatus = 'ok' | 'pending' | 'incomplete' | 'failed';

/** The broker as verify found it. */
export interface BrokerState {
  /** False: RabbitMQ could not be reached, so no queue was read (the books were checked all the same). */
  readonly reachable: boolean;
  /** Why not, in one line naming the broker (password redacted); null when reachable. */
  readonly error: string | null;
}

/** What is still on its way, so nothing can be proved about it yet. */
export interface PendingState {
  /** Ids of the run still in the process or delay queues. */
  readonly runIds: number;
  /** Outcomes whose statement line is on its way (unsent in the outbox, queued or held) while an accounting consumer is connected. */
  readonly statementLines: number;
  /** Instances of a split run (`gen --instance k/n`) that have not reported yet, as `k/n`. */
  readonly missingInstances: string[];
}

export interface VerifyReport {
  /** status === 'ok'. */
  readonly ok: boolean;
  readonly status: VerifyStatus;
  readonly pending: PendingState;
  /** Whether the queues could be read: without the broker, nothing queued, parked or in flight is known. */
  readonly broker: BrokerState;
  readonly checks: CheckResult[];
  /** Per-account ordering (ordered namespaces; `applicable: false` otherwise), over the run with --run. */
  readonly ordering: OrderingResult;
  readonly totals: {
    customerAccounts: number;
    transactions: number;
    applied: number;
    rejected: number;
    entries: number;
    /** Customer accounts and balances per currency (money as a decimal string of minor units). */
    byCurrency: { currency: string; customerAccounts: number; customerBalanceMinor: string }[];
  };
  readonly run: RunAccount | null;
  /** Statements of the accounting side against the ledger; null when its tables do not exist. */
  readonly accounting: AccountingReconciliation | null;
}

/** Parked ids read at most, by default, to tell parked from lost. */
const PEEK_LIMIT_DEFAULT = 50_000;

/**
 * Proves the books: each transaction's entries sum to zero, the whole ledger sums to zero, every
 * customer balance equals its entries and is not negative, every applied transaction has exactly
 * one pair of entries, each the posting its type makes, and no rejected one has any (ledger-checks.ts).
 * With a run id, also accounts for every id the run published: applied, rejected, parked, still
 * queued — or lost / duplicated (run-account.ts). Also reconciles the accounting statements with the
 * ledger (reconcile.ts). Without a broker connection (`deps.connection` null; `brokerError` says why)
 * the database is checked all the same, and a clean report is `incomplete`, never `ok`.
 */
export async function verifyBooks(
  deps: BrokerDeps & { db: Knex },
  options: { runId: string | null; peekLimit?: number; brokerError?: string },
): Promise<VerifyReport> {
  const { db } = deps;
  const checks = await runChecks(databaseReader(db), LEDGER_CHECKS);
  const ordering = await checkOrdering(databaseReader(db), deps.topology.ordered !== null, options.runId);
  const ledger = await ledgerSummary(db);
  const books = await bookTotals(db);
  const totals = {
    customerAccounts: books.customerAccounts,
    transactions: books.transactions,
    applied: books.applied,
    rejected: books.rejected,
    entries: ledger.entries,
    byCurrency: books.byCurrency.map((c) => ({ ...c, customerBalanceMinor: c.customerBalanceMinor.toString() })),
  };
  const run = options.runId ? await accountForRun(deps, options.runId, options.peekLimit ?? PEEK_LIMIT_DEFAULT) : null;
  const accounting = await reconcileAccounting(deps);
  const clean =
    checks.every((c) => c.violations === 0) &&
    ordering.violations === 0 &&
    (run === null || (run.lost === 0 && run.duplicated === 0)) &&
    (accounting === null || accounting.ok);
  const pending = pendingStateOf(run, accounting);
  const broker: BrokerState = deps.connection
    ? { reachable: true, error: null }
    : { reachable: false, error: options.brokerError ?? 'rabbitmq: no connection' };
  const status: VerifyStatus = !clean
    ? 'failed'
    : !broker.reachable
      ? 'incomplete'
      : pending.runIds + pending.statementLines + pending.missingInstances.length > 0
        ? 'pending'
        : 'ok';
  return { ok: status === 'ok', status, pending, broker, checks, ordering, totals, run, accounting };
}

/**
 * What is still on its way. Statement lines count only while an accounting consumer is connected:
 * without one its events simply wait in the queue for `txsim accounting`, and waiting changes nothing.
 */
export function pendingStateOf(
  run: (Pick<RunAccount, 'pending'> & Partial<Pick<RunAccount, 'instances'>>) | null,
  accounting: Pick<AccountingReconciliation, 'pending' | 'consumers'> | null,
): PendingState {
  return {
    runIds: run?.pending ?? 0,
    statementLines: accounting !== null && (accounting.consumers ?? 0) > 0 ? accounting.pending : 0,
    // A run split over n gens is whole only once every instance has reported: until then nothing proves it.
    missingInstances: run?.instances ? run.instances.missing.map((k) => `${k}/${run.instances!.count}`) : [],
  };
}
