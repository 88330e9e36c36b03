import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { signWebhook, WEBHOOK_HEADERS } from '../../src/accounting/webhook-delivery.js';
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
  const nowS = () => Math.floor(Date.now() / 1_000);
  const signed = (body: string, eventId: string, timestampS = nowS(), key = secret) => ({
    'content-type': 'application/json',
    [WEBHOOK_HEADERS.signature]: signWebhook(key, timestampS, body),
    [WEBHOOK_HEADERS.timestamp]: String(timestampS),
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
    expect((await post(body, signed(body, 'e2', nowS(), 'wrong-secret-000000'))).status).toBe(401);
    const { [WEBHOOK_HEADERS.signature]: _, ...unsigned } = signed(body, 'e2');
    expect((await post(body, unsigned)).status).toBe(401);
    // Signed, then altered in transit.
    expect((await post(body.replace('e2', 'e3'), signed(body, 'e2'))).status).toBe(401);
    expect(accepted).toHaveLength(0);
    expect(refused.map((r) => r.status)).toEqual([401, 401, 401]);
  });

  it('refuses a request signed more than the tolerance ago (a replay) with 401', async () => {
    const body = JSON.stringify({ eventId: 'e4' });
    const old = await post(body, signed(body, 'e4', nowS() - 301));
    expect(old).toEqual({
      status: 401,
      json: { ok: false, error: "signed more than 300 s from this server's clock: a replay, or clocks apart" },
    });
    expect((await post(body, signed(body, 'e4', nowS() + 301))).status).toBe(401);
    // Its signature with a fresh timestamp put in front: the signature no longer holds.
    const replayed = { ...signed(body, 'e4', nowS() - 301), [WEBHOOK_HEADERS.timestamp]: String(nowS()) };
    expect((await post(body, replayed)).status).toBe(401);
    expect(accepted).toHaveLength(0);
  });

  it('drops repeats by the signed eventId: an Idempotency-Key that names another event is refused with 400', async () => {
    const body = JSON.stringify({ eventId: 'e5', amountMinor: '100' });
    expect((await post(body, signed(body, 'e5'))).json).toEqual({ ok: true, duplicate: false });
    // The same signed body under a new key would be processed twice if the key were trusted …
    expect(await post(body, signed(body, 'e5-again'))).toEqual({
      status: 400,
      json: { ok: false, error: 'idempotency-key is not the eventId of the signed body' },
    });
    // … and an old body under a future event's key would make that event a "repeat" when it comes.
    const future = JSON.stringify({ eventId: 'e6' });
    expect((await post(body, signed(body, 'e6'))).status).toBe(400);
    expect((await post(future, signed(future, 'e6'))).json).toEqual({ ok: true, duplicate: false });
    expect(accepted.map((a) => [a.eventId, a.duplicate])).toEqual([
      ['e5', false],
      ['e6', false],
    ]);
    expect((await post('{"amountMinor":"1"}', signed('{"amountMinor":"1"}', 'e7'))).json).toEqual({
      ok: false,
      error: 'body has no eventId',
    });
  });

  it('refuses a missing idempotency key, a non-JSON body, a GET and an oversized body', async () => {
    const body = '{"eventId":"k"}';
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
    const event = (id: string) => `{"eventId":"${id}"}`;
    for (const id of ['a', 'b', 'c', 'd']) await post(event(id), signed(event(id), id));
    // 'a' was forgotten (limit 3), 'd' is remembered.
    expect((await post(event('a'), signed(event('a'), 'a'))).json.duplicate).toBe(false);
    expect((await post(event('d'), signed(event('d'), 'd'))).json.duplicate).toBe(true);
  });
});
