import { createHash, createHmac } from 'node:crypto';

/** A UUID in either case: ids from outside (flags, requests, message ids) are lowercased after this check. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** The same as a JSON Schema `pattern` (no flags there): `format: uuid` alone also takes `urn:uuid:…`, 45 characters, which no id column holds. */
export const UUID_SCHEMA_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** A UUID as txsim writes one: lowercase, as the event contracts require. */
export const LOWERCASE_UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Namespace UUID of txsim's name-based ids (RFC 4122 version 5). */
export const TXSIM_UUID_NAMESPACE = '6f1c2d3e-9a8b-4c7d-8e6f-5a4b3c2d1e0f';

/** RFC 4122 version-5 UUID: the same namespace and name always give the same id. */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  return formatUuid(createHash('sha1').update(ns).update(name, 'utf8').digest(), 5);
}

/** The first 16 of `bytes` as an RFC 9562 UUID of `version` (its version and variant bits set in place). */
function formatUuid(bytes: Buffer, version: 5 | 8): string {
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | (version << 4);
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80; // RFC variant
  const hex = bytes.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * An RFC 9562 version-8 UUID of HMAC-SHA256(`key`, `name`): the same key and name always give the same
 * id, and without the key nobody can compute it. Ids derived from text a client chose (an
 * Idempotency-Key, a webhook's transaction_id) are made this way: a name-based v5 UUID of that text is
 * public arithmetic, so another account could take the id first.
 */
export function keyedUuid(key: Buffer, name: string): string {
  return formatUuid(createHmac('sha256', key).update(name, 'utf8').digest(), 8);
}

/** Run id of a gen run: derived from the seed, so a re-run with the same seed re-sends the same ids. */
export function runIdForSeed(seed: string): string {
  return uuidV5(TXSIM_UUID_NAMESPACE, `run:${seed}`);
}

/**
 * Id of the index-th transaction of a run. `verify` regenerates these to account for every one.
 *
 * An RFC 9562 version-8 (custom) UUID: ten bytes derived from the run, then the index big-endian in
 * the last six. The ids of a run are therefore deterministic (same seed, same ids) and ascending
 * in index order, so the database appends them to its primary-key and ledger indexes instead of
 * scattering every insert over the whole index (random keys outgrow the buffer pool at a million rows).
 */
export function transactionIdFor(runId: string, index: number): string {
  if (!Number.isSafeInteger(index) || index < 0 || index >= 2 ** 48) throw new RangeError(`transaction index ${index} out of range`);
  const bytes = Buffer.alloc(16);
  createHash('sha1').update(runId).update('tx-ids').digest().copy(bytes, 0, 0, 10);
  bytes.writeUIntBE(index, 10, 6);
  return formatUuid(bytes, 8);
}

/** Id of the opening-balance transaction of an account (one per account, so seeding is idempotent). */
export function openingTransactionId(accountId: number): string {
  return uuidV5(TXSIM_UUID_NAMESPACE, `opening:${accountId}`);
}
