import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { principalOf } from './auth.js';
import { type FeedClient, type FeedHub, type Subscription } from './feed-hub.js';
import { mayActFor, rateKeyOf, rateScopeOf, type Principal } from './principal.js';
import type { RateLimiter } from './rate-limit.js';
import { logUpgrade } from './request-log.js';
import type { ServeContext } from './serve-context.js';
import { tokenWatchOf } from './token-check.js';
import { feedEventOfView, readTransactionView } from './transaction-status.js';
import { UUID_PATTERN } from '../domain/ids.js';

/** Largest subscribe message accepted from a client. */
const CLIENT_MESSAGE_BYTES_MAX = 1024;

function feedClientOf(socket: WebSocket): FeedClient {
  return {
    send: (text) => socket.send(text),
    get bufferedBytes() {
      return socket.bufferedAmount;
    },
    close: (code, reason) => socket.close(code, reason),
  };
}

function sendError(client: FeedClient, code: string, message: string, details: unknown = null): void {
  client.send(JSON.stringify({ error: { code, message, details } }));
}

/** Parses one client message into a subscription, or says what is wrong with it. */
export function parseSubscribe(text: string): Subscription | { error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { error: 'not JSON: send {"subscribe":"transaction","id":"<uuid>"}, {"subscribe":"account","id":<n>} or {"subscribe":"all"}' };
  }
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as { subscribe?: unknown; id?: unknown };
  if (o.subscribe === 'transaction' && typeof o.id === 'string' && UUID_PATTERN.test(o.id))
    return { kind: 'transaction', id: o.id.toLowerCase() };
  if (o.subscribe === 'account' && Number.isSafeInteger(o.id) && (o.id as number) >= 1) return { kind: 'account', id: o.id as number };
  if (o.subscribe === 'all') return { kind: 'all' };
  return { error: 'expected {"subscribe":"transaction","id":"<uuid>"}, {"subscribe":"account","id":<n>} or {"subscribe":"all"}' };
}

async function subscribe(ctx: ServeContext, hub: FeedHub, client: FeedClient, principal: Principal, sub: Subscription): Promise<void> {
  if (sub.kind === 'all' && principal.kind !== 'admin') return sendError(client, 'forbidden', 'only an admin token may subscribe to all');
  if (sub.kind === 'account' && !mayActFor(principal, sub.id))
    return sendError(client, 'forbidden', `this token may not follow account ${sub.id}`);
  const result = hub.subscribe(client, sub);
  if (result === 'too_many') return sendError(client, 'too_many_subscriptions', 'too many subscriptions on one connection');
  // Held already: its current state was sent (or is on its way); no second read of the database.
  if (result === 'already' || sub.kind !== 'transaction') return client.send(JSON.stringify({ subscribed: sub }));
  // Subscribed before reading, so an outcome that commits in between is not missed; the hub sends a
  // final state only once whichever way it comes.
  let view;
  try {
    view = await readTransactionView(ctx.db, sub.id);
  } catch (err) {
    hub.unsubscribeTransaction(client, sub.id); // so that subscribing again reads again
    throw err;
  }
  // Not seen yet, or another account's: both wait, answered alike (`status: unknown`), so the feed
  // does not tell which ids exist — as GET answers 404 for both. A client may subscribe before it
  // posts; the hub delivers only events of accounts the token may see, so another's shows nothing.
  hub.answerSubscribe(client, sub.id, view && mayActFor(principal, view.accountId) ? feedEventOfView(view) : null);
}

/**
 * `GET /v1/stream` as a WebSocket. The token comes with the upgrade (`?token=` or `Authorization`),
 * checked by the auth hook before the upgrade, so a bad one is an HTTP 401. Subscriptions arrive as
 * JSON messages; each state change is one JSON event. Every message counts against the token's
 * `limiter` bucket (its account's, for an account token) like a request (a subscribe costs database
 * reads). Ping every `heartbeatMs`; a client that did not answer the previous ping is cut off. A
 * socket whose token is revoked or expires is closed with 1008 (see TokenWatch).
 */
export function streamRoutes(app: FastifyInstance, ctx: ServeContext, limiter: RateLimiter): void {
  const { hub } = ctx;
  const tokens = tokenWatchOf(app, ctx);
  app.get(
    '/v1/stream',
    {
      websocket: true,
      schema: {
        summary: 'Live feed (WebSocket): subscribe to a transaction, an account, or all (admin)',
        tags: ['feed'],
        security: [{ bearer: [] }],
      },
    },
    (socket, request) => {
      logUpgrade(request);
      const principal = principalOf(request);
      const client = feedClientOf(socket);
      hub.add(client, principal);
      tokens.admit(principal);
      let alive = true;
      // The listener is attached at once: messages sent while an async setup ran would be lost.
      socket.on('message', (data, isBinary) => {
        if (socket.readyState !== socket.OPEN) return; // closing (its token ended, say): subscribes are moot
        const decision = limiter.take(rateKeyOf(principal));
        // Said as the feed sees it: this one message was dropped (the socket stays open and keeps
        // its subscriptions), whose limit it hit, and when sending it again will work.
        if (!decision.allowed)
          return sendError(
            client,
            'rate_limited',
            `message ignored: ${rateScopeOf(principal)} sent more than ${ctx.options.rateLimitPerS} requests and feed messages a second; your subscriptions are unchanged, send it again in ${decision.retryAfterS} s`,
            { retryAfterS: decision.retryAfterS },
          );
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        if (isBinary || bytes.length > CLIENT_MESSAGE_BYTES_MAX)
          return sendError(client, 'invalid_message', `send JSON text of at most ${CLIENT_MESSAGE_BYTES_MAX} bytes`);
        const sub = parseSubscribe(bytes.toString('utf8'));
        if ('error' in sub) return sendError(client, 'invalid_message', sub.error);
        subscribe(ctx, hub, client, principal, sub).catch((err: Error) => {
          request.log.warn({ err: err.message }, 'feed subscribe failed');
          sendError(client, 'unavailable', 'could not read the current state; try again');
        });
      });
      socket.on('pong', () => (alive = true));
      const heartbeat = setInterval(() => {
        if (!alive) {
          socket.terminate();
          return;
        }
        alive = false;
        socket.ping();
      }, ctx.options.heartbeatMs);
      heartbeat.unref();
      socket.on('close', () => {
        clearInterval(heartbeat);
        hub.remove(client);
      });
      socket.on('error', () => socket.terminate());
    },
  );
}
