import type { Knex } from './knex.js';
import { rowsOf } from './rows.js';

/** A namespace's id key (sql/014-serve-id-keys.sql). */
export interface ServeIdKeyRow {
  readonly secret: Buffer;
  /** The API accepted transactions before the key existed: ids derived the earlier way may be in use. */
  readonly legacyIds: boolean;
}

/**
 * The namespace's key, created with `proposed` as its secret if it has none yet (INSERT IGNORE, then
 * read: every server of the namespace ends up with the same one, whoever wrote it first). Null only if
 * the row is missing after the insert.
 */
export async function createOrReadServeIdKey(db: Knex, namespace: string, proposed: Buffer): Promise<ServeIdKeyRow | null> {
  await db.raw(
    `INSERT IGNORE INTO serve_id_keys (namespace, secret, legacy_ids, created_at)
     SELECT ?, ?, EXISTS (SELECT 1 FROM api_submissions), NOW(3)`,
    [namespace, proposed],
  );
  const row = rowsOf<{ secret: Buffer; legacy_ids: number }>(
    await db.raw('SELECT secret, legacy_ids FROM serve_id_keys WHERE namespace = ?', [namespace]),
  )[0];
  return row ? { secret: row.secret, legacyIds: Number(row.legacy_ids) === 1 } : null;
}
