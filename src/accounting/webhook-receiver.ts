import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { WEBHOOK_HEADERS, WEBHOOK_TOLERANCE_S, webhookSignatureFault } from './webhook-delivery.js';

/** One accepted webhook: its idempotency key, the parsed body, and whether the key was seen before. */
export interface ReceivedWebhook {
  readonly eventId: string;
  readonly body: unknown;
  readonly duplicate: boolean;
  readonly attempt: number | null;
}

/** Why a request was refused, with the status it got. */
export interface RefusedWebhook {
  readonly status: number;
  readonly reason: string;
  readonly eventId: string | null;
}

export interface WebhookReceiverOptions {
  readonly secret: string;
  readonly onAccepted: (received: ReceivedWebhook) => void;
  readonly onRefused?: (refused: RefusedWebhook) => void;
  /** Largest body read; bigger ones get 413 (an accounting event is well under 1 KiB). */
  readonly bodyBytesMax?: number;
  /** Idempotency keys remembered, oldest forgotten first: a bound on memory. */
  readonly seenKeysMax?: number;
  /** How far a signed timestamp may be from this server's clock (default WEBHOOK_TOLERANCE_S). */
  readonly toleranceS?: number;
  /** The clock timestamps are checked against (tests). */
  readonly now?: () => number;
}

/**
 * The tiny webhook receiver of `txsim accounting receive`, and a reference for writing one: read the
 * raw body, verify the signature over its timestamp and exactly those bytes BEFORE parsing, refuse a
 * timestamp too far from the clock (a replay), then deduplicate by the signed `eventId` — the
 * `Idempotency-Key` header is not signed, so it must name the same event — and answer 2xx (also for a
 * repeat, so the sender stops retrying).
 */
export function createWebhookReceiver(options: WebhookReceiverOptions): Server {
  const bodyBytesMax = options.bodyBytesMax ?? 64 * 1024;
  const seenKeysMax = options.seenKeysMax ?? 1_000_000;
  const toleranceS = options.toleranceS ?? WEBHOOK_TOLERANCE_S;
  const now = options.now ?? Date.now;
  // A Set iterates in insertion order: the first key is the oldest, the one to forget.
  const seen = new Set<string>();

  const refuse = (res: ServerResponse, status: number, reason: string, eventId: string | null) => {
    options.onRefused?.({ status, reason, eventId });
    res.writeHead(status, { 'content-type': 'application/json', connection: status === 413 ? 'close' : 'keep-alive' });
    res.end(JSON.stringify({ ok: false, error: reason }));
  };

  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const header = req.headers[WEBHOOK_HEADERS.idempotencyKey];
    const eventId = typeof header === 'string' && header.length > 0 && header.length <= 200 ? header : null;
    if (req.method !== 'POST') return refuse(res, 405, 'only POST is accepted', eventId);
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > bodyBytesMax) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('error', () => {});
    req.on('end', () => {
      if (tooLarge) return refuse(res, 413, `body larger than ${bodyBytesMax} bytes`, eventId);
      const raw = Buffer.concat(chunks);
      // Verify the bytes as received: re-serializing parsed JSON would not give the same bytes.
      const signed = { signature: req.headers[WEBHOOK_HEADERS.signature], timestamp: req.headers[WEBHOOK_HEADERS.timestamp] };
      const fault = webhookSignatureFault(options.secret, raw, signed, now(), toleranceS);
      if (fault === 'bad_signature') return refuse(res, 401, 'bad or missing signature', eventId);
      if (fault === 'stale_timestamp')
        return refuse(res, 401, `signed more than ${toleranceS} s from this server's clock: a replay, or clocks apart`, eventId);
      if (eventId === null) return refuse(res, 400, `missing ${WEBHOOK_HEADERS.idempotencyKey} header`, null);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return refuse(res, 400, 'body is not JSON', eventId);
      }
      const signedId = typeof body === 'object' && body !== null ? (body as { eventId?: unknown }).eventId : undefined;
      if (typeof signedId !== 'string') return refuse(res, 400, 'body has no eventId', eventId);
      // The header is not signed: dropping repeats by it would let anyone replay an event under a new
      // key, or suppress a future one by sending an old body under its id.
      if (signedId !== eventId) return refuse(res, 400, `${WEBHOOK_HEADERS.idempotencyKey} is not the eventId of the signed body`, eventId);
      const duplicate = seen.has(eventId);
      if (!duplicate) {
        seen.add(eventId);
        if (seen.size > seenKeysMax) seen.delete(seen.values().next().value as string);
      }
      const attempt = Number(req.headers[WEBHOOK_HEADERS.attempt]);
      options.onAccepted({ eventId, body, duplicate, attempt: Number.isSafeInteger(attempt) ? attempt : null });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, duplicate }));
    });
  });
}
