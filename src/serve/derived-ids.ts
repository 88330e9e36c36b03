import { randomBytes } from 'node:crypto';
import { findSubmissionAccounts } from '../db/api-submissions.js';
import type { Knex } from '../db/knex.js';
import { isMissingTable } from '../db/rows.js';
import { createOrReadServeIdKey, type ServeIdKeyRow } from '../db/serve-id-keys.js';
import { keyedUuid, TXSIM_UUID_NAMESPACE, UUID_PATTERN, uuidV5 } from '../domain/ids.js';
import { NotFoundError } from '../errors.js';

/** Where the text an id is derived from came from: an `Idempotency-Key` header, or a webhook's `transaction_id`. */
export type DerivedIdSource = 'idempotency-key' | 'webhook';

/**
 * Ids derived from a client's text: an `Idempotency-Key` or a webhook's `transaction_id`, per
 * account. They must be stable (a repeat names the same transaction, on any server of the
 * namespace) and unpredictable (an id anyone could compute is an id another account can take first:
 * it would then answer the rightful owner 409 forever). So they are HMAC-SHA256 under a random
 * per-namespace secret kept in the database: the first server that needs it creates it, every other
 * one reads the same row. A text that is itself a UUID is derived like any other (taken as the id, it
 * would be an id that whoever learns the key can post under first), after lowercasing: one UUID
 * written in either case is one key, as it was when it was the id.
 *
 * Ids the API gave such texts before are still used when their submission belongs to the same
 * account and the keyed id was never used — so a request repeated across an upgrade is still a
 * repeat, an id another account took is never honoured for the owner, and a text that has given its
 * keyed id keeps it:
 * - a UUID text was taken as the id itself, in every namespace until now: one query of two primary
 *   keys for each such text, always;
 * - any other text gave a UUIDv5 of it before the secret existed: the same query per derived id, only
 *   in namespaces whose API accepted transactions then (`legacyIds`).
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
    const isUuid = UUID_PATTERN.test(text);
    const name = isUuid ? text.toLowerCase() : text;
    // JSON: the fields cannot run into each other whatever the text holds.
    const derived = keyedUuid(key.secret, JSON.stringify([source, accountId, name]));
    const earlier = isUuid ? name : key.legacyIds ? legacyDerivedId(this.namespace, source, accountId, text) : null;
    if (earlier === null) return derived;
    // Once the text has given its keyed id, that id stays its id: a submission posted later under the
    // earlier id (the account may send that UUID as an explicit id) must not turn a repeat into another transaction.
    const owners = await findSubmissionAccounts(this.db, [derived, earlier]);
    return !owners.has(derived) && owners.get(earlier) === accountId ? earlier : derived;
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
