import type { FastifyRequest } from 'fastify';
import { findToken, type TokenLifetime, type TokenRow } from '../db/api-tokens.js';
import { ApiError } from './api-error.js';
import { parseToken, secretMatches, type NewToken } from './credentials.js';
import { NO_AUTH_PRINCIPAL, type Principal } from './principal.js';
import { RateLimiter, rateKeyOfAddress } from './rate-limit.js';
import type { ServeContext } from './serve-context.js';

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
const INVALID_TOKEN = 'the token is invalid, revoked or expired';

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

/** How one bearer-token check ended: looked up and valid, looked up and refused, or refused before any lookup. */
export type TokenCheckResult = 'valid' | 'invalid' | 'limited';

export interface TokenAuthOptions {
  /** `--no-auth`: every request is admin, nothing is looked up. */
  readonly noAuth: boolean;
  /** Failed checks of well-formed tokens a minute per client address (an IPv6 one: per /64), at most that many at once (0 = unlimited). */
  readonly failuresPerMin: number;
  /** Client addresses (IPv6 /64s) with a failure bucket kept at once (the least recently seen is forgotten first). */
  readonly addressesMax: number;
  /** Tokens remembered as seen valid or issued here, by id (the least recently seen is forgotten first). */
  readonly knownTokensMax: number;
  /** Told of every check of a well-formed token (`--no-auth`, a missing or a malformed token are not checks). */
  readonly onCheck?: ((result: TokenCheckResult) => void) | null;
}

/**
 * Resolves bearer tokens to principals, and bounds what wrong ones cost. A token that parses needs a
 * database read to be told from a guess, so failed checks are limited per client address: past
 * `failuresPerMin` of them, that address's tokens are answered 429 (with when to try again) without
 * reading the database. An IPv6 address counts by its /64 (rateKeyOfAddress): one client may send
 * from any address of its prefix. Two things keep honest clients working meanwhile:
 *
 * - A success costs the address nothing: the failure bucket only ever pays for failures.
 * - A token this server has seen valid, or has issued itself (login, registration: `issued`), is
 *   still looked up from a limited address (its id and secret hash are kept, bounded), so a client
 *   that shares an address with a guesser (NAT, a proxy) keeps its service, limited only by its rate
 *   bucket (its account's, or an admin token's own). A token that is neither (made by `txsim tokens
 *   create`, another process; or by another server, or before a restart) cannot be told from a guess
 *   without the database: from a limited address it waits like one.
 *
 * Checks still in flight count against the bucket too (one per distinct token), so a burst of
 * concurrent guesses cannot all reach the database before the first of them fails.
 */
export class TokenAuthenticator {
  private readonly failures: RateLimiter;
  /** Token id → secret hash of tokens seen valid; Map order is recency order. */
  private readonly known = new Map<string, string>();
  /** Per address: the unknown tokens being looked up now, with how many requests carry each. */
  private readonly inFlight = new Map<string, Map<string, number>>();

  constructor(
    private readonly findToken: (id: string) => Promise<TokenRow | undefined>,
    private readonly options: TokenAuthOptions,
    nowMs: () => number = () => performance.now(),
  ) {
    const perMin = options.failuresPerMin;
    this.failures = new RateLimiter({ ratePerS: perMin / 60, burst: perMin, keysMax: options.addressesMax }, nowMs);
  }

  /**
   * The principal of `token`, sent from `address`: 401 when missing, malformed, unknown, revoked or
   * expired (one message for the last four, so a caller learns nothing about which tokens exist); 429
   * when `address` has failed too often and the token is not one seen valid.
   */
  async authenticate(token: string | null, address: string, now: Date = new Date()): Promise<Principal> {
    if (this.options.noAuth) return NO_AUTH_PRINCIPAL;
    if (token === null) throw unauthorized('a bearer token is required (Authorization: Bearer <token>)');
    const parsed = parseToken(token);
    // Refused by its shape, with no read: nothing to limit.
    if (!parsed) throw unauthorized(INVALID_TOKEN);
    const addressKey = rateKeyOfAddress(address);
    const knownHash = this.known.get(parsed.id);
    const trusted = knownHash !== undefined && secretMatches(parsed.secret, knownHash);
    if (!trusted) this.admit(addressKey, token);
    let row: TokenRow | undefined;
    try {
      row = await this.findToken(parsed.id);
    } finally {
      if (!trusted) this.release(addressKey, token);
    }
    const principal = row && secretMatches(parsed.secret, row.secretHash) ? principalOfRow(row, now) : null;
    this.options.onCheck?.(principal ? 'valid' : 'invalid');
    if (!row || !principal) {
      // Forgotten only when the token itself is gone (missing, revoked, expired): a wrong secret sent
      // under a real token's id must not make its owner wait like a guesser.
      if (!row || secretMatches(parsed.secret, row.secretHash)) this.known.delete(parsed.id);
      this.failures.take(addressKey);
      throw unauthorized(INVALID_TOKEN);
    }
    this.remember(row.id, row.secretHash);
    return principal;
  }

  /**
   * A token this server has just stored for its owner (login, registration) is remembered as if a
   * check had found it valid: its first use, from an address a guesser has limited, is looked up
   * rather than made to wait like a guess. Only its id and secret hash are kept, as for any other.
   * Call it once the token is stored: it is still read on every use, and dropped if the read misses.
   */
  issued(token: Pick<NewToken, 'id' | 'secretHash'>): void {
    this.remember(token.id, token.secretHash);
  }

  /** Lets an unknown token of `address` be looked up, or answers 429: its failures, and the checks in flight, are spent. */
  private admit(address: string, token: string): void {
    const pending = this.inFlight.get(address);
    const needed = 1 + (pending?.size ?? 0) - (pending?.has(token) ? 1 : 0);
    const decision = this.failures.peek(address, needed);
    if (!decision.allowed) {
      this.options.onCheck?.('limited');
      throw new ApiError(
        429,
        'rate_limited',
        `too many failed token checks from this address (at most ${this.options.failuresPerMin} a minute); try again in ${decision.retryAfterS} s`,
        null,
        decision.retryAfterS,
      );
    }
    const tokens = pending ?? new Map<string, number>();
    tokens.set(token, (tokens.get(token) ?? 0) + 1);
    this.inFlight.set(address, tokens);
  }

  private release(address: string, token: string): void {
    const tokens = this.inFlight.get(address);
    const count = tokens?.get(token) ?? 0;
    if (count > 1) tokens?.set(token, count - 1);
    else tokens?.delete(token);
    if (tokens?.size === 0) this.inFlight.delete(address);
  }

  private remember(id: string, secretHash: string): void {
    this.known.delete(id); // re-inserted last: Map order is recency order
    this.known.set(id, secretHash);
    if (this.known.size > this.options.knownTokensMax) {
      const oldest = this.known.keys().next().value;
      if (oldest !== undefined) this.known.delete(oldest);
    }
  }
}

/** Failure buckets (client addresses) and tokens remembered, per server; past either the least recently seen goes. */
const ADDRESSES_MAX = 100_000;
const KNOWN_TOKENS_MAX = 100_000;

const authenticators = new WeakMap<ServeContext, TokenAuthenticator>();

/**
 * The server's TokenAuthenticator, made on first use: the auth hook checks tokens with it and the
 * routes that issue tokens (login, registration) tell it of them, so both must hold the same one.
 */
export function tokenAuthenticatorOf(ctx: ServeContext): TokenAuthenticator {
  let authenticator = authenticators.get(ctx);
  if (!authenticator) {
    authenticator = new TokenAuthenticator((id) => findToken(ctx.db, id), {
      noAuth: ctx.options.noAuth,
      failuresPerMin: ctx.options.authFailureRateLimitPerMin,
      addressesMax: ADDRESSES_MAX,
      knownTokensMax: KNOWN_TOKENS_MAX,
      onCheck: ctx.onTokenCheck ?? null,
    });
    authenticators.set(ctx, authenticator);
  }
  return authenticator;
}

/** The principal of a token row whose secret matched, or null when it is revoked, expired or scoped to nothing. */
function principalOfRow(row: TokenRow, now: Date): Principal | null {
  if (tokenEndReason(row, now.getTime()) !== null) return null;
  if (row.isAdmin) return { kind: 'admin', tokenId: row.id };
  if (row.accountId === null) return null;
  return { kind: 'account', tokenId: row.id, accountId: row.accountId };
}

/** The principal of a request past the auth hook. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthorized('a bearer token is required (Authorization: Bearer <token>)');
  return request.principal;
}
