import type { FastifyInstance } from 'fastify';
import { dailyFigures, trafficDays } from '../db/api-accounts.js';
import { TRANSACTION_TYPES } from '../domain/transaction.js';
import { forbidden, invalid } from './api-error.js';
import { principalOf } from './auth.js';
import type { ServeContext } from './serve-context.js';

const DAY = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$', format: 'date' } as const;

/** `GET /v1/analytics/daily`: per day, type and currency, count, total and average of applied amounts. */
export function analyticsRoutes(app: FastifyInstance, ctx: ServeContext): void {
  app.get<{ Querystring: { from?: string; to?: string; account?: number; type?: string } }>(
    '/v1/analytics/daily',
    {
      schema: {
        summary: 'Daily count, total and average amount per type and currency (applied transactions)',
        description: 'Defaults: from the first to the last day with traffic. An account token sees its own account only.',
        tags: ['analytics'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            from: DAY,
            to: DAY,
            account: { type: 'integer', minimum: 1 },
            type: { enum: [...TRANSACTION_TYPES] },
            token: { type: 'string' },
          },
        },
        security: [{ bearer: [] }],
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const q = request.query;
      // Another account's id is a 403, as for GET /v1/accounts/{id}: the caller chose it, so nothing leaks.
      if (principal.kind === 'account' && q.account !== undefined && q.account !== principal.accountId)
        throw forbidden(`this token may not read account ${q.account}`);
      const accountId = principal.kind === 'account' ? principal.accountId : (q.account ?? null);
      const span = q.from && q.to ? null : await trafficDays(ctx.db, accountId);
      const from = q.from ?? span?.first ?? null;
      const to = q.to ?? span?.last ?? null;
      if (from === null || to === null) return { from, to, days: [] };
      if (from > to) throw invalid('from is after to', [{ path: '/from', message: `must not be after to (${to})` }]);
      const figures = await dailyFigures(ctx.db, { from, to, accountId, type: q.type ?? null });
      return {
        from,
        to,
        days: figures.map((f) => ({
          day: f.day,
          type: f.type,
          currency: f.currency,
          count: f.count,
          totalMinor: f.totalMinor.toString(),
          averageMinor: f.averageMinor,
        })),
      };
    },
  );
}
