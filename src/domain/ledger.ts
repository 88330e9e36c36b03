import { toMinor } from './money.js';
import { amountOf, type RejectReason, type TransactionMessage } from './transaction.js';

/** System accounts, one of each per currency. They absorb the other side of every posting. */
export const SYSTEM_ACCOUNT_CODES = ['opening_equity', 'cash_in', 'cash_out', 'card_settlement'] as const;
export type SystemAccountCode = (typeof SYSTEM_ACCOUNT_CODES)[number];

/**
 * Id of a system account: negative, derived from the currency and the code, so every process agrees
 * on it without a lookup and it can never collide with a (positive) customer id.
 */
export function systemAccountId(code: SystemAccountCode, currency: string): number {
  if (!/^[A-Z]{3}$/.test(currency)) throw new RangeError(`bad currency ${currency}`);
  let n = 0;
  for (const ch of currency) n = n * 26 + (ch.charCodeAt(0) - 65);
  return -(n * 10 + SYSTEM_ACCOUNT_CODES.indexOf(code) + 1);
}

/** The state of a customer account that authorization needs, read under a row lock. */
export interface AccountState {
  readonly id: number;
  readonly currency: string;
  readonly balanceMinor: bigint;
  /** What open card authorizations reserve (v1.1); spending authorizes against balance − held. */
  readonly heldMinor?: bigint;
}

export type Authorization =
  | {
      ok: true;
      balanceAfterMinor: bigint;
      postings: Posting[];
      /** A transfer's destination balance after the credit; absent for one-account types. */
      toBalanceAfterMinor?: bigint;
    }
  | { ok: false; reason: Exclude<RejectReason, 'invalid_message' | 'duplicate_conflict'>; detail: string };

/** One ledger entry: signed minor units on one account. A transaction's postings sum to zero. */
export interface Posting {
  readonly accountId: number;
  readonly amountMinor: bigint;
}

/**
 * Decides whether a transaction may be applied to an account, and what it posts. Pure: the caller
 * holds the row locks of `account` (and, for a transfer, of `toAccount`), so no balance can change
 * between this check and the write.
 */
export function authorize(message: TransactionMessage, account: AccountState | undefined, toAccount?: AccountState): Authorization {
  if (message.type === 'transfer') return authorizeTransfer(message, account, toAccount);
  const checked = checkAccount(message, account);
  if (!checked.ok) return checked;
  const amount = toMinor(amountOf(message));
  const signed = message.type === 'deposit' ? amount : -amount;
  const after = checked.account.balanceMinor + signed;
  if (after < (checked.account.heldMinor ?? 0n)) return insufficient(checked.account, amount);
  const counterCode: SystemAccountCode =
    message.type === 'deposit' ? 'cash_in' : message.type === 'withdrawal' ? 'cash_out' : 'card_settlement';
  return {
    ok: true,
    balanceAfterMinor: after,
    postings: [
      { accountId: checked.account.id, amountMinor: signed },
      { accountId: systemAccountId(counterCode, checked.account.currency), amountMinor: -signed },
    ],
  };
}

type Rejection = Extract<Authorization, { ok: false }>;

/** The account exists and holds the message's currency. */
function checkAccount(
  message: TransactionMessage,
  account: AccountState | undefined,
  accountId: number = message.accountId,
): { ok: true; account: AccountState } | Rejection {
  if (!account) return { ok: false, reason: 'unknown_account', detail: `account ${accountId} does not exist` };
  if (account.currency !== message.currency) {
    return {
      ok: false,
      reason: 'currency_mismatch',
      detail: `account ${account.id} holds ${account.currency}, message is in ${message.currency}`,
    };
  }
  return { ok: true, account };
}

/** Withdrawals, card payments and transfers spend only what open holds leave available. */
function insufficient(account: AccountState, amount: bigint): Rejection {
  const held = account.heldMinor ?? 0n;
  const detail =
    held === 0n
      ? `balance ${account.balanceMinor} < amount ${amount}`
      : `available ${account.balanceMinor - held} (balance ${account.balanceMinor}, held ${held}) < amount ${amount}`;
  return { ok: false, reason: 'insufficient_funds', detail };
}

/**
 * A transfer: one debit on the source and one credit on the destination, both customer accounts of
 * the message's currency. Customer money only changes hands, so the total of customer balances
 * stays the same (verify checks it). Checked in this order: same account, source, destination, funds.
 */
function authorizeTransfer(
  message: TransactionMessage,
  account: AccountState | undefined,
  toAccount: AccountState | undefined,
): Authorization {
  const toAccountId = message.toAccountId;
  if (toAccountId === undefined) throw new TypeError(`transfer ${message.id} without toAccountId passed validation`);
  if (toAccountId === message.accountId)
    return { ok: false, reason: 'same_account', detail: `transfer from account ${message.accountId} to itself` };
  const source = checkAccount(message, account);
  if (!source.ok) return source;
  const destination = checkAccount(message, toAccount, toAccountId);
  if (!destination.ok) return destination;
  const amount = toMinor(amountOf(message));
  const after = source.account.balanceMinor - amount;
  if (after < (source.account.heldMinor ?? 0n)) return insufficient(source.account, amount);
  return {
    ok: true,
    balanceAfterMinor: after,
    toBalanceAfterMinor: destination.account.balanceMinor + amount,
    postings: [
      { accountId: source.account.id, amountMinor: -amount },
      { accountId: destination.account.id, amountMinor: amount },
    ],
  };
}

/** Postings of an opening balance: the customer is credited from the currency's opening equity. */
export function openingPostings(accountId: number, currency: string, amountMinor: bigint): Posting[] {
  return [
    { accountId, amountMinor },
    { accountId: systemAccountId('opening_equity', currency), amountMinor: -amountMinor },
  ];
}
