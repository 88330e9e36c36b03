import {
  APPLIED_NOT_ONCE,
  authorizationsUnsettled,
  REFUNDS_OVER_CAPTURE,
  BALANCES_OFF_ENTRIES,
  CARD_OPERATIONS_OFF_HOLD,
  ENTRIES_OFF_CURRENCY,
  ENTRIES_WITHOUT_OUTCOME,
  HELD_OFF_HOLDS,
  HOLDS_OFF_AUTHORIZATION,
  HOLDS_OFF_HISTORY,
  HOLDS_OFF_LEDGER,
  HOLDS_OVERDRAWN,
  NEGATIVE_AVAILABLE,
  NEGATIVE_BALANCES,
  POSTINGS_BY_TYPE,
  POSTINGS_OFF_TYPE,
  REJECTED_WITH_ENTRIES,
  TRANSFERS_OFF_CUSTOMERS,
  UNBALANCED_LEDGER,
  UNBALANCED_TRANSACTIONS,
} from '../db/ledger-checks.js';
import { minorOf } from '../db/rows.js';
import { HOLD_EXPIRY_GRACE_MS } from '../domain/holds.js';
import { defineCheck, type AnyCheck } from './checks.js';

/** Minor units with their sign always shown: `+100`, `-100`. */
function signed(amountMinor: bigint): string {
  return amountMinor > 0n ? `+${amountMinor}` : String(amountMinor);
}

/**
 * What a transaction of this type, account, amount and other account (a system account's id or a
 * transfer's destination) should have posted, as postings_match_type's examples show the entries:
 * `41 -100, -32413 +100`, or `nothing`.
 */
export function expectedPostingsText(r: {
  type: string | null;
  account_id: string | null;
  amount_minor: string | null;
  other_account_id: string | null;
}): string {
  const posting = r.type !== null && Object.hasOwn(POSTINGS_BY_TYPE, r.type) ? POSTINGS_BY_TYPE[r.type] : undefined;
  if (!posting) return 'nothing';
  if (r.amount_minor === null) return 'two entries of an amount it does not record';
  const own = BigInt(posting.sign) * minorOf(r.amount_minor);
  return `${r.account_id ?? '?'} ${signed(own)}, ${r.other_account_id ?? '?'} ${signed(-own)}`;
}

/** The ledger's invariants, in the order verify reports them. */
export const LEDGER_CHECKS: readonly AnyCheck[] = [
  defineCheck({
    name: 'entries_balance_per_transaction',
    description: "each transaction's entries sum to zero",
    query: UNBALANCED_TRANSACTIONS,
    example: (r) => `${r.transaction_id} sums to ${r.s}`,
  }),
  defineCheck({
    name: 'ledger_sums_to_zero',
    description: 'the ledger sums to zero in each currency',
    query: UNBALANCED_LEDGER,
    // `currency` may be absent in rows made by hand (a unit test); NULL: entries on accounts that do not exist.
    example: (r) => `ledger sums to ${minorOf(r.s)}${'currency' in r ? ` in ${r.currency ?? 'no currency (unknown accounts)'}` : ''}`,
  }),
  defineCheck({
    name: 'balance_equals_entries',
    description: 'each customer balance equals the sum of its entries',
    query: BALANCES_OFF_ENTRIES,
    example: (r) => `account ${r.id}: balance ${r.balance_minor}, entries ${r.s}`,
  }),
  defineCheck({
    name: 'no_negative_balance',
    description: 'no customer balance is negative',
    query: NEGATIVE_BALANCES,
    example: (r) => `account ${r.id}: ${r.balance_minor}`,
  }),
  defineCheck({
    name: 'applied_once',
    description: 'every applied transaction has exactly one pair of entries (none applied twice)',
    query: APPLIED_NOT_ONCE,
    example: (r) => `${r.id} has ${r.c} entries`,
  }),
  defineCheck({
    name: 'rejected_without_effect',
    description: 'no rejected transaction has entries',
    query: REJECTED_WITH_ENTRIES,
    example: (r) => `${r.id} (${r.reason}) has entries`,
  }),
  defineCheck({
    name: 'entries_have_outcome',
    description: 'every entry belongs to a recorded transaction',
    query: ENTRIES_WITHOUT_OUTCOME,
    example: (r) => `entry of unknown transaction ${r.transaction_id}`,
  }),
  defineCheck({
    name: 'transfers_keep_customer_total',
    description:
      "each transfer moves its amount from one customer to another, both of the transfer's currency, and touches nothing else (customer total unchanged)",
    query: TRANSFERS_OFF_CUSTOMERS,
    example: (r) =>
      `${r.id}: ${r.c} entries, ${r.debits} matching debit, ${r.credits} matching credit; ${r.currency ?? 'no currency'} from ${r.from_account ?? '?'} to ${r.to_account ?? '?'}`,
  }),
  defineCheck({
    name: 'entries_in_transaction_currency',
    description: "every entry is on an account of its transaction's currency",
    query: ENTRIES_OFF_CURRENCY,
    example: (r) =>
      `${r.transaction_id} (${r.type ?? 'no type'} in ${r.currency ?? 'no currency'}): entry on account ${r.account_id} in ${r.account_currency ?? 'no currency (no such account)'}`,
  }),
  defineCheck({
    name: 'held_equals_open_holds',
    description: "each customer's held amount equals what its open holds still reserve",
    query: HELD_OFF_HOLDS,
    example: (r) => `account ${r.id}: held ${r.held_minor}, open holds ${r.s}`,
  }),
  defineCheck({
    name: 'no_negative_available',
    description: "no customer's available money (balance − held) is negative",
    query: NEGATIVE_AVAILABLE,
    example: (r) => `account ${r.id}: balance ${r.balance_minor}, held ${r.held_minor}`,
  }),
  defineCheck({
    name: 'holds_within_limits',
    description: 'no hold captured beyond its authorization, no refund beyond its captures',
    query: HOLDS_OVERDRAWN,
    example: (r) => `hold ${r.id}: authorized ${r.authorized_minor}, captured ${r.captured_minor}, refunded ${r.refunded_minor}`,
  }),
  defineCheck({
    name: 'holds_match_ledger',
    description: "each hold's captured and refunded amounts are the sums of its applied captures and refunds",
    query: HOLDS_OFF_LEDGER,
    example: (r) =>
      `hold ${r.id}: captured ${r.captured_minor} vs captures ${r.captures}, refunded ${r.refunded_minor} vs refunds ${r.refunds}`,
  }),
  defineCheck({
    name: 'holds_match_authorization',
    description: 'each hold is its applied authorization: same id, account, amount and currency, on a customer account of that currency',
    query: HOLDS_OFF_AUTHORIZATION,
    example: (r) =>
      `hold ${r.id} (${r.authorized_minor} ${r.currency} on account ${r.account_id}, ${r.account ?? 'no such account'}): authorization ${r.authorization ?? 'none'}`,
  }),
  defineCheck({
    name: 'card_operations_on_own_hold',
    description: 'each applied capture, void and refund names a hold on its own account, in its currency',
    query: CARD_OPERATIONS_OFF_HOLD,
    example: (r) =>
      `${r.id} (${r.type} on account ${r.account_id ?? '?'}): authorization ${r.authorization_id ?? 'none'} ${r.hold_account_id === null ? 'has no hold' : `is a hold on account ${r.hold_account_id}`}`,
  }),
  defineCheck({
    name: 'holds_state_matches_history',
    description:
      "each hold's state follows from its applied captures and voids: voided iff voided once, nothing after the void or past the expiry, expired only once due",
    query: HOLDS_OFF_HISTORY,
    example: (r) => `hold ${r.id} ${r.state} (authorized ${r.authorized_minor}, captured ${r.captured_minor}): ${r.problems}`,
  }),
  defineCheck({
    name: 'authorizations_settled',
    description: `every applied authorization is captured, voided, expired or still open before its expiry (+${HOLD_EXPIRY_GRACE_MS / 1000} s for the workers' sweep)`,
    query: authorizationsUnsettled(HOLD_EXPIRY_GRACE_MS / 1000),
    example: (r) =>
      r.state === null
        ? `authorization ${r.id} has no hold`
        : `hold ${r.id} still ${r.state}, expired at ${new Date(r.expires_at!).toISOString()}`,
  }),
  defineCheck({
    name: 'refunds_within_capture',
    description: 'refunds by captureId never exceed what their capture took (per capture; per hold: holds_within_limits)',
    query: REFUNDS_OVER_CAPTURE,
    example: (r) => `capture ${r.id}: captured ${r.captured ?? 'nothing (not an applied capture of that hold)'}, refunded ${r.refunded}`,
  }),
  defineCheck({
    name: 'postings_match_type',
    description: "each applied transaction's entries are what its type posts: accounts, signs and amount",
    query: POSTINGS_OFF_TYPE,
    example: (r) =>
      `${r.id} (${r.type ?? 'no type'} of ${r.amount_minor ?? '?'} on account ${r.account_id ?? '?'}): posted ${r.entries ?? 'nothing'}; expected ${expectedPostingsText(r)}`,
  }),
];
