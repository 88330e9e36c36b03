import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { expect } from 'vitest';

/** The JSON Schemas of the commands' `--json` output (the machine interface). */
const SCHEMA_DIR = new URL('../../schema/output/', import.meta.url);

// ajv-formats is CommonJS; under NodeNext its default export arrives wrapped (as in message-schema.ts).
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
addFormats(ajv);
const validators = new Map<string, ValidateFunction>();

/** The validator of schema/output/<schema>.json, compiled once. */
function validatorOf(schema: string): ValidateFunction {
  let validate = validators.get(schema);
  if (!validate) {
    validate = ajv.compile(JSON.parse(readFileSync(new URL(`${schema}.json`, SCHEMA_DIR), 'utf8')) as object);
    validators.set(schema, validate);
  }
  return validate;
}

/** Asserts that `doc` matches schema/output/<schema>.json, listing every violation when not. */
export function expectValidOutput(schema: string, doc: unknown): void {
  const validate = validatorOf(schema);
  const ok = validate(doc);
  expect(ok ? [] : validate.errors, `${schema}: ${JSON.stringify(doc).slice(0, 2000)}`).toEqual([]);
}
