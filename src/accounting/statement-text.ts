import type { AccountingEvent } from '../domain/accounting-event.js';
import { formatMinor } from '../domain/money.js';

/** Statement lines: how an accounting event reads to a person. */

const TYPE_LABELS: Record<string, string> = {
  deposit: 'deposit',
  withdrawal: 'withdrawal',
  card_payment: 'card payment',
  // A transfer's source line carries the transaction's type; its destination line is `transfer_in`.
  transfer: 'transfer out',
  transfer_in: 'transfer in',
  card_authorization: 'card hold',
  card_capture: 'card capture',
  card_void: 'card hold released',
  card_refund: 'card refund',
  // Written by a worker's hold sweeper (not a message): the rest of an expired hold released.
  hold_expired: 'card hold expired',
};

/** Event types that move no posted money (a hold or its release): their amount has no sign. */
const NOT_POSTED = new Set(['card_authorization', 'card_void', 'hold_expired']);

/** Event types that put money into the account. */
const MONEY_IN = new Set(['deposit', 'transfer_in', 'card_refund']);

/** "insufficient_funds" → "insufficient funds". */
function humanize(code: string): string {
  return code.replace(/_/g, ' ');
}

/** Amount as the account holder sees it: money in is +, money out is −; a reject moved nothing, so no sign. */
export function signedAmountText(event: Pick<AccountingEvent, 'type' | 'outcome' | 'amountMinor' | 'currency'>): string {
  if (event.amountMinor === null) return '-';
  const text = formatMinor(event.amountMinor, event.currency ?? undefined);
  if (event.outcome === 'rejected' || (event.type !== null && NOT_POSTED.has(event.type))) return text;
  return event.type !== null && MONEY_IN.has(event.type) ? `+${text}` : `-${text}`;
}

/** What happened, in words: "deposit", "card payment"; just "transaction" when the message was unreadable. */
export function whatHappened(event: Pick<AccountingEvent, 'type'>): string {
  return event.type === null ? 'transaction' : (TYPE_LABELS[event.type] ?? event.type);
}

/** The outcome column: the balance after an applied transaction, or "REJECTED: <reason>". */
export function outcomeText(event: Pick<AccountingEvent, 'outcome' | 'reason' | 'balanceAfterMinor' | 'currency'>): string {
  if (event.outcome === 'rejected') return `REJECTED: ${humanize(event.reason ?? 'no reason given')}`;
  return event.balanceAfterMinor === null
    ? 'balance unknown'
    : `balance ${formatMinor(event.balanceAfterMinor, event.currency ?? undefined)}`;
}

/**
 * One readable statement line: time, account (and its sequence number), what happened, the
 * amount with its currency, and the balance after — or, for a reject, the reason.
 *
 *   2025-05-01 12:00:00.123  account 42 #17   card payment      -12.34 EUR  balance 987.66 EUR
 *   2025-05-01 12:00:00.124  account 42 #18   withdrawal       900.00 EUR  REJECTED: insufficient funds
 */
export function formatStatementLine(event: AccountingEvent): string {
  const time = event.occurredAt.replace('T', ' ').replace(/Z$/, '');
  const who = event.accountId === null ? 'no account' : `account ${event.accountId} #${event.accountSeq}`;
  const tail = event.accountId === null ? ` (transaction ${event.transactionId})` : '';
  return `${time}  ${who.padEnd(18)}  ${whatHappened(event).padEnd(18)}  ${signedAmountText(event).padStart(16)}  ${outcomeText(event)}${tail}`;
}
