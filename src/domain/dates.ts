/**
 * A date the ledger can store: DATETIME(3) holds years 1000-9999 (UTC), and JavaScript must be able to
 * read it (`2026-12-31T23:59:60Z`, a leap second, and `+01` without minutes are valid RFC 3339 that
 * `Date` cannot). Null otherwise.
 */
export function storableDate(iso: string): Date | null {
  const date = new Date(iso);
  const year = date.getUTCFullYear();
  return Number.isNaN(date.getTime()) || year < 1000 || year > 9999 ? null : date;
}
