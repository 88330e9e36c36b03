import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { UUID_SCHEMA_PATTERN } from '../domain/ids.js';
import { firstNonIntegerLiteral } from '../domain/json-number-text.js';
import { nonIntegerDetail } from '../domain/message-schema.js';
import type { TransactionMessage } from '../domain/transaction.js';
import { ApiError, invalid, notFound } from './api-error.js';
import { principalOf } from './auth.js';
import { readJsonBodiesWith } from './json-body.js';
import { mayActFor } from './principal.js';
import type { ServeContext } from './serve-context.js';
import { submitTransaction } from './submit.js';
import { readTransactionView } from './transaction-status.js';
import { submitBodySchema } from './validation.js';

export const ERROR_SCHEMA = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
      required: ['code', 'message'],
    },
  },
} as const;

/**
 * A transaction body parsed as JSON, refusing a number written with a fraction or an exponent: a
 * JSON reader gives `1999.9999999999999` as the integer 2000, which the schema would then accept.
 */
function parseIntegerJson(text: string): unknown {
  const parsed: unknown = JSON.parse(text);
  const found = firstNonIntegerLiteral(text);
  if (found !== null)
    throw invalid(nonIntegerDetail(found), [
      { path: `/${found.key ?? ''}`, message: 'must be an integer written as plain digits (no fraction or exponent)' },
    ]);
  return parsed;
}

/** `POST /v1/transactions` and `GET /v1/transactions/{id}`. */
export function transactionRoutes(app: FastifyInstance, ctx: ServeContext): void {
  // Encapsulated: this JSON parser applies to the POST only.
  void app.register((scope, _options, done) => {
    readJsonBodiesWith(scope, parseIntegerJson);
    postTransaction(scope, ctx);
    done();
  });

  app.get<{ Params: { id: string } }>(
    '/v1/transactions/:id',
    {
      schema: {
        summary:
          'Where a transaction is: accepted, queued, retrying or parked (attempts, last error), applied (balance after) or rejected (reason), with its timeline',
        tags: ['transactions'],
        params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] },
        security: [{ bearer: [] }],
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const view = await readTransactionView(ctx.db, request.params.id.toLowerCase());
      // Another account's transaction is "not found": a 403 would confirm that the id exists.
      if (!view || !mayActFor(principal, view.accountId)) throw notFound(`transaction ${request.params.id}`);
      return view;
    },
  );
}

/** `POST /v1/transactions`: accepted (202) once the broker confirmed it. */
function postTransaction(app: FastifyInstance, ctx: ServeContext): void {
  app.post<{
    Body: Partial<TransactionMessage> & Omit<TransactionMessage, 'id' | 'createdAt'>;
    Headers: { 'idempotency-key'?: string; 'x-txsim-run'?: string };
  }>(
    '/v1/transactions',
    {
      schema: {
        summary: 'Submit a transaction (contract v1); 202 once the broker confirmed it',
        description:
          'The body is a contract-v1 transaction (schema/transaction.v1.json); `id` and `createdAt` are optional. Without `id`, an id derived per account from the `Idempotency-Key` header (any text, a UUID too: never used as the id itself) or a fresh UUID is used.',
        tags: ['transactions'],
        body: submitBodySchema(),
        headers: {
          type: 'object',
          properties: {
            'idempotency-key': { type: 'string', minLength: 1, maxLength: 200 },
            'x-txsim-run': { type: 'string', pattern: UUID_SCHEMA_PATTERN },
          },
        },
        security: [{ bearer: [] }],
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const body = request.body;
      const key = request.headers['idempotency-key'];
      // Derived under the namespace's secret whatever the key is, a UUID too (see DerivedIds).
      const keyId = key === undefined ? undefined : await ctx.ids.idFor('idempotency-key', body.accountId, key);
      if (body.id !== undefined && keyId !== undefined && body.id.toLowerCase() !== keyId) {
        throw invalid(
          'id and Idempotency-Key name different transactions: the key is not the id, an id is derived from it; send one or the other',
          [{ path: '/id', message: 'differs from the id the Idempotency-Key header gives' }],
        );
      }
      const runId = request.headers['x-txsim-run'] ?? null;
      if (runId !== null && principal.kind !== 'admin') throw new ApiError(403, 'forbidden', 'only an admin token may set X-Txsim-Run');
      const message: TransactionMessage = {
        ...body,
        id: (body.id ?? keyId ?? randomUUID()).toLowerCase(),
        createdAt: body.createdAt ?? new Date().toISOString(),
      };
      const { statusCode, view } = await submitTransaction(ctx, principal, { message, source: 'api', destinationAccount: null, runId });
      return reply.code(statusCode).header('location', `/v1/transactions/${view.id}`).send(view);
    },
  );
}
