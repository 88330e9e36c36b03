import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { isConnectionError } from '../db/with-transaction.js';
import { MAX_BODY_BYTES } from '../domain/message-schema.js';
import { ApiError, errorBody, violationsOf } from './api-error.js';
import { bearerOf, tokenAuthenticatorOf } from './auth.js';
import { notJsonMessage } from './json-body.js';
import { rateKeyOf, rateScopeOf } from './principal.js';
import { RateLimiter, rateKeyOfAddress } from './rate-limit.js';
import { loggablePath, logResponse, markRequestStart } from './request-log.js';
import { accountRoutes } from './routes-accounts.js';
import { analyticsRoutes } from './routes-analytics.js';
import { dashboardRoutes } from './routes-dashboard.js';
import { healthRoutes } from './routes-health.js';
import { streamRoutes } from './routes-stream.js';
import { transactionRoutes } from './routes-transactions.js';
import { userRoutes } from './routes-users.js';
import { webhookRoutes } from './routes-webhooks.js';
import type { ServeContext } from './serve-context.js';
import { RETRY_AFTER_S } from './submit.js';
import { compileValidator } from './validation.js';

/** The OpenAPI entry of the WebSocket feed (`GET /v1/stream`, upgraded). */
const STREAM_PATH_ITEM = {
  get: {
    summary: 'Live feed (WebSocket upgrade): subscribe to a transaction, an account, or all (admin)',
    description:
      'Token as `?token=` or `Authorization: Bearer`. Send `{"subscribe":"transaction","id":"<uuid>"}`, `{"subscribe":"account","id":<n>}` or `{"subscribe":"all"}`; receive one JSON event per state change `{event, transactionId, accountId, type, amountMinor, currency, balanceAfterMinor, reason, at}`. A connection that only follows transactions is closed with 1000 after the last final state; a client too slow to read is closed with 1013.',
    tags: ['feed'],
    security: [{ bearer: [] }],
    parameters: [{ name: 'token', in: 'query', required: false, schema: { type: 'string' } }],
    responses: { '101': { description: 'Switching Protocols: the WebSocket feed' }, '401': { description: 'No token, or a bad one' } },
  },
};

/**
 * Builds the Fastify app of `txsim serve`: the error format, auth and rate limiting, OpenAPI at
 * /openapi.json and Swagger UI at /docs, and the routes, one file per group. Listening is the
 * caller's (tests listen on port 0).
 */
export async function buildServer(ctx: ServeContext): Promise<FastifyInstance> {
  const loggerInstance: FastifyBaseLogger = ctx.log;
  const app = Fastify({
    loggerInstance,
    // One line per request, written in onResponse below (an upgrade: by its route), with the token masked.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: MAX_BODY_BYTES,
    // Behind a load balancer several servers run; each request's id is its own.
    requestIdHeader: false,
    // X-Forwarded-For is read only from the proxies named (a client could write it itself otherwise).
    trustProxy: ctx.options.trustProxy.length > 0 ? [...ctx.options.trustProxy] : false,
  });
  app.setValidatorCompiler(compileValidator);
  // JSON only: any other body is a 415, not a string handed to a JSON schema.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('principal', null);
  setErrorHandling(app, ctx);

  await app.register(fastifySwagger, {
    // @fastify/websocket hides WebSocket routes from the document; the feed is described by hand.
    transformObject: (documents) => {
      const doc = (documents as { openapiObject: { paths?: Record<string, unknown> } }).openapiObject;
      doc.paths = { ...doc.paths, '/v1/stream': STREAM_PATH_ITEM };
      return doc as never;
    },
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'txsim API',
        version: '1.0.0',
        description: 'Transactions in, their state out: ingest, status, balances, history, daily figures, a live feed.',
      },
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'txsim_<id>_<secret>, from `txsim tokens create`, POST /v1/users or POST /v1/sessions',
          },
        },
      },
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  await app.register(fastifyWebsocket, { options: { maxPayload: 4096 } });

  const limiter = new RateLimiter({ ratePerS: ctx.options.rateLimitPerS, burst: ctx.options.rateLimitBurst, keysMax: 100_000 });
  // Password guessing and scrypt's cost: a login or registration is limited per client address (IPv6: per /64).
  const perMin = ctx.options.credentialRateLimitPerMin;
  const credentialLimiter = new RateLimiter({ ratePerS: perMin / 60, burst: perMin, keysMax: 100_000 });
  // Token guessing and the database read each check costs: failed checks are limited per client address.
  // The same authenticator is told of the tokens login and registration issue (userRoutes).
  const tokens = tokenAuthenticatorOf(ctx);
  app.addHook('onRequest', async (request, reply) => {
    markRequestStart(request);
    const url = request.url;
    if (request.routeOptions.config.credentials) {
      const decision = credentialLimiter.take(rateKeyOfAddress(request.ip));
      if (!decision.allowed) {
        void reply.header('retry-after', String(decision.retryAfterS));
        throw new ApiError(
          429,
          'rate_limited',
          `more than ${perMin} logins and registrations a minute from this address`,
          null,
          decision.retryAfterS,
        );
      }
    }
    if (request.routeOptions.config.public || url.startsWith('/docs') || url === '/openapi.json') return;
    if (!request.routeOptions.url) return; // no route: the 404 handler answers
    request.principal = await tokens.authenticate(bearerOf(request), request.ip);
    const decision = limiter.take(rateKeyOf(request.principal));
    if (!decision.allowed) {
      void reply.header('retry-after', String(decision.retryAfterS));
      throw new ApiError(
        429,
        'rate_limited',
        `more than ${ctx.options.rateLimitPerS} requests/s for ${rateScopeOf(request.principal)}`,
        null,
        decision.retryAfterS,
      );
    }
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the URL: an id in a label would make a series per account.
    ctx.onResponse?.(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime);
    logResponse(request, reply);
  });

  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
  healthRoutes(app, ctx);
  userRoutes(app, ctx);
  transactionRoutes(app, ctx);
  webhookRoutes(app, ctx);
  accountRoutes(app, ctx);
  analyticsRoutes(app, ctx);
  // The feed's messages draw on the same buckets as requests (per account, or per admin token).
  streamRoutes(app, ctx, limiter);
  dashboardRoutes(app, ctx);
  return app;
}

/** Every error becomes `{ error: { code, message, details } }` with its status; unexpected ones are logged. */
function setErrorHandling(app: FastifyInstance, ctx: ServeContext): void {
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(errorBody('not_found', `no route ${request.method} ${loggablePath(request.url)}`)),
  );
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof ApiError) {
      if (err.retryAfterS !== null) void reply.header('retry-after', String(err.retryAfterS));
      return reply.code(err.statusCode).send(errorBody(err.code, err.message, err.details));
    }
    if (err.validation) {
      const where = err.validationContext ?? 'request';
      return reply.code(400).send(errorBody('invalid_request', `${where} is invalid`, violationsOf(err.validation as never)));
    }
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return reply.code(413).send(errorBody('payload_too_large', `body over ${MAX_BODY_BYTES} bytes`));
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return reply
          .code(415)
          .send(
            errorBody(
              'unsupported_media_type',
              `content type ${String(request.headers['content-type'] ?? '(none)')} is not supported: send application/json`,
            ),
          );
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return reply.code(400).send(errorBody('invalid_json', 'the body is empty'));
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        return reply.code(400).send(errorBody('invalid_json', notJsonMessage(err)));
      default:
    }
    if (isConnectionError(err)) {
      ctx.log.warn({ err: err.message }, 'database unavailable');
      void reply.header('retry-after', String(RETRY_AFTER_S));
      return reply.code(503).send(errorBody('database_unavailable', 'the database is unreachable; try again later'));
    }
    if (err instanceof SyntaxError || err.statusCode === 400) return reply.code(400).send(errorBody('invalid_json', notJsonMessage(err)));
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500)
      return reply.code(err.statusCode).send(errorBody(String(err.code ?? 'bad_request').toLowerCase(), err.message));
    request.log.error({ err }, 'unexpected error');
    return reply.code(500).send(errorBody('internal', 'unexpected error (logged on the server)'));
  });
}
