import { orderingViolationsQuery, type OrderingViolationRow } from '../db/partition-leases.js';
import { defineCheck, runChecks, type CheckDefinition, type CheckResult, type ViolationReader } from './checks.js';

/** The ordering check's result: a check like the ledger's, and whether it applies (an ordered namespace). */
export interface OrderingResult extends CheckResult {
  /** False in an unordered namespace: nothing promises order there, so the check is not run (not "passed"). */
  readonly applicable: boolean;
}

/** Stable name for scripts. */
export const ORDERING_CHECK_NAME = 'applied_in_account_order';
const DESCRIPTION = "each account's transactions applied in gen's sequence order";

/**
 * Per-account ordering as data: an outcome row written (apply_order) after a row of the same
 * account, run and gen instance with a higher sequence number is a violation. Rows without a
 * sequence number (serve's POSTs, older gens) are not compared. `runId` narrows it to one run.
 */
export function orderingCheck(runId: string | null): CheckDefinition<OrderingViolationRow> {
  return defineCheck<OrderingViolationRow>({
    name: ORDERING_CHECK_NAME,
    description: DESCRIPTION,
    query: orderingViolationsQuery(runId),
    example: (r) => `${r.id}: account ${r.account_id} seq ${r.account_seq} applied after seq ${r.prev_max_seq}`,
  });
}

/** Runs the check in an ordered namespace; reports it not applicable otherwise. */
export async function checkOrdering(reader: ViolationReader, ordered: boolean, runId: string | null): Promise<OrderingResult> {
  if (!ordered) return { name: ORDERING_CHECK_NAME, description: DESCRIPTION, violations: 0, examples: [], applicable: false };
  const [result] = await runChecks(reader, [orderingCheck(runId)]);
  return { ...result!, applicable: true };
}
