import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { verifyWebhookSignature, WEBHOOK_HEADERS } from './webhook-delivery.js';

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
}

/**
 * The tiny webhook receiver of `txsim accounting receive`, and a reference for writing one: read the
 * raw body, verify the signature over exactly those bytes BEFORE parsing, then deduplicate by the
 * idempotency key and answer 2xx (also for a repeat, so the sender stops retrying).
 */
export function createWebhookReceiver(options: WebhookReceiverOptions): Server {
  const bodyBytesMax = options.bodyBytesMax ?? 64 * 1024;
  const seenKeysMax = options.seenKeysMax ?? 1_000_000;
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
      if (!verifyWebhookSignature(options.secret, raw, req.headers[WEBHOOK_HEADERS.signature]))
        return refuse(res, 401, 'bad or missing signature', eventId);
      if (eventId === null) return refuse(res, 400, `missing ${WEBHOOK_HEADERS.idempotencyKey} header`, null);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return refuse(res, 400, 'body is not JSON', eventId);
      }
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
