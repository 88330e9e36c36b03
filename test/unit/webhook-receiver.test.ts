import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { signWebhookBody, WEBHOOK_HEADERS } from '../../src/accounting/webhook-delivery.js';
import { createWebhookReceiver, type ReceivedWebhook, type RefusedWebhook } from '../../src/accounting/webhook-receiver.js';

const secret = 'receiver-secret-123456';

describe('webhook receiver', () => {
  let server: Server;
  let url: string;
  let accepted: ReceivedWebhook[];
  let refused: RefusedWebhook[];

  beforeEach(async () => {
    accepted = [];
    refused = [];
    server = createWebhookReceiver({
      secret,
      bodyBytesMax: 1_024,
      seenKeysMax: 3,
      onAccepted: (r) => accepted.push(r),
      onRefused: (r) => refused.push(r),
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function post(body: string, headers: Record<string, string>, method = 'POST') {
    const res = await request(url, { method: method as 'POST', body, headers });
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
  }
  const signed = (body: string, eventId: string) => ({
    'content-type': 'application/json',
    [WEBHOOK_HEADERS.signature]: signWebhookBody(secret, body),
    [WEBHOOK_HEADERS.idempotencyKey]: eventId,
    [WEBHOOK_HEADERS.attempt]: '2',
  });

  it('accepts a correctly signed event once; a repeat is answered 200 and marked duplicate', async () => {
    const body = JSON.stringify({ eventId: 'e1', amountMinor: '100' });
    expect(await post(body, signed(body, 'e1'))).toEqual({ status: 200, json: { ok: true, duplicate: false } });
    expect(await post(body, signed(body, 'e1'))).toEqual({ status: 200, json: { ok: true, duplicate: true } });
    expect(accepted).toEqual([
      { eventId: 'e1', body: { eventId: 'e1', amountMinor: '100' }, duplicate: false, attempt: 2 },
      { eventId: 'e1', body: { eventId: 'e1', amountMinor: '100' }, duplicate: true, attempt: 2 },
    ]);
  });

  it('refuses a bad signature with 401 before looking at the body', async () => {
    const body = JSON.stringify({ eventId: 'e2' });
    const headers = { ...signed(body, 'e2'), [WEBHOOK_HEADERS.signature]: signWebhookBody('wrong-secret-000000', body) };
    expect((await post(body, headers)).status).toBe(401);
    const { [WEBHOOK_HEADERS.signature]: _, ...unsigned } = signed(body, 'e2');
    expect((await post(body, unsigned)).status).toBe(401);
    // Signed, then altered in transit.
    expect((await post(body.replace('e2', 'e3'), signed(body, 'e2'))).status).toBe(401);
    expect(accepted).toHaveLength(0);
    expect(refused.map((r) => r.status)).toEqual([401, 401, 401]);
  });

  it('refuses a missing idempotency key, a non-JSON body, a GET and an oversized body', async () => {
    const body = '{"x":1}';
    const { [WEBHOOK_HEADERS.idempotencyKey]: _, ...noKey } = signed(body, 'k');
    expect((await post(body, noKey)).status).toBe(400);
    expect((await post('not json', signed('not json', 'k'))).status).toBe(400);
    const get = await request(url, { method: 'GET' });
    expect(get.statusCode).toBe(405);
    await get.body.dump();
    const big = JSON.stringify({ pad: 'x'.repeat(2_000) });
    expect((await post(big, signed(big, 'k'))).status).toBe(413);
    expect(accepted).toHaveLength(0);
  });

  it('remembers a bounded number of keys, forgetting the oldest first', async () => {
    for (const id of ['a', 'b', 'c', 'd']) await post(`{"id":"${id}"}`, signed(`{"id":"${id}"}`, id));
    // 'a' was forgotten (limit 3), 'd' is remembered.
    expect((await post('{"id":"a"}', signed('{"id":"a"}', 'a'))).json.duplicate).toBe(false);
    expect((await post('{"id":"d"}', signed('{"id":"d"}', 'd'))).json.duplicate).toBe(true);
  });
});
