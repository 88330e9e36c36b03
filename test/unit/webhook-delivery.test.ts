import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backoffDelayMs,
  classifyAttempt,
  deliverWebhook,
  webhookSignatureFault,
  WEBHOOK_HEADERS,
  type AttemptResult,
  type WebhookRetryPolicy,
  type WebhookTransport,
} from '../../src/accounting/webhook-delivery.js';
import { WebhookClient } from '../../src/accounting/webhook-client.js';

const secret = 'delivery-secret-123456';
const fast: WebhookRetryPolicy = { backoffInitialMs: 1, backoffMaxMs: 4, giveUpAfterMs: 60_000, attemptsMax: 1_000 };
const request = { url: 'http://receiver.test/hook', eventId: '11111111-2222-5333-8444-555555555555', body: Buffer.from('{"a":1}') };

/** A transport that answers from a script and records what it was sent. */
function scripted(results: AttemptResult[]): WebhookTransport & { calls: { headers: Record<string, string>; body: Buffer }[] } {
  const calls: { headers: Record<string, string>; body: Buffer }[] = [];
  return {
    calls,
    post(_url, body, headers) {
      calls.push({ headers, body });
      return Promise.resolve(results[Math.min(calls.length - 1, results.length - 1)]!);
    },
  };
}

const ok: AttemptResult = { kind: 'response', status: 200, body: 'ok' };
const unavailable: AttemptResult = { kind: 'response', status: 503, body: 'down' };
const refused: AttemptResult = { kind: 'error', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' };

describe('classifyAttempt', () => {
  it.each([
    [200, 'delivered'],
    [204, 'delivered'],
    [500, 'retry'],
    [503, 'retry'],
    [408, 'retry'],
    [429, 'retry'],
    [400, 'failed'],
    [401, 'failed'],
    [404, 'failed'],
    [410, 'failed'],
    [301, 'failed'],
  ])('HTTP %i → %s', (status, expected) => {
    expect(classifyAttempt({ kind: 'response', status, body: '' })).toBe(expected);
  });

  it('retries when there was no response at all', () => {
    expect(classifyAttempt(refused)).toBe('retry');
    expect(classifyAttempt({ kind: 'error', code: 'TIMEOUT', message: 'slow' })).toBe('retry');
  });
});

describe('backoffDelayMs', () => {
  const policy = { backoffInitialMs: 100, backoffMaxMs: 1_000 };
  it('doubles per attempt and is capped', () => {
    const top = () => 1; // upper end of the jitter
    expect([1, 2, 3, 4, 5, 6, 50].map((a) => backoffDelayMs(a, policy, top))).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });
  it('keeps at least half of each step (equal jitter)', () => {
    expect(backoffDelayMs(3, policy, () => 0)).toBe(200);
    expect(backoffDelayMs(3, policy, () => 0.5)).toBe(300);
  });
});

describe('deliverWebhook', () => {
  const never = new AbortController().signal;

  it('signs each attempt with its own time, sends the event id as idempotency key and numbers the attempts', async () => {
    const transport = scripted([unavailable, refused, ok]);
    let clockMs = 1_796_000_000_000;
    const now = () => (clockMs += 700_000); // each attempt over 10 minutes after the one before
    const result = await deliverWebhook(transport, request, secret, { ...fast, giveUpAfterMs: 86_400_000 }, never, { now });
    expect(result).toEqual({ status: 'delivered', attempts: 3, responseStatus: 200, responseBody: 'ok' });
    expect(transport.calls.map((c) => c.headers[WEBHOOK_HEADERS.attempt])).toEqual(['1', '2', '3']);
    for (const call of transport.calls) {
      expect(call.body).toEqual(request.body);
      expect(call.headers[WEBHOOK_HEADERS.idempotencyKey]).toBe(request.eventId);
      expect(call.headers['content-type']).toBe('application/json');
      const signed = { signature: call.headers[WEBHOOK_HEADERS.signature], timestamp: call.headers[WEBHOOK_HEADERS.timestamp] };
      expect(webhookSignatureFault(secret, call.body, signed, Number(signed.timestamp) * 1_000)).toBeNull();
    }
    const stamps = transport.calls.map((c) => Number(c.headers[WEBHOOK_HEADERS.timestamp]));
    expect(stamps[1]! - stamps[0]!).toBeGreaterThan(600); // a retry is not signed with the first attempt's time
  });

  it('records a 4xx as failed with the response, after one attempt', async () => {
    const transport = scripted([{ kind: 'response', status: 422, body: '{"error":"no such customer"}' }, ok]);
    const result = await deliverWebhook(transport, request, secret, fast, never);
    expect(result).toEqual({
      status: 'failed',
      attempts: 1,
      responseStatus: 422,
      responseBody: '{"error":"no such customer"}',
      lastError: 'HTTP 422',
      gaveUp: false,
    });
    expect(transport.calls).toHaveLength(1);
  });

  it('gives up after attemptsMax, keeping the last error', async () => {
    const transport = scripted([refused]);
    const result = await deliverWebhook(transport, request, secret, { ...fast, attemptsMax: 4 }, never);
    expect(result).toMatchObject({ status: 'failed', attempts: 4, responseStatus: null, gaveUp: true });
    expect(result.status === 'failed' && result.lastError).toContain('ECONNREFUSED');
  });

  it('gives up once the next attempt would start after giveUpAfterMs', async () => {
    let clockMs = 0;
    const transport: WebhookTransport = {
      post() {
        clockMs += 1_000; // every attempt takes a second
        return Promise.resolve(unavailable);
      },
    };
    const result = await deliverWebhook(transport, request, secret, { ...fast, giveUpAfterMs: 3_500 }, never, { now: () => clockMs });
    // Attempts start at 0, 1 s, 2 s and 3 s; a fifth would start after 3.5 s.
    expect(result).toMatchObject({ status: 'failed', attempts: 4, responseStatus: 503, gaveUp: true });
  });

  it('resumes a give-up clock started earlier (startedMs): a redelivered event gets only the time it has left', async () => {
    let clockMs = 10_000;
    const transport: WebhookTransport = {
      post() {
        clockMs += 1_000;
        return Promise.resolve(unavailable);
      },
    };
    // The clock started at 8 s: attempts start at 10 s and 11 s; a third would start after 12 s, past 8 s + 3.5 s.
    const result = await deliverWebhook(transport, request, secret, { ...fast, giveUpAfterMs: 3_500 }, never, {
      now: () => clockMs,
      startedMs: 8_000,
    });
    expect(result).toMatchObject({ status: 'failed', attempts: 2, responseStatus: 503, gaveUp: true });
  });

  it('with its time already spent, makes one last attempt and then gives up', async () => {
    const transport = scripted([unavailable, ok]);
    const result = await deliverWebhook(transport, request, secret, { ...fast, giveUpAfterMs: 60_000 }, never, {
      now: () => 1_000_000,
      startedMs: 0,
    });
    expect(result).toMatchObject({ status: 'failed', attempts: 1, responseStatus: 503, gaveUp: true });
    expect(transport.calls).toHaveLength(1);
  });

  it('stops retrying when the signal aborts, without an outcome', async () => {
    const controller = new AbortController();
    const transport = scripted([unavailable]);
    const result = await deliverWebhook(
      transport,
      request,
      secret,
      { ...fast, backoffInitialMs: 60_000, backoffMaxMs: 60_000 },
      controller.signal,
      {
        onRetry: () => setTimeout(() => controller.abort(), 5),
      },
    );
    expect(result).toEqual({ status: 'aborted', attempts: 1 });
  });
});

describe('WebhookClient (undici) against a local server', () => {
  let server: Server | null = null;
  // A roomy timeout where the receiver answers (a loaded machine can take more than 300 ms to); a short one for the receiver that never does.
  const client = new WebhookClient({ attemptTimeoutMs: 5_000, connectionsMax: 4 });
  const impatient = new WebhookClient({ attemptTimeoutMs: 300, connectionsMax: 4 });
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = null;
  });

  async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
    server = createServer(handler);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  }

  it('returns the status and the start of the body', async () => {
    const url = await listen((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(500).end('x'.repeat(5_000)));
    });
    const result = await client.post(url, Buffer.from('{}'), {}, new AbortController().signal);
    expect(result.kind).toBe('response');
    if (result.kind === 'response') {
      expect(result.status).toBe(500);
      expect(result.body.length).toBe(1_024);
    }
  });

  it('reports a refused connection as an error to retry', async () => {
    const url = await listen(() => {});
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = null;
    const result = await client.post(url, Buffer.from('{}'), {}, new AbortController().signal);
    expect(result).toMatchObject({ kind: 'error', code: 'ECONNREFUSED' });
    expect(classifyAttempt(result)).toBe('retry');
  });

  it('times out a receiver that never answers', async () => {
    const url = await listen(() => {
      // never responds
    });
    const started = Date.now();
    const result = await impatient.post(url, Buffer.from('{}'), {}, new AbortController().signal);
    expect(result.kind).toBe('error');
    expect(classifyAttempt(result)).toBe('retry');
    expect(Date.now() - started).toBeLessThan(2_000);
    server!.closeAllConnections();
  });

  it('says aborted when the caller aborts', async () => {
    const url = await listen(() => {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    expect(await client.post(url, Buffer.from('{}'), {}, controller.signal)).toEqual({ kind: 'aborted' });
    server!.closeAllConnections();
  });
});
