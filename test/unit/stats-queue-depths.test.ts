import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topologyFor } from '../../src/amqp/topology.js';
import { ServiceUnavailableError } from '../../src/errors.js';
import {
  ManagementApiClient,
  QueueDepthReader,
  vhostOf,
  watchedQueues,
  type QueueDepth,
  type WatchedQueue,
} from '../../src/watch/queue-depths.js';

/**
 * The management API client against a small local HTTP server playing the API (the real API is
 * exercised by the integration tests), and the source-selection logic with fakes.
 */

let server: Server;
let baseUrl: string;
const requests: IncomingMessage[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req);
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.headers.authorization !== `Basic ${Buffer.from('watcher:s3cret').toString('base64')}`) {
      res.writeHead(401).end('{"error":"not_authorised"}');
    } else if (url.pathname === '/prefix/api/queues/%2F/ns.errors') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          name: 'ns.errors',
          messages_ready: 12,
          messages_unacknowledged: 3,
          consumers: 1,
          message_stats: { publish_details: { rate: 2.5 }, deliver_get_details: { rate: 1.5 } },
        }),
      );
    } else if (url.pathname === '/prefix/api/queues/%2F/ns.idle') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ name: 'ns.idle', messages_ready: 0, messages_unacknowledged: 0, consumers: 0 }));
    } else if (url.pathname === '/prefix/api/queues/%2F/ns.slow') {
      // never answers: the client's timeout must fire
    } else {
      res.writeHead(404).end('{"error":"Object Not Found"}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const q = (name: string, role: QueueDepth['role'] = 'errors'): WatchedQueue => ({ name, role });

describe('ManagementApiClient', () => {
  it('reads depth, unacked, consumers and rates, with Basic auth from the URL and a path prefix', async () => {
    const api = new ManagementApiClient(`http://watcher:s3cret@${baseUrl.slice(7)}/prefix/`, '/');
    try {
      expect(await api.queue(q('ns.errors'))).toEqual({
        name: 'ns.errors',
        role: 'errors',
        exists: true,
        ready: 12,
        unacked: 3,
        consumers: 1,
        inPerS: 2.5,
        outPerS: 1.5,
      });
      // No message_stats = no traffic in the sample window.
      expect(await api.queue(q('ns.idle'))).toMatchObject({ exists: true, ready: 0, inPerS: 0, outPerS: 0 });
      expect(await api.queue(q('ns.missing'))).toMatchObject({ exists: false, ready: null });
      expect(requests.at(-1)?.url).toContain('columns=');
    } finally {
      await api.close();
    }
  });

  it('fails with ServiceUnavailableError that names the endpoint without the password', async () => {
    const wrong = new ManagementApiClient(`http://watcher:wrong-password@${baseUrl.slice(7)}/prefix`, '/');
    const refused = new ManagementApiClient('http://watcher:s3cret@127.0.0.1:1', '/');
    const slow = new ManagementApiClient(`http://watcher:s3cret@${baseUrl.slice(7)}/prefix`, '/', 300);
    try {
      const err401 = await wrong.queue(q('ns.errors')).catch((e: unknown) => e);
      expect(err401).toBeInstanceOf(ServiceUnavailableError);
      expect((err401 as Error).message).toContain('HTTP 401');
      expect((err401 as Error).message).not.toContain('wrong-password');
      await expect(refused.queue(q('ns.errors'))).rejects.toThrow(
        /rabbitmq-management unreachable at http:\/\/watcher:\*\*\*@127\.0\.0\.1:1/,
      );
      const started = Date.now();
      await expect(slow.queue(q('ns.slow'))).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await Promise.all([wrong.close(), refused.close(), slow.close()]);
    }
  });
});

describe('QueueDepthReader', () => {
  const queues = [q('a', 'process'), q('b', 'errors')];
  const depth = (w: WatchedQueue, ready: number, unacked: number | null): QueueDepth => ({
    ...w,
    exists: true,
    ready,
    unacked,
    consumers: 0,
    inPerS: null,
    outPerS: null,
  });

  it('uses the API while it answers', async () => {
    const reader = new QueueDepthReader(
      queues,
      { queue: (w) => Promise.resolve(depth(w, 1, 2)) },
      { queue: () => expect.fail('fallback used') },
    );
    expect(await reader.read()).toMatchObject({
      source: 'management-api',
      apiError: null,
      queues: [{ name: 'a', ready: 1, unacked: 2 }, { name: 'b' }],
    });
  });

  it('falls back to AMQP with the reason, and retries the API only after apiRetryMs', async () => {
    let nowMs = 0;
    let apiCalls = 0;
    let apiUp = false;
    const api = {
      queue: (w: WatchedQueue) => {
        apiCalls++;
        return apiUp ? Promise.resolve(depth(w, 5, 0)) : Promise.reject(new Error('ECONNREFUSED'));
      },
    };
    const reader = new QueueDepthReader(queues, api, { queue: (w) => Promise.resolve(depth(w, 7, null)) }, 10_000, () => nowMs);
    expect(await reader.read()).toMatchObject({
      source: 'amqp-passive',
      apiError: 'ECONNREFUSED',
      queues: [{ ready: 7, unacked: null }, { ready: 7 }],
    });
    const callsAfterFailure = apiCalls;
    nowMs = 5_000;
    expect((await reader.read()).source).toBe('amqp-passive');
    expect(apiCalls).toBe(callsAfterFailure);
    apiUp = true;
    nowMs = 10_001;
    expect(await reader.read()).toMatchObject({ source: 'management-api', apiError: null });
  });

  it('without an API client it reads AMQP only', async () => {
    const reader = new QueueDepthReader(queues, null, { queue: (w) => Promise.resolve(depth(w, 0, null)) });
    expect(await reader.read()).toMatchObject({ source: 'amqp-passive', apiError: 'disabled' });
  });
});

describe('watched queues and vhost', () => {
  it('lists process, every retry step, errors, dead and accounting, in that order', () => {
    const t = topologyFor('ns', [100, 300]);
    expect(watchedQueues(t).map((w) => `${w.role}:${w.name}`)).toEqual([
      'process:ns.transactions.process',
      'retry:ns.retry.100ms',
      'retry:ns.retry.300ms',
      'errors:ns.errors',
      'dead:ns.dead',
      'accounting:ns.accounting.statements',
    ]);
  });

  it('an ordered namespace: its partition queues right after the process queue', () => {
    const t = topologyFor('ns', [100], 3);
    expect(watchedQueues(t).map((w) => `${w.role}:${w.name}`)).toEqual([
      'process:ns.transactions.process',
      'partition:ns.process.p0',
      'partition:ns.process.p1',
      'partition:ns.process.p2',
      'retry:ns.retry.100ms',
      'errors:ns.errors',
      'dead:ns.dead',
      'accounting:ns.accounting.statements',
    ]);
  });

  it('takes the vhost from the AMQP URL path', () => {
    expect(vhostOf('amqp://guest:guest@127.0.0.1:5672')).toBe('/');
    expect(vhostOf('amqp://guest:guest@127.0.0.1:5672/')).toBe('/');
    expect(vhostOf('amqp://h/staging')).toBe('staging');
    expect(vhostOf('amqp://h/%2Fodd')).toBe('/odd');
  });
});
