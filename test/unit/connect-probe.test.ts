import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectAbortedError, connectRecovering } from '../../src/amqp/connect.js';
import { ManagedConnection } from '../../src/amqp/managed-channel.js';
import { answerSample, looksLikeAmqp, NotAmqpServerError, probeAmqpServer } from '../../src/amqp/probe.js';
import { ServiceUnavailableError } from '../../src/errors.js';
import { recordingLogger } from './worker-harness.js';

const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function listen(server: net.Server): Promise<number> {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
  await new Promise((r) => server.close(r));
  return port;
}

describe('what answered at the broker address', () => {
  it('tells an AMQP answer from anything else by its first bytes', () => {
    // connection.start: a method frame (type 1) on channel 0.
    expect(looksLikeAmqp(Buffer.from([1, 0, 0, 0, 0, 1, 0xf4]))).toBe(true);
    // A broker of another protocol version answers with its own header.
    expect(looksLikeAmqp(Buffer.from('AMQP\x00\x01\x00\x00', 'latin1'))).toBe(true);
    expect(looksLikeAmqp(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))).toBe(false);
    expect(looksLikeAmqp(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))).toBe(false);
    expect(answerSample(Buffer.from('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n'))).toBe('HTTP/1.1 400 Bad Request');
    expect(answerSample(Buffer.from([0x4a, 0, 0, 0, 0x0a, 0x35, 0x2e]))).toBe('J...');
  });

  it('an HTTP server is not an AMQP server; a closed port is not reported as one', async () => {
    const port = await listen(http.createServer((_req, res) => res.end('hello')));
    const found = await probeAmqpServer(`amqp://guest:guest@127.0.0.1:${port}`);
    expect(found).toBeInstanceOf(NotAmqpServerError);
    expect(found!.message).toBe(`what answered at 127.0.0.1:${port} is not an AMQP server (it sent "HTTP/1.1 400 Bad Request")`);
    expect(await probeAmqpServer(`amqp://127.0.0.1:${await closedPort()}`)).toBeNull();
  });
});

describe('the first connection of a recovering connection', () => {
  const noop = () => {};
  const base = { log: recordingLogger().log, clientName: 'unit', setup: () => Promise.resolve(), onConnect: noop, onDisconnect: noop };

  it('gives up after connectTimeoutMs with one error naming the broker, password redacted', async () => {
    const url = `amqp://guest:s3cret@127.0.0.1:${await closedPort()}`;
    const startedAtMs = Date.now();
    const err = await connectRecovering({ ...base, url, initialMaxRetries: Infinity, connectTimeoutMs: 600 }).catch((e: unknown) => e);
    expect(Date.now() - startedAtMs).toBeLessThan(3_000);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as Error).message).toMatch(
      /^rabbitmq unreachable at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+: .*ECONNREFUSED.*no connection within 0\.6 s \(--connect-timeout\)$/,
    );
    expect((err as Error).message).not.toContain('s3cret');
  });

  it('gives up at once when a non-AMQP server answers, however long it may wait', async () => {
    const port = await listen(http.createServer((_req, res) => res.end('hello')));
    const startedAtMs = Date.now();
    const err = await connectRecovering({
      ...base,
      url: `amqp://127.0.0.1:${port}`,
      initialMaxRetries: Infinity,
      connectTimeoutMs: 60_000,
    }).catch((e: unknown) => e);
    expect(Date.now() - startedAtMs).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as Error).message).toContain(`what answered at 127.0.0.1:${port} is not an AMQP server`);
  });

  it('an abort ends the wait at once; ManagedConnection.start then resolves false', async () => {
    const url = `amqp://127.0.0.1:${await closedPort()}`;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const startedAtMs = Date.now();
    const err = await connectRecovering({
      ...base,
      url,
      initialMaxRetries: Infinity,
      connectTimeoutMs: 60_000,
      signal: controller.signal,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectAbortedError);
    // Well before the 60 s connect timeout; roomy enough for a loaded machine.
    expect(Date.now() - startedAtMs).toBeLessThan(3_000);

    const connection = new ManagedConnection({
      url,
      clientName: 'unit',
      log: base.log,
      initialMaxRetries: Infinity,
      connectTimeoutMs: 60_000,
    });
    const started = connection.start();
    setTimeout(() => void connection.close(), 300);
    expect(await started).toBe(false);
    expect(Date.now() - startedAtMs).toBeLessThan(3_000);
  });
});
