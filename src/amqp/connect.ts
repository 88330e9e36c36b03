import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type RecoveringChannelModel } from 'amqplib';
import { DEFAULTS } from '../config/config.js';
import { redactUrl } from '../config/redact.js';
import {
  describeCause,
  isRefusedLogin,
  isRefusedVhost,
  ServiceRefusedError,
  ServiceUnavailableError,
  VHOST_REFUSALS_MAX,
} from '../errors.js';
import type { Logger } from '../log.js';
import { splitUrlList } from '../config/url-list.js';
import { AmqpEndpoints } from './endpoints.js';
import { probeAmqpServer } from './probe.js';

/** How long one connection attempt (TCP connect and AMQP handshake) may take; a producer fails after one. */
export const CONNECT_TIMEOUT_MS = 5_000;

/**
 * How long a long-running process (worker, accounting) waits for the broker at start, retries
 * included, before it fails with exit 3 (`--connect-timeout`). Once it has connected, an outage
 * means reconnecting for as long as it takes.
 */
export const START_CONNECT_TIMEOUT_MS = DEFAULTS.connectTimeoutMs;

/** The first connection was given up because the process is stopping (a SIGINT, or close()). */
export class ConnectAbortedError extends Error {
  constructor() {
    super('connect aborted: stopping');
    this.name = 'ConnectAbortedError';
  }
}

/**
 * The error a failed connect ends a command with: ServiceUnavailableError naming the broker (password
 * redacted). A handshake that failed without a socket error code (no ECONNREFUSED, ETIMEDOUT …) may
 * mean that something other than a broker answered: then the cause says so (NotAmqpServerError).
 */
export async function unreachableError(url: string, err: unknown): Promise<ServiceUnavailableError | ServiceRefusedError> {
  if (isRefusedLogin(err) || isRefusedVhost(err)) return new ServiceRefusedError('rabbitmq', redactUrl(url), err);
  const code = (err as { code?: unknown } | null)?.code;
  const notAmqp = typeof code === 'string' ? null : await probeAmqpServer(url);
  return new ServiceUnavailableError('rabbitmq', redactUrl(url), notAmqp ?? err);
}

/**
 * One plain connection, for producers and one-shot commands: they fail fast (one clear line) when
 * the broker is down instead of waiting for it. With several nodes listed, each is tried in turn and
 * the first that answers is used; the error names them all.
 */
export async function connectOnce(url: string, log: Logger, clientName: string): Promise<ChannelModel> {
  const nodes = splitUrlList(url);
  let lastError: unknown = null;
  for (const node of nodes) {
    try {
      const connection = await connectNode(node, clientName);
      // Without an 'error' listener a broker-side close would crash the process.
      connection.on('error', (err: Error) => log.warn({ err: err.message }, 'amqp connection error'));
      connection.on('blocked', (reason: string) => log.warn({ reason }, 'amqp connection blocked by broker'));
      connection.on('unblocked', () => log.info('amqp connection unblocked'));
      if (nodes.length > 1) log.debug({ node: redactUrl(node) }, 'amqp connected');
      return connection;
    } catch (err) {
      if (nodes.length > 1) log.debug({ node: redactUrl(node), err: describeCause(err) }, 'amqp node unreachable; trying the next');
      lastError = err;
    }
  }
  if (nodes.length === 1) throw await unreachableError(nodes[0]!, lastError);
  if (isRefusedLogin(lastError) || isRefusedVhost(lastError)) throw new ServiceRefusedError('rabbitmq', redactUrl(url), lastError);
  throw new ServiceUnavailableError('rabbitmq', redactUrl(url), lastError);
}

/**
 * One node's connection. A connection.open answered by a close is tried again, a second apart, up to
 * VHOST_REFUSALS_MAX times: a virtual host that is refused every time is refused (unreachableError says
 * so), one that was only starting or stopping answers on a later try.
 */
async function connectNode(node: string, clientName: string): Promise<ChannelModel> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await amqp.connect(node, { timeout: CONNECT_TIMEOUT_MS, clientProperties: { connection_name: clientName } });
    } catch (err) {
      if (!isRefusedVhost(err) || attempt >= VHOST_REFUSALS_MAX) throw err;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

/** What txsim uses of a connection: amqplib's ChannelModel, or the fake of the unit tests. */
export interface AmqpModel {
  createChannel(): Promise<Channel>;
  createConfirmChannel(): Promise<ConfirmChannel>;
  close(): Promise<void>;
}

/** A connection that comes back by itself; only closing it is left to its owner. */
export interface RecoveringConnection {
  close(): Promise<void>;
}

/**
 * Opens a recovering connection: runs `setup` and then `onConnect` on every (re)connect, reports
 * each loss through `onDisconnect`. `connectRecovering` is the real one; unit tests pass a fake.
 */
export type ConnectionFactory = (options: RecoveringConnectionOptions) => Promise<RecoveringConnection>;

export interface RecoveringConnectionOptions {
  readonly url: string;
  readonly log: Logger;
  readonly clientName: string;
  /** Runs on every new connection before it is handed out: assert topology here. */
  readonly setup: (model: AmqpModel) => Promise<void>;
  /** Called after each (re)connect, once setup succeeded: open channels and consumers here. */
  readonly onConnect: (model: AmqpModel) => void;
  readonly onDisconnect: (err: Error) => void;
  readonly onBlocked?: (blocked: boolean, reason?: string) => void;
  /** Attempts before the very first connection gives up (default 3; the time budget below bounds it too). */
  readonly initialMaxRetries?: number;
  /** How long the first connection may take, retries included (default START_CONNECT_TIMEOUT_MS; Infinity: no limit). */
  readonly connectTimeoutMs?: number;
  /** Aborting gives up the first connection at once: connectRecovering rejects with ConnectAbortedError. */
  readonly signal?: AbortSignal;
}

/**
 * A connection that comes back by itself: amqplib's recovery with capped, jittered backoff. Used by
 * long-running processes (workers, accounting); `setup` re-asserts the topology each time.
 *
 * The first connection is bounded: it fails with ServiceUnavailableError (one line, exit 3) once
 * `connectTimeoutMs` or `initialMaxRetries` run out, at once when something that is not an AMQP
 * server answers, and with ConnectAbortedError as soon as `signal` aborts. Its retries are logged
 * at debug (the outcome is the one line that matters); after it, every reconnect is logged at info.
 */
export async function connectRecovering(options: RecoveringConnectionOptions): Promise<RecoveringConnection> {
  const { log, signal } = options;
  if (signal?.aborted) throw new ConnectAbortedError();
  let connectedOnce = false;
  // A node list: every failed attempt and every lost connection moves the next attempt to the next node.
  const endpoints = new AmqpEndpoints(options.url);
  const connection = await amqp.connect(endpoints.target(), {
    timeout: CONNECT_TIMEOUT_MS,
    clientProperties: { connection_name: options.clientName },
    recovery: {
      initialDelay: 250,
      maxDelay: 10_000,
      factor: 2,
      jitter: 0.3,
      initialMaxRetries: options.initialMaxRetries ?? 3,
      waitForConnect: false,
      setup: async (model: ChannelModel) => {
        // amqplib's recovery listens for the model's 'error' only once setup succeeded: a socket
        // error while the topology is being asserted (a broker going away right then) would be an
        // unhandled 'error' event and crash the process. The setup fails with the closed
        // connection instead, and recovery tries again.
        model.on('error', (err: Error) => log.debug({ err: err.message }, 'amqp connection error during setup'));
        await options.setup(model);
      },
    },
  });
  connection.on('error', (err: Error) => log.warn({ err: err.message }, 'amqp connection error'));
  connection.on('connect', (model: ChannelModel) => {
    connectedOnce = true;
    if (endpoints.count > 1) log.info({ node: endpoints.describe() }, 'amqp connected');
    options.onConnect(model);
  });
  connection.on('connect-failed', () => endpoints.advance());
  connection.on('disconnect', (err: Error) => {
    endpoints.advance();
    log.warn({ err: err.message }, 'amqp disconnected; reconnecting');
    options.onDisconnect(err);
  });
  connection.on('reconnect-scheduled', (info: { attempt: number; delay: number; error: Error }) => {
    const fields = { attempt: info.attempt, delayMs: Math.round(info.delay), err: info.error.message };
    if (!connectedOnce) return log.debug(fields, 'amqp connect failed; retrying');
    log.info(fields, 'amqp reconnect scheduled');
    // Someone else may have taken the broker's port: say so rather than print a frame error each time.
    if (info.attempt === 1 || info.attempt % 10 === 0) void warnWhenNotAmqp(endpoints.current, info.error, log);
  });
  connection.on('blocked', (reason: string) => {
    log.warn({ reason }, 'amqp connection blocked by broker');
    options.onBlocked?.(true, reason);
  });
  connection.on('unblocked', () => {
    log.info('amqp connection unblocked');
    options.onBlocked?.(false);
  });
  try {
    await firstConnection(connection, options, endpoints);
  } catch (err) {
    await connection.close().catch(() => {});
    throw err;
  }
  return connection;
}

/** The first 'connect', bounded by the time budget, the abort signal and a non-AMQP answer. */
function firstConnection(
  connection: RecoveringChannelModel,
  options: RecoveringConnectionOptions,
  endpoints: AmqpEndpoints,
): Promise<void> {
  const { signal } = options;
  const url = endpoints.count === 1 ? endpoints.current : options.url;
  const named = endpoints.count === 1 ? redactUrl(url) : redactUrl(url);
  const timeoutMs = options.connectTimeoutMs ?? START_CONNECT_TIMEOUT_MS;
  let lastError: unknown = null;
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      connection.removeListener('connect-failed', onFailed);
      outcome();
    };
    const giveUp = () => {
      const waited = `no connection within ${formatSeconds(timeoutMs)} (--connect-timeout)`;
      const cause = lastError === null ? new Error(waited) : new Error(`${describeCause(lastError)}; ${waited}`, { cause: lastError });
      settle(() => reject(new ServiceUnavailableError('rabbitmq', named, cause)));
    };
    const onAbort = () => settle(() => reject(new ConnectAbortedError()));
    let vhostRefusals = 0;
    const onFailed = (err: Error) => {
      lastError = err;
      // A refused login stays refused: said at once, not retried until the timeout. So does a virtual
      // host refused VHOST_REFUSALS_MAX times in a row (once may be a node starting or stopping).
      vhostRefusals = isRefusedVhost(err) ? vhostRefusals + 1 : 0;
      if ((isRefusedLogin(err) || vhostRefusals >= VHOST_REFUSALS_MAX) && endpoints.count === 1)
        return settle(() => reject(new ServiceRefusedError('rabbitmq', named, err)));
      // Not a socket error: maybe not a broker at all. That does not get better by waiting.
      // With a node list another node may still answer: only a lone node that is not a broker fails at once.
      if (typeof (err as { code?: unknown }).code === 'string' || endpoints.count > 1) return;
      void probeAmqpServer(url).then((notAmqp) => {
        if (notAmqp) settle(() => reject(new ServiceUnavailableError('rabbitmq', named, notAmqp)));
      });
    };
    // Infinity: wait as long as it takes (a second connection of a process that is already connected).
    const timer = Number.isFinite(timeoutMs) ? setTimeout(giveUp, timeoutMs) : undefined;
    signal?.addEventListener('abort', onAbort, { once: true });
    connection.on('connect-failed', onFailed);
    connection.waitForConnect().then(
      () => settle(resolve),
      // initialMaxRetries ran out (or close() was called).
      (err: unknown) =>
        endpoints.count === 1
          ? void unreachableError(url, err).then((e) => settle(() => reject(e)))
          : settle(() => reject(new ServiceUnavailableError('rabbitmq', named, err))),
    );
  });
}

/** 15000 → "15 s", 1500 → "1.5 s". */
function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/** Warns that what answers at the broker's address is not an AMQP server: a reconnect that cannot succeed as things are. */
async function warnWhenNotAmqp(url: string, err: Error, log: Logger): Promise<void> {
  if (typeof (err as { code?: unknown }).code === 'string') return;
  const notAmqp = await probeAmqpServer(url);
  if (notAmqp) log.warn({ address: notAmqp.address, answer: notAmqp.answer }, `amqp reconnect: ${notAmqp.message}`);
}
