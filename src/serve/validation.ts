import { Ajv, type AnySchema } from 'ajv';
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

/** Fastify's validator compiler: the body validator for bodies, the coercing one for everything else. */
export function compileValidator({ schema, httpPart }: { schema: AnySchema; httpPart?: string }): (data: unknown) => boolean {
  return (httpPart === 'body' ? bodyAjv : queryAjv).compile(schema);
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
