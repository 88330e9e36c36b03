import type { Knex } from './knex.js';

/** Resolves when the database answers a trivial query; rejects with the driver's error when it does not. */
export async function pingDatabase(db: Knex): Promise<void> {
  await db.raw('SELECT 1');
}
