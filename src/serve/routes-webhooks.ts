import type { FastifyInstance } from 'fastify';
import type { TransactionMessage } from '../domain/transaction.js';
import { invalid } from './api-error.js';
import { principalOf } from './auth.js';
import { parseJsonKeepingNumberText } from '../domain/json-number-text.js';
import { decimalToMinor } from './decimal-amount.js';
import { readJsonBodiesWith } from './json-body.js';
import type { ServeContext } from './serve-context.js';
import { submitTransaction } from './submit.js';

interface WebhookBody {
  transaction_id: string;
  source_account: number;
  destination_account?: number | null;
  /** The decimal's text, whether it came as a JSON number or a string (see the body parser). */
  amount: string;
  currency: string;
}

/**
 * The webhook-ingest contract mapped onto contract v1:
 * - `transaction_id` → `id`, a UUID derived from it (any text, a UUID too) and the source account
 *   under the namespace's secret, so repeats of the same webhook deduplicate and nobody else can
 *   compute it;
 * - `source_account` → `accountId`, and the transaction is a `withdrawal`: money leaves the source;
 * - `amount` (a decimal, as a JSON number or a string) → `amountMinor`, from its text, in the
 *   currency's minor unit (more decimals than the currency has → 400);
 * - `destination_account` is recorded with the submission and shown in its status, but moves no money
 *   (a webhook is a withdrawal, not a transfer).
 */
export function webhookRoutes(app: FastifyInstance, ctx: ServeContext): void {
  // Encapsulated: this JSON parser keeps the amount's text and applies to this route only.
  void app.register((scope, _options, done) => {
    readJsonBodiesWith(scope, (text) => parseJsonKeepingNumberText(text, new Set(['amount'])));
    scope.post<{ Body: WebhookBody }>(
      '/v1/webhooks/transactions',
      {
        schema: {
          summary: 'Webhook ingest: a payment from source_account, amount as a decimal; 202 once queued',
          tags: ['transactions'],
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['transaction_id', 'source_account', 'amount', 'currency'],
            properties: {
              transaction_id: { type: 'string', minLength: 1, maxLength: 200 },
              source_account: { type: 'integer', minimum: 1, maximum: 9007199254740991 },
              destination_account: { type: ['integer', 'null'], minimum: 1, maximum: 9007199254740991 },
              amount: { type: 'string', description: 'A decimal such as 100.50, as a JSON number or a string' },
              currency: { type: 'string', pattern: '^[A-Z]{3}$' },
            },
          },
          security: [{ bearer: [] }],
        },
      },
      async (request, reply) => {
        const body = request.body;
        const amount = decimalToMinor(body.amount, body.currency);
        if (!amount.ok) throw invalid('amount is not a valid amount of the currency', [{ path: '/amount', message: amount.reason }]);
        // Derived per source account (two accounts' providers may number their orders alike), and
        // keyed, a UUID too: nobody can compute the id ahead of the account and take it (see DerivedIds).
        const id = await ctx.ids.idFor('webhook', body.source_account, body.transaction_id);
        const message: TransactionMessage = {
          id,
          type: 'withdrawal',
          accountId: body.source_account,
          amountMinor: amount.amountMinor,
          currency: body.currency,
          createdAt: new Date().toISOString(),
        };
        const { statusCode, view } = await submitTransaction(ctx, principalOf(request), {
          message,
          source: 'webhook',
          destinationAccount: body.destination_account ?? null,
          runId: null,
        });
        return reply
          .code(statusCode)
          .header('location', `/v1/transactions/${view.id}`)
          .send({ ...view, transaction_id: body.transaction_id });
      },
    );
    done();
  });
}
