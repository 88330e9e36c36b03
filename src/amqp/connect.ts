import amqp, { type ChannelModel, type RecoveringChannelModel } from 'amqplib';
import { redactUrl } from '../config/redact.js';
import { ServiceUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';

/** How long a producer waits for the broker before saying it is unreachable. */
export const CONNECT_TIMEOUT_MS = 5_000;

/**
 * One plain connection, for producers and one-shot commands: they fail fast (one clear line) when
 * the broker is down instead of waiting for it.
 */
export async function connectOnce(url: string, log: Logger, clientName: string): Promise<ChannelModel> {
  try {
    const connection = await amqp.connect(url, { timeout: CONNECT_TIMEOUT_MS, clientProperties: { connection_name: clientName } });
    // Without an 'error' listener a broker-side close would crash the process.
    connection.on('error', (err: Error) => log.warn({ err: err.message }, 'amqp connection error'));
    connection.on('blocked', (reason: string) => log.warn({ reason }, 'amqp connection blocked by broker'));
    connection.on('unblocked', () => log.info('amqp connection unblocked'));
    return connection;
  } catch (err) {
    throw new ServiceUnavailableError('rabbitmq', redactUrl(url), err);
  }
}

export interface RecoveringConnectionOptions {
  readonly url: string;
  readonly log: Logger;
  readonly clientName: string;
  /** Runs on every new connection before it is handed out: assert topology here. */
  readonly setup: (model: ChannelModel) => Promise<void>;
  /** Called after each (re)connect, once setup succeeded: open channels and consumers here. */
  readonly onConnect: (model: ChannelModel) => void;
  readonly onDisconnect: (err: Error) => void;
  readonly onBlocked?: (blocked: boolean, reason?: string) => void;
  /** Attempts before the very first connection gives up (a worker started with no broker). */
  readonly initialMaxRetries?: number;
}

/**
 * A connection that comes back by itself: amqplib's recovery with capped, jittered backoff. Used by
 * long-running processes (workers, accounting); `setup` re-asserts the topology each time.
 */
export async function connectRecovering(options: RecoveringConnectionOptions): Promise<RecoveringChannelModel> {
  const { log } = options;
  const connection = await amqp.connect(options.url, {
    timeout: CONNECT_TIMEOUT_MS,
    clientProperties: { connection_name: options.clientName },
    recovery: {
      initialDelay: 250,
      maxDelay: 10_000,
      factor: 2,
      jitter: 0.3,
      initialMaxRetries: options.initialMaxRetries ?? 3,
      waitForConnect: false,
      setup: options.setup,
    },
  });
  connection.on('error', (err: Error) => log.warn({ err: err.message }, 'amqp connection error'));
  connection.on('connect', (model: ChannelModel) => options.onConnect(model));
  connection.on('disconnect', (err: Error) => {
    log.warn({ err: err.message }, 'amqp disconnected; reconnecting');
    options.onDisconnect(err);
  });
  connection.on('reconnect-scheduled', (info: { attempt: number; delay: number; error: Error }) =>
    log.info({ attempt: info.attempt, delayMs: Math.round(info.delay), err: info.error.message }, 'amqp reconnect scheduled'),
  );
  connection.on('blocked', (reason: string) => {
    log.warn({ reason }, 'amqp connection blocked by broker');
    options.onBlocked?.(true, reason);
  });
  connection.on('unblocked', () => {
    log.info('amqp connection unblocked');
    options.onBlocked?.(false);
  });
  try {
    await connection.waitForConnect();
  } catch (err) {
    throw new ServiceUnavailableError('rabbitmq', redactUrl(options.url), err);
  }
  return connection;
}
