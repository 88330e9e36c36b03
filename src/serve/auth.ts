import type { FastifyRequest } from 'fastify';
import { findToken, type TokenLifetime } from '../db/api-tokens.js';
import type { Knex } from '../db/knex.js';
import { ApiError } from './api-error.js';
import { parseToken, secretMatches } from './credentials.js';
import { NO_AUTH_PRINCIPAL, type Principal } from './principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling; set by the auth hook on every route that is not public. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** A route anyone may call without a token (health, docs, register, login). */
    public?: boolean;
    /** Takes a password (login, registration): limited per client address, since it has no token to limit by. */
    credentials?: boolean;
  }
}

const unauthorized = (message: string) => new ApiError(401, 'unauthorized', message);

/** The bearer token of a request: the `Authorization` header, or `?token=` (WebSocket clients cannot set headers). */
export function bearerOf(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
    return match?.[1] ?? null;
  }
  const query = request.query as { token?: unknown } | undefined;
  return typeof query?.token === 'string' ? query.token : null;
}

/**
 * Why a token no longer works at `nowMs` (revoked, or past its expiry), or null while it does. A token
 * that is not there at all counts as revoked. The upgrade's check and the feed's re-check both use it.
 */
export function tokenEndReason(lifetime: TokenLifetime | undefined, nowMs: number): 'token revoked' | 'token expired' | null {
  if (!lifetime || lifetime.revokedAt !== null) return 'token revoked';
  if (lifetime.expiresAt !== null && lifetime.expiresAt.getTime() <= nowMs) return 'token expired';
  return null;
}

/**
 * Resolves a token to its principal: 401 when missing, malformed, unknown, revoked or expired (one
 * message for the last four, so a caller learns nothing about which tokens exist).
 */
export async function authenticate(db: Knex, token: string | null, noAuth: boolean, now: Date = new Date()): Promise<Principal> {
  if (noAuth) return NO_AUTH_PRINCIPAL;
  if (token === null) throw unauthorized('a bearer token is required (Authorization: Bearer <token>)');
  const parsed = parseToken(token);
  const row = parsed ? await findToken(db, parsed.id) : undefined;
  if (!parsed || !row || !secretMatches(parsed.secret, row.secretHash) || tokenEndReason(row, now.getTime()) !== null) {
    throw unauthorized('the token is invalid, revoked or expired');
  }
  if (row.isAdmin) return { kind: 'admin', tokenId: row.id };
  if (row.accountId === null) throw unauthorized('the token is invalid, revoked or expired');
  return { kind: 'account', tokenId: row.id, accountId: row.accountId };
}

/** The principal of a request past the auth hook. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthorized('a bearer token is required (Authorization: Bearer <token>)');
  return request.principal;
}
