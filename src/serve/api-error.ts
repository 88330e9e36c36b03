import type { ErrorObject } from 'ajv';

/** One violation of a request: where (a JSON pointer into the body or the query) and what is wrong. */
export interface Violation {
  readonly path: string;
  readonly message: string;
}

/**
 * An error answered as `{ error: { code, message, details } }` with its HTTP status. Thrown by route
 * handlers; the server's one error handler turns it (and Fastify's own errors) into the response.
 */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
    /** Seconds for a `Retry-After` header (503, 429). */
    readonly retryAfterS: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const notFound = (what: string) => new ApiError(404, 'not_found', `${what} not found`);
export const forbidden = (message: string) => new ApiError(403, 'forbidden', message);
export const invalid = (message: string, details: Violation[] = []) => new ApiError(400, 'invalid_request', message, details);

/** The body of an error response. */
export function errorBody(
  code: string,
  message: string,
  details: unknown = null,
): { error: { code: string; message: string; details: unknown } } {
  return { error: { code, message, details } };
}

/**
 * Every violation Ajv found, as path + message, e.g. `/amountMinor` `must be >= 1`, `/merchant` `is
 * required`. `if`/`then` wrappers are dropped: the error inside them says what is wrong.
 */
export function violationsOf(errors: readonly ErrorObject[], root = ''): Violation[] {
  const out: Violation[] = [];
  for (const e of errors) {
    const at = `${root}${e.instancePath}`;
    switch (e.keyword) {
      case 'if':
        break;
      case 'required':
        out.push({ path: `${at}/${(e.params as { missingProperty: string }).missingProperty}`, message: 'is required' });
        break;
      case 'additionalProperties':
        out.push({ path: `${at}/${(e.params as { additionalProperty: string }).additionalProperty}`, message: 'is not allowed' });
        break;
      case 'not':
        out.push({ path: `${at}/merchant`, message: 'is only allowed on card_payment' });
        break;
      case 'enum':
        out.push({ path: at || '/', message: `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}` });
        break;
      default:
        out.push({ path: at || '/', message: e.message ?? 'is invalid' });
    }
  }
  return out;
}
