import type { FastifyInstance } from 'fastify';
import { MAX_BODY_BYTES } from '../domain/message-schema.js';
import { ApiError } from './api-error.js';

/** The message of a body that is not JSON, whichever parser found it: `body is not valid JSON (…)`. */
export function notJsonMessage(err: Error): string {
  return `body is not valid JSON (${err.message.slice(0, 80)})`;
}

/**
 * Replaces a Fastify scope's JSON body parser with `read` (the raw text in, the body out), for the
 * routes that must see a number as it was written, not as a float. An ApiError from `read` is
 * answered as it is; anything else it throws (JSON.parse's SyntaxError) is a 400 `invalid_json`, as
 * from the default parser. The body limit stays the server's.
 */
export function readJsonBodiesWith(scope: FastifyInstance, read: (text: string) => unknown): void {
  scope.removeContentTypeParser('application/json');
  scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: MAX_BODY_BYTES }, (_request, body, done) => {
    try {
      done(null, read(body as string));
    } catch (err) {
      done(err instanceof ApiError ? err : new ApiError(400, 'invalid_json', notJsonMessage(err as Error)), undefined);
    }
  });
}
