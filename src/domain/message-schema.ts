import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { storableDate } from './dates.js';
import { UUID_PATTERN, UUID_SCHEMA_PATTERN } from './ids.js';
import { firstNonIntegerLiteral } from './json-number-text.js';
import type { TransactionMessage } from './transaction.js';

// ajv-formats is CommonJS; under NodeNext its default export arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** The JSON Schema of message contract v1, the file in `schema/` (shared with other languages). */
export const TRANSACTION_SCHEMA_V1 = JSON.parse(
  readFileSync(new URL('../../schema/transaction.v1.json', import.meta.url), 'utf8'),
) as object;

// strictRequired is off because the if/then/else blocks name fields declared at the top level.
const ajv = new Ajv({ allErrors: false, strict: true, strictRequired: false });
addFormats(ajv);
/** The one compiled validator: gen validates what it publishes with it, the worker what it consumes. */
export const validateTransaction = ajv.compile<TransactionMessage>(TRANSACTION_SCHEMA_V1);

/** Bodies larger than this are rejected before parsing: no legitimate v1 message comes close. */
export const MAX_BODY_BYTES = 16 * 1024;

export type DecodeResult =
  { ok: true; message: TransactionMessage; bodyHash: string } | { ok: false; detail: string; id: string | null; bodyHash: string };

/**
 * Turns raw delivery bytes into a validated message, or says precisely why not. The id of a bad
 * message is taken from the body when it has a valid one, else from the AMQP `message_id`, so the
 * rejection can still be recorded against it.
 */
export function decodeTransaction(content: Buffer, properties: { contentType?: string; messageId?: string }): DecodeResult {
  const headerId =
    typeof properties.messageId === 'string' && UUID_PATTERN.test(properties.messageId) ? properties.messageId.toLowerCase() : null;
  const malformedHeaderId = typeof properties.messageId === 'string' && headerId === null;
  // A bad message is known by the hash of its bytes; a good one by identityHash (below): hashed once either way.
  const fail = (detail: string, id: string | null = headerId) => ({ ok: false as const, detail, id, bodyHash: sha256(content) });

  if (content.length > MAX_BODY_BYTES) return fail(`body is ${content.length} bytes, more than ${MAX_BODY_BYTES}`);
  const contentType = properties.contentType?.split(';')[0]?.trim().toLowerCase();
  if (contentType !== 'application/json')
    return fail(`content_type is ${contentType ? `"${contentType}"` : 'missing'}, expected application/json`);
  const text = content.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return fail(`body is not valid JSON (${(err as Error).message.slice(0, 80)})`);
  }
  const bodyId =
    typeof parsed === 'object' &&
    parsed !== null &&
    typeof (parsed as { id?: unknown }).id === 'string' &&
    UUID_PATTERN.test((parsed as { id: string }).id)
      ? (parsed as { id: string }).id.toLowerCase()
      : null;
  if (!validateTransaction(parsed)) return fail(describeSchemaError(validateTransaction.errors?.[0]), bodyId ?? headerId);
  if (malformedHeaderId)
    return fail(`message_id ${JSON.stringify(properties.messageId!.slice(0, 80))} is not the body id ${parsed.id}`, bodyId);
  if (headerId !== null && headerId !== parsed.id.toLowerCase())
    return fail(`message_id ${headerId} differs from body id ${parsed.id}`, bodyId);
  const beyond = firstNonIntegerDetail(text) ?? beyondSchemaDetail(parsed);
  if (beyond !== null) return fail(beyond, bodyId);
  const message: TransactionMessage = { ...parsed, id: parsed.id.toLowerCase() };
  return { ok: true, message, bodyHash: identityHash(message) };
}

/**
 * Why a body that passed the schema still holds a number that is not an integer as written: JSON
 * readers give `1999.9999999999999` and `2000.0` as the integer 2000, so the schema cannot tell, and
 * such an amount must not be applied as one. Null when every number is plain digits.
 */
export function firstNonIntegerDetail(text: string): string | null {
  const found = firstNonIntegerLiteral(text);
  return found === null ? null : nonIntegerDetail(found);
}

/** The reason given for a number written with a fraction or exponent, by the worker and by the API alike. */
export function nonIntegerDetail(found: { readonly key: string | null; readonly literal: string }): string {
  return `${found.key ?? 'a number'} is written as ${found.literal.slice(0, 40)}: integers only, as plain digits (no fraction or exponent)`;
}

/**
 * What the schema lets through and the ledger cannot take, for a message the schema accepted: an
 * `expiresAt` that `Date` cannot read or DATETIME cannot hold. Null when there is none.
 */
export function beyondSchemaDetail(message: TransactionMessage): string | null {
  if (message.expiresAt !== undefined && storableDate(message.expiresAt) === null)
    return `expiresAt ${message.expiresAt} is not a time the ledger can keep (years 1000-9999 UTC, no leap second, offsets as +hh:mm)`;
  return null;
}

/** Human-readable, precise reason from the first schema error, e.g. `amountMinor must be >= 1`. */
function describeSchemaError(error: ErrorObject | undefined): string {
  if (!error) return 'does not match contract v1';
  const where = error.instancePath ? error.instancePath.slice(1).replace(/\//g, '.') : 'body';
  switch (error.keyword) {
    case 'required':
      // The one oneOf of the contract: a card_refund names its authorization or one capture.
      if (error.schemaPath.includes('/oneOf/')) return 'authorizationId or captureId is required';
      return `${where === 'body' ? '' : `${where}.`}${(error.params as { missingProperty: string }).missingProperty} is required`;
    case 'oneOf':
      return 'a card_refund names authorizationId or captureId, not both';
    case 'additionalProperties':
      return `unexpected field ${(error.params as { additionalProperty: string }).additionalProperty}`;
    case 'not':
      return notAllowedDetail(error.schemaPath);
    case 'pattern':
      if ((error.params as { pattern: string }).pattern === UUID_SCHEMA_PATTERN) return `${where} must be a UUID (8-4-4-4-12 hex digits)`;
      return `${where} ${error.message ?? 'is invalid'}`;
    case 'enum':
      return `${where} must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    default:
      return `${where} ${error.message ?? 'is invalid'}`;
  }
}

/**
 * Fields only some types may carry, by the index of their if/then/else block in the schema's
 * `allOf` (a `not` error names the block by its schema path, e.g. `#/allOf/1/else/not`).
 */
const TYPE_ONLY_FIELDS: readonly { field: string; types: string }[] = [
  { field: 'merchant', types: 'card_payment, card_authorization' },
  { field: 'toAccountId', types: 'transfer' },
  { field: 'authorizationId', types: 'card_capture, card_void, card_refund' },
  { field: 'final', types: 'card_capture' },
  { field: 'expiresAt', types: 'card_authorization' },
  { field: 'amountMinor', types: 'every type but card_void' },
  { field: 'captureId', types: 'card_refund' },
];

function notAllowedDetail(schemaPath: string): string {
  const block = TYPE_ONLY_FIELDS[Number(/^#\/allOf\/(\d+)\//.exec(schemaPath)?.[1] ?? -1)];
  return block ? `${block.field} is only allowed on ${block.types}` : 'a field is not allowed on this type';
}

/**
 * The identity of a transaction for duplicate detection: every business field, in a fixed order.
 * `createdAt` is left out on purpose so that gen re-run with the same seed (after a crash) produces
 * harmless duplicates rather than conflicts.
 */
export function identityHash(message: TransactionMessage): string {
  const canonical = JSON.stringify([
    message.id,
    message.type,
    message.accountId,
    message.amountMinor,
    message.currency,
    message.merchant ?? null,
    // v1.1 fields are appended only when present, so every v1 message keeps the hash it always had.
    ...(message.toAccountId === undefined ? [] : [message.toAccountId]),
    // Later v1.1 fields, named so that no two messages can give the same array.
    ...(message.authorizationId === undefined ? [] : [['authorizationId', message.authorizationId.toLowerCase()]]),
    ...(message.final === undefined ? [] : [['final', message.final]]),
    ...(message.expiresAt === undefined ? [] : [['expiresAt', message.expiresAt]]),
    ...(message.captureId === undefined ? [] : [['captureId', message.captureId.toLowerCase()]]),
  ]);
  return sha256(Buffer.from(canonical));
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
