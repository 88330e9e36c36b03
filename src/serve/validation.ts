import { Ajv, type AnySchema, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { TRANSACTION_SCHEMA_V1 } from '../domain/message-schema.js';

// ajv-formats is CommonJS; under NodeNext its default export arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/**
 * Validators of the HTTP routes. Bodies are checked as the workers check messages — no type coercion
 * (a string amount stays invalid), no silently removed fields (an unknown field is an error) — but
 * with every violation reported. Query strings and path parameters are text, so they are coerced.
 */
const bodyAjv = new Ajv({ allErrors: true, strict: false, coerceTypes: false, removeAdditional: false, useDefaults: false });
addFormats(bodyAjv);
const queryAjv = new Ajv({ allErrors: true, strict: false, coerceTypes: true, removeAdditional: false, useDefaults: true });
addFormats(queryAjv);

/** A validator as Fastify calls it: false, with `errors` set, when the data is invalid. */
type Validator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

/**
 * Fastify's validator compiler: the body validator for bodies, the coercing one for everything else
 * — where an integer must first be written as plain decimal digits within the safe-integer range.
 * Ajv's coercion alone reads text as JavaScript does: `0x1`, `1e0`, `1.0`, `0b1` and ` 1` would all
 * name account 1, and `99999999999999999999` an account 100000000000000000000.
 */
export function compileValidator({ schema, httpPart }: { schema: AnySchema; httpPart?: string }): Validator {
  // Route schemas are never `$async`: a compiled one answers a boolean.
  if (httpPart === 'body') return bodyAjv.compile(schema) as Validator;
  const validate = queryAjv.compile(schema) as Validator;
  const integers = integerPropertiesOf(schema);
  if (integers.length === 0) return validate;
  const checked: Validator = (data) => {
    const errors = integerTextErrors(data, integers);
    const valid = errors.length === 0 && validate(data);
    checked.errors = errors.length > 0 ? errors : validate.errors;
    return valid;
  };
  return checked;
}

/** The properties of an object schema typed `integer` (alone or beside `null`). */
function integerPropertiesOf(schema: AnySchema): string[] {
  const properties = (typeof schema === 'object' ? (schema as { properties?: Record<string, { type?: unknown }> }).properties : null) ?? {};
  return Object.entries(properties)
    .filter(([, p]) => p.type === 'integer' || (Array.isArray(p.type) && p.type.includes('integer')))
    .map(([name]) => name);
}

/** Why each integer field given as text is not one: not plain decimal digits, or past 2^53 - 1. */
function integerTextErrors(data: unknown, names: readonly string[]): ErrorObject[] {
  if (data === null || typeof data !== 'object') return [];
  const errors: ErrorObject[] = [];
  for (const name of names) {
    const value = (data as Record<string, unknown>)[name];
    if (typeof value !== 'string') continue;
    const error = (message: string): ErrorObject => ({ instancePath: `/${name}`, schemaPath: '', keyword: 'type', params: {}, message });
    if (!/^[0-9]+$/.test(value)) errors.push(error('must be an integer written as plain decimal digits'));
    else if (!Number.isSafeInteger(Number(value))) errors.push(error(`must be at most ${Number.MAX_SAFE_INTEGER}`));
  }
  return errors;
}

type JsonObject = Record<string, unknown>;

/**
 * The body of `POST /v1/transactions`: contract v1 itself (schema/transaction.v1.json), with `id`
 * and `createdAt` optional because the server fills them in when absent. Derived, not restated: a
 * change to the contract changes the route.
 */
export function submitBodySchema(): JsonObject {
  const { $schema: _s, $id: _i, ...contract } = structuredClone(TRANSACTION_SCHEMA_V1) as JsonObject;
  const required = (contract.required as string[]).filter((field) => field !== 'id' && field !== 'createdAt');
  return { ...contract, required };
}
