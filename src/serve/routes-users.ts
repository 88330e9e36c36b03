import type { FastifyInstance } from 'fastify';
import { findUser, registerUser, UsernameTakenError } from '../db/api-tokens.js';
import { minorUnitExponentOf } from '../domain/currency-exponents.js';
import { ApiError, invalid } from './api-error.js';
import { tokenAuthenticatorOf } from './auth.js';
import { DUMMY_PASSWORD_HASH, hashPassword, newToken, passwordMatches } from './credentials.js';
import { insertToken } from '../db/api-tokens.js';
import type { ServeContext } from './serve-context.js';

/** Account tokens made by register and login live this long. */
export const SESSION_TTL_MS = 30 * 86_400_000;

const CREDENTIALS = {
  username: { type: 'string', pattern: '^[A-Za-z0-9_.@-]{3,64}$' },
  password: { type: 'string', minLength: 8, maxLength: 200 },
} as const;

/**
 * `POST /v1/users` (register: a new customer account and its token) and `POST /v1/sessions` (login).
 * Each token they store is handed to the server's authenticator as already valid: its owner's address
 * may be one a guesser has limited (a shared NAT), and a token never seen would wait there like a guess.
 */
export function userRoutes(app: FastifyInstance, ctx: ServeContext): void {
  const tokens = tokenAuthenticatorOf(ctx);
  app.post<{ Body: { username: string; password: string; currency?: string } }>(
    '/v1/users',
    {
      config: { public: true, credentials: true },
      schema: {
        summary: 'Register: creates a customer account (balance 0) and returns a token for it',
        tags: ['auth'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['username', 'password'],
          properties: { ...CREDENTIALS, currency: { type: 'string', pattern: '^[A-Z]{3}$', default: 'EUR' } },
        },
      },
    },
    async (request, reply) => {
      const { username, password } = request.body;
      const currency = request.body.currency ?? 'EUR';
      if (minorUnitExponentOf(currency) === null)
        throw invalid('currency is not an active ISO 4217 currency', [
          { path: '/currency', message: `${currency} is not one (e.g. EUR, USD, JPY)` },
        ]);
      const token = newToken();
      const now = new Date();
      let accountId: number;
      try {
        ({ accountId } = await registerUser(ctx.db, {
          username,
          passwordHash: await hashPassword(password),
          currency,
          token: {
            id: token.id,
            secretHash: token.secretHash,
            isAdmin: false,
            label: `user ${username}`,
            createdAt: now,
            expiresAt: new Date(now.getTime() + SESSION_TTL_MS),
          },
        }));
      } catch (err) {
        if (err instanceof UsernameTakenError) throw new ApiError(409, 'conflict', `username ${username} is taken`);
        throw err;
      }
      tokens.issued(token);
      return reply.code(201).header('location', `/v1/accounts/${accountId}`).send({ username, accountId, currency, token: token.token });
    },
  );

  app.post<{ Body: { username: string; password: string } }>(
    '/v1/sessions',
    {
      config: { public: true, credentials: true },
      schema: {
        summary: 'Login: username and password → a new account token',
        tags: ['auth'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['username', 'password'],
          properties: { username: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: 200 } },
        },
      },
    },
    async (request, reply) => {
      const user = await findUser(ctx.db, request.body.username);
      // An unknown user costs one scrypt too, so timing does not tell which usernames exist.
      const ok = await passwordMatches(request.body.password, user?.passwordHash ?? DUMMY_PASSWORD_HASH);
      if (!user || !ok) throw new ApiError(401, 'unauthorized', 'wrong username or password');
      const token = newToken();
      const now = new Date();
      await insertToken(ctx.db, {
        id: token.id,
        secretHash: token.secretHash,
        isAdmin: false,
        accountId: user.accountId,
        label: `session ${user.username}`,
        createdAt: now,
        expiresAt: new Date(now.getTime() + SESSION_TTL_MS),
      });
      tokens.issued(token);
      return reply
        .code(201)
        .send({ accountId: user.accountId, token: token.token, expiresAt: new Date(now.getTime() + SESSION_TTL_MS).toISOString() });
    },
  );
}
