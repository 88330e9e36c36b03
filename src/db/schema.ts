import { readdirSync, readFileSync } from 'node:fs';
import { redactUrl } from '../config/redact.js';
import { ServiceUnavailableError } from '../errors.js';
import { createDatabase } from './knex.js';
const SQL_DIR = new URL('../../sql/', import.meta.url);

/** The statements of every `sql/*.sql` file, in file-name order. */
export function schemaStatements(): string[] {
  const files = readdirSync(SQL_DIR)
    .filter((f) => f.endsWith('.sql'))
    .sort();
  return files.flatMap((file) =>
    readFileSync(new URL(file, SQL_DIR), 'utf8')
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('--'))
      .join('\n')
      .split(/;\s*(?:\n|$)/)
      .map((s) => s.trim())
      .filter(Boolean),
  );
}

/** Creates the database when missing (connecting without one), then applies the schema. Idempotent. */
export async function ensureSchema(databaseUrl: string, databaseName: string): Promise<void> {
  const server = createDatabase({ databaseUrl, databaseName: null, poolMax: 1 });
  try {
    await server.raw(`CREATE DATABASE IF NOT EXISTS ?? CHARACTER SET utf8mb4`, [databaseName]);
  } catch (err) {
    throw new ServiceUnavailableError('database', redactUrl(databaseUrl), err);
  } finally {
    await server.destroy();
  }
  const db = createDatabase({ databaseUrl, databaseName, poolMax: 1 });
  try {
    for (const statement of schemaStatements()) await db.raw(statement);
  } finally {
    await db.destroy();
  }
}

/** Drops a database (tests and bench reset their namespace with it). */
export async function dropDatabase(databaseUrl: string, databaseName: string): Promise<void> {
  const server = createDatabase({ databaseUrl, databaseName: null, poolMax: 1 });
  try {
    await server.raw(`DROP DATABASE IF EXISTS ??`, [databaseName]);
  } finally {
    await server.destroy();
  }
}
