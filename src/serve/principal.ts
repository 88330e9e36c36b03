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

/** Rate-limit key: one bucket per token (all of `--no-auth` share one). */
export function rateKeyOf(principal: Principal): string {
  return principal.tokenId ?? 'no-auth';
}
