import type { Knex } from './knex.js';
import { countOf, rowsOf } from './rows.js';

/**
 * A query for the rows that break one invariant: `countSql` counts them (one row, column `n`),
 * `examplesSql` lists them (the runner appends its LIMIT). `Row` is the shape `examplesSql` selects;
 * it is only a type (never set), so each query states its columns once.
 */
export interface ViolationQuery<Row> {
  readonly countSql: string;
  readonly examplesSql: string;
  readonly row?: Row;
}

/** The two SQL texts of a check written as one FROM … clause and the columns its examples show. */
export function violationsFrom<Row>(fromSql: string, select: string): ViolationQuery<Row> {
  return { countSql: `SELECT COUNT(*) AS n FROM (SELECT 1 AS one ${fromSql}) x`, examplesSql: `SELECT ${select} ${fromSql}` };
}

/** How many rows break the invariant. */
export async function countViolations(db: Knex, query: ViolationQuery<unknown>): Promise<number> {
  return countOf(rowsOf<{ n: string | number }>(await db.raw(query.countSql))[0]?.n);
}

/** Up to `limit` of the rows that break the invariant. */
export async function violatingRows<Row>(db: Knex, query: ViolationQuery<Row>, limit: number): Promise<Row[]> {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`bad example limit ${limit}`);
  return rowsOf<Row>(await db.raw(`${query.examplesSql} LIMIT ${limit}`));
}
