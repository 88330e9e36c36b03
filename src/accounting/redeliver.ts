import { redactUrl } from '../config/redact.js';
import { encodeAccountingEvent } from '../domain/accounting-event.js';
import {
  addWebhookAttempts,
  deliveryStatuses,
  listFailedDeliveries,
  recordRedeliveryOutcome,
  type WebhookStatus,
} from '../db/statements.js';
import type { Knex } from '../db/knex.js';
import { deliverWebhook, type WebhookRetryPolicy, type WebhookTransport } from './webhook-delivery.js';

/**
 * `txsim accounting redeliver`: sends webhook deliveries that ended `failed` again, through the
 * same signed delivery code as the consumer (same body and idempotency key, signed anew with each
 * attempt's timestamp, so a receiver that did see the first one drops the repeat), and records each new outcome. Only rows
 * still `failed` are sent and updated; pending ones belong to a running consumer.
 */

export interface RedeliverOptions {
  /** Only these event ids (null: every failed delivery). */
  readonly eventIds: readonly string[] | null;
  /** Most deliveries re-sent in one run. */
  readonly limit: number;
  /** Where to send; null: the URL each delivery was recorded with. */
  readonly url: string | null;
  readonly secret: string;
  /** Retries of a re-send (5xx, timeouts): bounded like the consumer's, but typically shorter. */
  readonly policy: WebhookRetryPolicy;
}

export interface RedeliveryLine {
  readonly eventId: string;
  readonly status: 'delivered' | 'failed';
  /** Attempts this run made. */
  readonly attempts: number;
  readonly responseStatus: number | null;
  readonly lastError: string | null;
}

export interface RedeliverReport {
  readonly deliveries: readonly RedeliveryLine[];
  readonly delivered: number;
  readonly failed: number;
  /** Requested ids that have no failed delivery, with where they stand (null: no delivery at all). */
  readonly notFailed: readonly { readonly eventId: string; readonly status: WebhookStatus | null }[];
  /** Shutdown stopped the run before these were sent; they stay failed. */
  readonly skipped: number;
}

/** A recorded URL that had a password lost it when it was stored (`***`): it cannot be used as is. */
export function isRedactedUrl(url: string): boolean {
  return /\/\/[^/@]*:\*\*\*@/.test(url);
}

/** Re-sends the selected failed deliveries one at a time, recording each outcome before the next. */
export async function redeliverFailed(
  deps: { db: Knex; transport: WebhookTransport },
  options: RedeliverOptions,
  signal: AbortSignal,
): Promise<RedeliverReport> {
  const failedRows = await listFailedDeliveries(deps.db, { eventIds: options.eventIds, limit: options.limit });
  const deliveries: RedeliveryLine[] = [];
  let skipped = 0;
  for (const row of failedRows) {
    const url = options.url ?? row.url;
    if (signal.aborted) {
      skipped++;
      continue;
    }
    if (isRedactedUrl(url)) {
      // Not sent, not recorded: a request without the password would only be refused.
      deliveries.push({
        eventId: row.event.eventId,
        status: 'failed',
        attempts: 0,
        responseStatus: null,
        lastError: `recorded URL ${url} has no password: pass --webhook <url>`,
      });
      continue;
    }
    const result = await deliverWebhook(
      deps.transport,
      { url, eventId: row.event.eventId, body: encodeAccountingEvent(row.event) },
      options.secret,
      options.policy,
      signal,
    );
    // Stopped mid-attempt: nothing to record, the delivery stays failed; the attempts it made still count.
    if (result.status === 'aborted') {
      // Best effort: the run is stopping, and a count is all a failure here could lose.
      await addWebhookAttempts(deps.db, row.event.eventId, result.attempts).catch(() => {});
      skipped++;
      continue;
    }
    // Recorded without its password, as the consumer records every delivery.
    await recordRedeliveryOutcome(deps.db, row.event.eventId, redactUrl(url), result);
    deliveries.push({
      eventId: row.event.eventId,
      status: result.status,
      attempts: result.attempts,
      responseStatus: result.responseStatus,
      lastError: result.status === 'failed' ? result.lastError : null,
    });
  }
  let notFailed: { eventId: string; status: WebhookStatus | null }[] = [];
  if (options.eventIds !== null) {
    const found = new Set(failedRows.map((r) => r.event.eventId));
    const missing = options.eventIds.filter((id) => !found.has(id));
    const statuses = await deliveryStatuses(deps.db, missing);
    notFailed = missing.map((eventId) => ({ eventId, status: statuses.get(eventId) ?? null }));
  }
  const delivered = deliveries.filter((d) => d.status === 'delivered').length;
  return { deliveries, delivered, failed: deliveries.length - delivered, notFailed, skipped };
}
