import type { Knex } from '../db/knex.js';
import { countViolations, violatingRows, type ViolationQuery } from '../db/violations.js';

/** Examples each check (and each list of lost or missing ids) shows: a few to start digging from. */
export const EXAMPLES = 5;

/** One invariant check: how many violations, and a few examples to start digging from. */
export interface CheckResult {
  readonly name: string;
  readonly description: string;
  readonly violations: number;
  readonly examples: string[];
}

/**
 * One invariant as data: its name (stable, for scripts), what it means (for people), the query for
 * the rows that break it, and how one such row reads as an example. A check passes when no row
 * breaks it.
 */
export interface CheckDefinition<Row> {
  readonly name: string;
  readonly description: string;
  readonly query: ViolationQuery<Row>;
  example(row: Row): string;
}

/** A check, typed by its row shape while lists hold checks of different shapes (see AnyCheck). */
export function defineCheck<Row>(definition: CheckDefinition<Row>): CheckDefinition<Row> {
  return definition;
}

/** A check of any row shape (a list of checks mixes them; `example` is a method, so this is sound enough). */
export type AnyCheck = CheckDefinition<unknown>;

/** Where the runner reads from: the database, or a fake in unit tests. */
export interface ViolationReader {
  count(query: ViolationQuery<unknown>): Promise<number>;
  rows<Row>(query: ViolationQuery<Row>, limit: number): Promise<Row[]>;
}

export function databaseReader(db: Knex): ViolationReader {
  return { count: (query) => countViolations(db, query), rows: (query, limit) => violatingRows(db, query, limit) };
}

/** The result of a check from its violation count and the example rows read for it. */
export function judge<Row>(check: CheckDefinition<Row>, violations: number, rows: readonly Row[]): CheckResult {
  return {
    name: check.name,
    description: check.description,
    violations,
    examples: violations > 0 ? rows.slice(0, EXAMPLES).map((r) => check.example(r)) : [],
  };
}

/**
 * Runs checks one after the other (each may be a full scan; running them at once would only load the
 * database the workers are using). Examples are read only when there is something to show.
 */
export async function runChecks(reader: ViolationReader, checks: readonly AnyCheck[]): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    const violations = await reader.count(check.query);
    const rows = violations > 0 ? await reader.rows(check.query, EXAMPLES) : [];
    results.push(judge(check, violations, rows));
  }
  return results;
}
