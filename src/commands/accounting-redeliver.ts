import type { Command } from 'commander';
import { redeliverFailed, type RedeliverOptions, type RedeliverReport } from '../accounting/redeliver.js';
import { DEFAULT_RETRY_POLICY } from '../accounting/webhook-delivery.js';
import { parseIntFlag } from '../config/parse.js';
import { redactUrl } from '../config/redact.js';
import { checkDatabase, createDatabase } from '../db/knex.js';
import { NotFoundError, PublishIncompleteError, UsageError } from '../errors.js';
import { webhookSecretFrom, WEBHOOK_SECRET_ENV } from './accounting.js';
import { collect, contextFor, shutdownSignal, type CommandContext } from './context.js';
import { plural, table, toJson } from './format.js';
import { UUID_PATTERN } from '../domain/ids.js';

export interface RedeliverCommandOptions extends RedeliverOptions {
  readonly attemptTimeoutMs: number;
  readonly json: boolean;
}

/**
 * Re-sends failed webhook deliveries and prints each outcome. Exit 6 when some failed again, 5 when
 * a requested --id has no failed delivery (after the others were sent).
 */
export async function handleRedeliver(
  ctx: CommandContext,
  options: RedeliverCommandOptions,
  signal: AbortSignal,
): Promise<RedeliverReport> {
  const { config } = ctx;
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 2 });
  // undici is loaded only by the commands that make HTTP requests: the worker's process never needs it.
  const { WebhookClient } = await import('../accounting/webhook-client.js');
  const transport = new WebhookClient({ attemptTimeoutMs: options.attemptTimeoutMs, connectionsMax: 1 });
  let report: RedeliverReport;
  try {
    await checkDatabase(db, config.databaseUrl, config.databaseName);
    report = await redeliverFailed({ db, transport }, options, signal);
  } finally {
    await transport.close();
    await db.destroy().catch(() => {});
  }
  ctx.out(options.json ? toJson(report) : formatRedeliverReport(report));
  if (report.failed > 0)
    throw new PublishIncompleteError(
      `${plural(report.failed, 'webhook delivery', 'webhook deliveries')} failed again (still recorded as failed)`,
    );
  if (report.notFailed.length > 0)
    throw new NotFoundError(`${plural(report.notFailed.length, 'requested id')} had no failed webhook delivery`);
  return report;
}

/** The text form: one row per re-sent delivery, then a summary line. */
export function formatRedeliverReport(report: RedeliverReport): string {
  const lines: string[] = [];
  if (report.deliveries.length > 0) {
    lines.push(
      table(
        ['event', 'outcome', 'attempts', 'status', 'error'],
        report.deliveries.map((d) => [d.eventId, d.status, d.attempts, d.responseStatus ?? '', d.lastError ?? '']),
      ),
      '',
    );
  }
  lines.push(
    `redelivered ${plural(report.deliveries.length, 'failed webhook')}: ${report.delivered} delivered, ${report.failed} failed again${report.skipped > 0 ? `, ${report.skipped} left for later (stopped)` : ''}`,
  );
  for (const n of report.notFailed) lines.push(`not failed: ${n.eventId} (${n.status ?? 'no webhook delivery'})`);
  return lines.join('\n');
}

/** Registers `txsim accounting redeliver` under the `accounting` command. */
export function registerAccountingRedeliver(accounting: Command): void {
  accounting
    .command('redeliver')
    .description('send webhook deliveries that ended failed again (same signed body and idempotency key) and record the outcome')
    .option('--failed', 'every failed delivery (up to --limit)')
    .option('--id <eventId>', 'only this event id (repeatable)', collect)
    .option('--webhook <url>', 'send here instead of the URL each delivery was recorded with (needed when that URL had a password)')
    .option('--limit <n>', 'most deliveries re-sent', '1000')
    .option('--webhook-timeout <ms>', 'longest one attempt may take', '5000')
    .option('--webhook-give-up <s>', 'stop retrying a re-send that keeps getting 5xx or no answer after this long', '30')
    .option('--json', 'JSON output')
    .addHelpText(
      'after',
      `
The secret comes from $${WEBHOOK_SECRET_ENV}, as for \`txsim accounting --webhook\`. Only deliveries
recorded as failed are sent; a 2xx records them delivered, anything else records the new failure.
Exit code 6 when some failed again, 5 when an --id has no failed delivery.

Example:
  $ txsim accounting redeliver --failed
  $ txsim accounting redeliver --id 9b1c0e5e-3f1a-4c55-9d7e-0a1b2c3d4e5f --webhook http://127.0.0.1:8080/hooks

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(
      async (
        opts: {
          failed?: boolean;
          id?: string[];
          webhook?: string;
          limit: string;
          webhookTimeout: string;
          webhookGiveUp: string;
          json?: boolean;
        },
        command: Command,
      ) => {
        if (!opts.failed && (opts.id ?? []).length === 0)
          throw new UsageError('redeliver: say which deliveries: --failed (all of them) or --id <eventId>');
        const ids = opts.id?.map((id) => {
          if (!UUID_PATTERN.test(id)) throw new UsageError(`--id: "${id}" is not an event id (a UUID)`);
          return id.toLowerCase();
        });
        if (opts.webhook !== undefined) parseUrl(opts.webhook);
        const ctx = contextFor(command);
        await handleRedeliver(
          ctx,
          {
            eventIds: ids && ids.length > 0 ? [...new Set(ids)] : null,
            limit: parseIntFlag('--limit', opts.limit, 1000, 1, 100_000),
            url: opts.webhook ?? null,
            secret: webhookSecretFrom(process.env),
            policy: { ...DEFAULT_RETRY_POLICY, giveUpAfterMs: parseIntFlag('--webhook-give-up', opts.webhookGiveUp, 30, 0, 86_400) * 1000 },
            attemptTimeoutMs: parseIntFlag('--webhook-timeout', opts.webhookTimeout, 5_000, 100, 120_000),
            json: Boolean(opts.json),
          },
          shutdownSignal(ctx),
        );
      },
    );
}

function parseUrl(value: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--webhook: "${redactUrl(value)}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--webhook: "${redactUrl(value)}" must start with http:// or https://`);
}
