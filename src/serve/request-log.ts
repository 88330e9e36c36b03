import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * The one log line per request (method, path, status, ms), with any token in the query masked: URLs
 * are logged, tokens never. Most requests are logged when their response is sent; a WebSocket upgrade
 * has no response Fastify sees (the socket is handed over), so its route logs it at the upgrade.
 */

/** Query parameter names whose values are never logged (compared lowercased, after decoding). */
const SECRET_NAMES: ReadonlySet<string> = new Set(['token']);

/**
 * The path of a request with the value of every `token` query parameter masked as `***`. The name is
 * compared as the server's query parser reads it (`%74oken` is `token` there, and authenticates),
 * and a name that is percent-encoded at all is masked whatever it decodes to: no decoder quirk (a
 * malformed escape, say) can then let a token through.
 */
export function loggablePath(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const pairs = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      const name = pair.slice(0, eq);
      return name.includes('%') || SECRET_NAMES.has(name.replace(/\+/g, ' ').toLowerCase()) ? `${name}=***` : pair;
    });
  return `${url.slice(0, q)}?${pairs.join('&')}`;
}

/** When each request arrived (performance.now()), for an upgrade's `ms`: Fastify times only replies it sends. */
const startedAtMs = new WeakMap<IncomingMessage, number>();

/** Notes when a request arrived (the first onRequest hook). */
export function markRequestStart(request: FastifyRequest): void {
  startedAtMs.set(request.raw, performance.now());
}

/** The line of a request answered through Fastify's reply. */
export function logResponse(request: FastifyRequest, reply: FastifyReply): void {
  request.log.info(
    { method: request.method, path: loggablePath(request.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
    'request',
  );
}

/** The line of a WebSocket upgrade (101), from the route's handler once the socket is open. */
export function logUpgrade(request: FastifyRequest): void {
  const start = startedAtMs.get(request.raw);
  const ms = start === undefined ? null : Math.round(performance.now() - start);
  request.log.info({ method: request.method, path: loggablePath(request.url), status: 101, ms }, 'request');
}
