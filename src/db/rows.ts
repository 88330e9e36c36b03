import { parseMinor } from '../domain/money.js';

/**
 * Typed access to mysql2's raw results. `knex.raw()` on mysql2 resolves to `[rows, fields]`; the row
 * shape is whatever the SQL selected, so each repository states it once, here, instead of casting at
 * every call site.
 */

/** The rows of a `knex.raw()` SELECT, typed as the query's columns. */
export function rowsOf<T>(result: unknown): T[] {
  return (result as [T[], unknown])[0];
}

/** The first row of a `knex.raw()` SELECT, or undefined when it returned none. */
export function firstRowOf<T>(result: unknown): T | undefined {
  return rowsOf<T>(result)[0];
}

/** A COUNT(*) or other small integer as mysql2 hands it over (a string with `bigNumberStrings`). */
export function countOf(value: string | number | null | undefined): number {
  return Number(value ?? 0);
}

/**
 * Money from SQL: a BIGINT column or a SUM() (DECIMAL, so a string, possibly "12.000") converted
 * deliberately to bigint. NULL (SUM over no rows) is zero.
 */
export function minorOf(value: string | number | null | undefined): bigint {
  return parseMinor(value ?? null);
}

/** MySQL/MariaDB's "table doesn't exist" (errno 1146): a database set up before the table's sql file. */
export function isMissingTable(err: unknown): boolean {
  return (err as { errno?: number } | null)?.errno === 1146;
}
