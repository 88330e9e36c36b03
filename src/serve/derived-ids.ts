import { randomBytes } from 'node:crypto';
import { findSubmission } from '../db/api-submissions.js';
import type { Knex } from '../db/knex.js';
import { isMissingTable } from '../db/rows.js';
import { createOrReadServeIdKey, type ServeIdKeyRow } from '../db/serve-id-keys.js';
import { keyedUuid, TXSIM_UUID_NAMESPACE, uuidV5 } from '../domain/ids.js';
import { NotFoundError } from '../errors.js';

/** Where the text an id is derived from came from: an `Idempotency-Key` header, or a webhook's `transaction_id`. */
export type DerivedIdSource = 'idempotency-key' | 'webhook';

/**
 * Ids derived from a client's text: an `Idempotency-Key` or a webhook's `transaction_id`, per
 * account. They must be stable (a repeat names the same transaction, on any server of the
 * namespace) and unpredictable (an id anyone could compute is an id another account can take first:
 * it would then answer the rightful owner 409 forever). So they are HMAC-SHA256 under a random
 * per-namespace secret kept in the database: the first server that needs it creates it, every other
 * one reads the same row.
 *
 * A namespace whose API accepted transactions before the secret existed may hold ids derived the
 * earlier way (a UUIDv5 of the text). Such an id is used again only when its submission belongs to
 * the same account — so a request repeated across the upgrade is still a repeat, and an id another
 * account took is never honoured for the owner. That costs one primary-key read per derived id, and
 * only in those namespaces.
 */
export class DerivedIds {
  private key: Promise<ServeIdKeyRow> | null = null;

  constructor(
    private readonly db: Knex,
    private readonly namespace: string,
  ) {}

  /** Reads the key, creating it on first use. Kept once read; a failed read is tried again by the next call. */
  load(): Promise<ServeIdKeyRow> {
    this.key ??= this.readKey().catch((err: unknown) => {
      this.key = null;
      throw err;
    });
    return this.key;
  }

  /** The transaction id for `text` from `source`, for `accountId`. */
  async idFor(source: DerivedIdSource, accountId: number, text: string): Promise<string> {
    const key = await this.load();
    if (key.legacyIds) {
      const legacy = legacyDerivedId(this.namespace, source, accountId, text);
      if ((await findSubmission(this.db, legacy))?.accountId === accountId) return legacy;
    }
    // JSON: the fields cannot run into each other whatever the text holds.
    return keyedUuid(key.secret, JSON.stringify([source, accountId, text]));
  }

  private async readKey(): Promise<ServeIdKeyRow> {
    try {
      const key = await createOrReadServeIdKey(this.db, this.namespace, randomBytes(32));
      if (!key) throw new Error(`serve_id_keys has no row for ${this.namespace} after inserting one`);
      return key;
    } catch (err) {
      if (isMissingTable(err)) throw new NotFoundError('table serve_id_keys does not exist: run txsim setup (sql/014-serve-id-keys.sql)');
      throw err;
    }
  }
}

/** The id the API derived before the key existed: a public UUIDv5 of the namespace, the account and the text. */
export function legacyDerivedId(namespace: string, source: DerivedIdSource, accountId: number, text: string): string {
  return uuidV5(TXSIM_UUID_NAMESPACE, `${namespace}:${source}:${accountId}:${text}`);
}
