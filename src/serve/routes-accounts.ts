import type { FastifyInstance } from 'fastify';
import { findCustomerAccount, outcomeCounts, pageAccounts, pageHistory, pageStatement, pendingCount } from '../db/api-accounts.js';
import type { Outcome } from '../db/api-submissions.js';
import { TRANSACTION_TYPES } from '../domain/transaction.js';
import { forbidden, invalid, notFound } from './api-error.js';
import { principalOf } from './auth.js';
import { decodeCursor, pageOf } from './cursor.js';
import { mayActFor, type Principal } from './principal.js';
import type { ServeContext } from './serve-context.js';

const accountParams = { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] } as const;

function limitSchema(max: number) {
  return { type: 'integer', minimum: 1, maximum: max, default: Math.min(50, max) } as const;
}

/** Reading another account by its id is a 403: the id was the caller's to choose, so nothing leaks. */
function checkAccount(principal: Principal, accountId: number): void {
  if (!mayActFor(principal, accountId)) throw forbidden(`this token may not read account ${accountId}`);
}

function outcomeJson(o: Outcome) {
  return {
    id: o.id,
    status: o.status,
    type: o.type,
    amountMinor: o.amountMinor?.toString() ?? null,
    currency: o.currency,
    balanceAfterMinor: o.balanceAfterMinor?.toString() ?? null,
    reason: o.reason,
    detail: o.detail,
    createdAt: o.createdAt?.toISOString() ?? null,
    processedAt: o.processedAt.toISOString(),
  };
}

/** `GET /v1/accounts`, `/v1/accounts/{id}`, `/v1/accounts/{id}/transactions`, `/v1/accounts/{id}/statement`. */
export function accountRoutes(app: FastifyInstance, ctx: ServeContext): void {
  const max = ctx.options.pageSizeMax;

  app.get<{ Querystring: { cursor?: string; limit: number } }>(
    '/v1/accounts',
    {
      schema: {
        summary: 'Customer accounts, by id (an account token sees its own)',
        tags: ['accounts'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { cursor: { type: 'string' }, limit: limitSchema(max), token: { type: 'string' } },
        },
        security: [{ bearer: [] }],
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { limit } = request.query;
      const afterId = request.query.cursor ? Number(decodeCursor(request.query.cursor, (k) => Number.isSafeInteger(k.id)).id) : 0;
      const accounts = await pageAccounts(ctx.db, { afterId, limit, onlyId: principal.kind === 'account' ? principal.accountId : null });
      const page = pageOf(accounts, limit, (a) => ({ id: a.id }));
      return {
        items: page.items.map((a) => ({ id: a.id, name: a.name, currency: a.currency, balanceMinor: a.balanceMinor.toString() })),
        nextCursor: page.nextCursor,
      };
    },
  );

  app.get<{ Params: { id: number } }>(
    '/v1/accounts/:id',
    {
      schema: {
        summary: 'One account: balance, currency, counts of outcomes',
        tags: ['accounts'],
        params: accountParams,
        security: [{ bearer: [] }],
      },
    },
    async (request) => {
      const { id } = request.params;
      checkAccount(principalOf(request), id);
      const account = await findCustomerAccount(ctx.db, id);
      if (!account) throw notFound(`account ${id}`);
      const [counts, pending] = await Promise.all([outcomeCounts(ctx.db, id), pendingCount(ctx.db, id)]);
      return {
        id,
        name: account.name,
        currency: account.currency,
        balanceMinor: account.balanceMinor.toString(),
        counts: { ...counts, pending },
        createdAt: account.createdAt.toISOString(),
      };
    },
  );

  app.get<{
    Params: { id: number };
    Querystring: { status?: 'applied' | 'rejected'; type?: string; from?: string; to?: string; cursor?: string; limit: number };
  }>(
    '/v1/accounts/:id/transactions',
    {
      schema: {
        summary: "An account's transactions, newest first",
        tags: ['accounts'],
        params: accountParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { enum: ['applied', 'rejected'] },
            type: { enum: [...TRANSACTION_TYPES, 'opening'] },
            from: { type: 'string', format: 'date-time', description: 'processed at or after (ISO 8601)' },
            to: { type: 'string', format: 'date-time', description: 'processed before (ISO 8601)' },
            cursor: { type: 'string' },
            limit: limitSchema(max),
            token: { type: 'string' },
          },
        },
        security: [{ bearer: [] }],
      },
    },
    async (request) => {
      const { id } = request.params;
      checkAccount(principalOf(request), id);
      const q = request.query;
      const from = q.from ? new Date(q.from) : null;
      const to = q.to ? new Date(q.to) : null;
      if (from && to && from > to) throw invalid('from is after to', [{ path: '/from', message: 'must not be after to' }]);
      const before = q.cursor
        ? decodeCursor(q.cursor, (k) => typeof k.at === 'string' && !Number.isNaN(Date.parse(k.at)) && typeof k.id === 'string')
        : null;
      const rows = await pageHistory(ctx.db, {
        accountId: id,
        status: q.status ?? null,
        type: q.type ?? null,
        from,
        to,
        before: before ? { processedAt: new Date(before.at as string), id: before.id as string } : null,
        limit: q.limit,
      });
      const page = pageOf(rows, q.limit, (o) => ({ at: o.processedAt.toISOString(), id: o.id }));
      return { items: page.items.map(outcomeJson), nextCursor: page.nextCursor };
    },
  );

  app.get<{ Params: { id: number }; Querystring: { cursor?: string; limit: number } }>(
    '/v1/accounts/:id/statement',
    {
      schema: {
        summary: "An account's statement lines from the accounting system, latest first",
        tags: ['accounts'],
        params: accountParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { cursor: { type: 'string' }, limit: limitSchema(max), token: { type: 'string' } },
        },
        security: [{ bearer: [] }],
      },
    },
    async (request) => {
      const { id } = request.params;
      checkAccount(principalOf(request), id);
      const beforeSeq = request.query.cursor ? Number(decodeCursor(request.query.cursor, (k) => Number.isSafeInteger(k.seq)).seq) : null;
      const lines = await pageStatement(ctx.db, { accountId: id, beforeSeq, limit: request.query.limit });
      const page = pageOf(lines, request.query.limit, (l) => ({ seq: l.accountSeq }));
      return {
        items: page.items.map((l) => ({
          accountSeq: l.accountSeq,
          transactionId: l.transactionId,
          type: l.type,
          outcome: l.outcome,
          reason: l.reason,
          amountMinor: l.amountMinor?.toString() ?? null,
          currency: l.currency,
          balanceAfterMinor: l.balanceAfterMinor?.toString() ?? null,
          occurredAt: l.occurredAt.toISOString(),
        })),
        nextCursor: page.nextCursor,
      };
    },
  );
}
