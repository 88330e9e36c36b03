import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { sendOverHttp, type HttpMessage } from '../../src/gen/http-sender.js';

/** A server that answers every POST 202 and notes which id arrived when (ms since the run began). */
async function recordingServer(): Promise<{ server: Server; url: string; arrivals: { id: string; atMs: number }[] }> {
  const arrivals: { id: string; atMs: number }[] = [];
  const t0 = performance.now();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      arrivals.push({ id: (JSON.parse(body) as { id: string }).id, atMs: performance.now() - t0 });
      res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrivals };
}

const message = (id: string, followUps: HttpMessage['followUps'] = []): HttpMessage => ({
  id,
  body: Buffer.from(JSON.stringify({ id })),
  contentType: 'application/json',
  followUps,
});

let server: Server | null = null;
afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve));
  server = null;
});

describe('gen --via: follow-ups', () => {
  it('each goes after its due time, among the primaries, and the run waits for the last one', async () => {
    const recording = await recordingServer();
    server = recording.server;
    // 20 primaries at 100/s (one per 10 ms); primary 0 has follow-ups 50 and 400 ms after it, primary 19 one 100 ms after it.
    const summary = await sendOverHttp(
      (index) =>
        message(
          `p${index}`,
          index === 0
            ? [
                { delayMs: 50, messageAt: () => message('f0-50') },
                { delayMs: 400, messageAt: () => message('f0-400') },
              ]
            : index === 19
              ? [{ delayMs: 100, messageAt: () => message('f19-100') }]
              : [],
        ),
      { baseUrl: recording.url, token: null, runId: 'r', count: 20, concurrency: 4, ratePerS: 100, requestTimeoutMs: 5_000 },
    );
    expect(summary).toMatchObject({ sent: 20, accepted: 20, failed: 0, followUps: { sent: 3, accepted: 3 } });
    expect(summary.acceptedIds).toHaveLength(23);
    const order = recording.arrivals.map((a) => a.id);
    const at = (id: string) => recording.arrivals.find((a) => a.id === id)!.atMs;
    // Due at 50 ms: not before then, and before the last primary (due at 190 ms), not after the run.
    expect(at('f0-50')).toBeGreaterThanOrEqual(49);
    expect(order.indexOf('f0-50')).toBeLessThan(order.indexOf('p19'));
    // After the last primary (190 ms): the drain sends the rest at their times, the last at 400 ms.
    expect(at('f19-100')).toBeGreaterThanOrEqual(289);
    expect(at('f0-400')).toBeGreaterThanOrEqual(399);
    expect(order.slice(-2)).toEqual(['f19-100', 'f0-400']);
  });

  it('a follow-up not accepted is counted apart from the run: its primary counts as accepted', async () => {
    const failing = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => res.writeHead((JSON.parse(body) as { id: string }).id === 'f' ? 503 : 202).end('{}'));
    });
    server = failing;
    await new Promise<void>((resolve) => failing.listen(0, '127.0.0.1', resolve));
    const summary = await sendOverHttp(() => message('p', [{ delayMs: 1, messageAt: () => message('f') }]), {
      baseUrl: `http://127.0.0.1:${(failing.address() as AddressInfo).port}`,
      token: null,
      runId: 'r',
      count: 1,
      concurrency: 2,
      ratePerS: 0,
      requestTimeoutMs: 5_000,
    });
    expect(summary).toMatchObject({ sent: 1, accepted: 1, failed: 0, followUps: { sent: 1, accepted: 0 } });
    expect(summary.refusals).toEqual([{ id: 'f', status: 503 }]);
  });
});
