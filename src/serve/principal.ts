/**
 * Who is calling, and what they may do. An admin may do everything; an account token acts for its
 * own account only. Reads of another account's transaction answer 404 (even saying "forbidden" would
 * tell that the id exists); reads of another account by id, and submitting for it, answer 403.
 */
export type Principal =
  | { readonly kind: 'admin'; readonly tokenId: string | null }
  | { readonly kind: 'account'; readonly tokenId: string; readonly accountId: number };

/** The principal of `--no-auth`: everyone is admin, and the server says so loudly at start. */
export const NO_AUTH_PRINCIPAL: Principal = { kind: 'admin', tokenId: null };

export function mayActFor(principal: Principal, accountId: number | null): boolean {
  return principal.kind === 'admin' || (accountId !== null && principal.accountId === accountId);
}

/**
 * Rate-limit key. An account token's bucket is its account's: every token of one account shares it.
 * Logins mint a new token each (`POST /v1/sessions`, 30 a minute per address and more from more
 * addresses), so a bucket per token would let a customer multiply its rate by logging in again; and
 * the account is who the customer is to this API (one user per account, `api_users.account_id` is
 * unique; every token of it acts for that account alone), so one account, one rate, whichever session
 * it uses. An admin token has no account and is minted only by an operator (`txsim tokens create`),
 * so it keeps a bucket of its own; all of `--no-auth` share one.
 */
export function rateKeyOf(principal: Principal): string {
  if (principal.kind === 'account') return `account:${principal.accountId}`;
  return principal.tokenId === null ? 'no-auth' : `token:${principal.tokenId}`;
}

/** Whose rate a principal spends, for the 429's message: `this token` or `account 42 (all its tokens)`. */
export function rateScopeOf(principal: Principal): string {
  return principal.kind === 'account' ? `account ${principal.accountId} (all its tokens)` : 'this token';
}
