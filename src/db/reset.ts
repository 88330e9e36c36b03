import { redactUrl } from '../config/redact.js';
import { ServiceUnavailableError } from '../errors.js';
import { createDatabase } from './knex.js';

/** SQL of `txsim reset`: whether a namespace's database exists, and dropping it. */

/** True when the server has a database of this name. Throws ServiceUnavailableError when unreachable. */
export async function databaseExists(databaseUrl: string, databaseName: string): Promise<boolean> {
  const server = createDatabase({ databaseUrl, databaseName: null, poolMax: 1 });
  try {
    const [rows] = (await server.raw('SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [
      databaseName,
    ])) as [{ name: string }[]];
    return rows.length > 0;
  } catch (err) {
    throw new ServiceUnavailableError('database', redactUrl(databaseUrl), err);
  } finally {
    await server.destroy();
  }
}

/** Drops the database; true when it existed (and is now gone), false when there was none. */
export async function dropDatabaseIfExists(databaseUrl: string, databaseName: string): Promise<boolean> {
  if (!(await databaseExists(databaseUrl, databaseName))) return false;
  const server = createDatabase({ databaseUrl, databaseName: null, poolMax: 1 });
  try {
    await server.raw('DROP DATABASE IF EXISTS ??', [databaseName]);
    return true;
  } catch (err) {
    throw new ServiceUnavailableError('database', redactUrl(databaseUrl), err);
  } finally {
    await server.destroy();
  }
}
