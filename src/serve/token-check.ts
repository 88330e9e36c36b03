import type { FastifyInstance } from 'fastify';
import { readTokenLifetimes, type TokenLifetime } from '../db/api-tokens.js';
import type { Knex } from '../db/knex.js';
import type { Logger } from '../log.js';
import type { FeedHub } from './feed-hub.js';
import { tokenEndReason } from './auth.js';
import type { Principal } from './principal.js';
import type { ServeContext } from './serve-context.js';

/**
 * A WebSocket's token is checked once, at the upgrade; the feed and the dashboard then stay open for
 * as long as the client likes. This keeps them honest: a socket whose token is revoked or expires is
 * closed with 1008 and gets nothing more.
 */

/** setTimeout's longest delay (about 24.8 days; a longer one fires at once). Login sessions last 30 days. */
const TIMER_DELAY_MS_MAX = 2 ** 31 - 1;

/**
 * Re-checks the tokens of the hub's sockets: each one as its socket opens (which also learns its
 * expiry), then all of them every `intervalMs` in one query, closing the sockets of a revoked one.
 * A token's sockets are closed at its expiry by a timer, with no query. Ticks only while a socket
 * with a token is open.
 *
 * Fail open: when the database cannot be read, sockets stay open and one warning is logged per
 * outage. Closing every live view because the database blinked would turn each outage into a
 * reconnect storm, and the reconnects would fail anyway (the upgrade needs the database too). The
 * cost is bounded: expiry is still enforced by the timers, and a token revoked during an outage is
 * cut off by the first check after it.
 */
export class TokenWatch {
  private ticker: NodeJS.Timeout | null = null;
  private ticking = false;
  private warned = false;
  private readonly expiryTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly db: Knex,
    private readonly hub: FeedHub,
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  /** A socket of `principal` was added to the hub: check its token now, and keep checking while sockets are open. */
  admit(principal: Principal): void {
    if (principal.tokenId === null) return; // --no-auth: there is no token to lose
    if (!this.ticker) {
      this.ticker = setInterval(() => void this.tick(), this.intervalMs);
      this.ticker.unref();
    }
    void this.check([principal.tokenId]);
  }

  /** Stops ticking and forgets every expiry timer. Safe to call twice; a later admit starts again. */
  close(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    for (const timer of this.expiryTimers.values()) clearTimeout(timer);
    this.expiryTimers.clear();
  }

  private async tick(): Promise<void> {
    const ids = this.hub.tokenIds();
    if (ids.size === 0) return this.close();
    for (const [id, timer] of this.expiryTimers) {
      if (ids.has(id)) continue;
      clearTimeout(timer);
      this.expiryTimers.delete(id);
    }
    if (this.ticking) return; // a slow database: one check at a time, never a pile of them
    this.ticking = true;
    try {
      await this.check([...ids]);
    } finally {
      this.ticking = false;
    }
  }

  /** Handles a database error itself: it runs from timers, where a rejection would end the process. */
  private async check(ids: readonly string[]): Promise<void> {
    let lifetimes: Map<string, TokenLifetime>;
    try {
      lifetimes = await readTokenLifetimes(this.db, ids);
    } catch (err) {
      // Fail open (see the class comment).
      if (!this.warned) this.log.warn({ err: (err as Error).message }, 'feed token check failed: sockets kept open');
      this.warned = true;
      return;
    }
    this.warned = false;
    const nowMs = Date.now();
    for (const id of ids) {
      const lifetime = lifetimes.get(id);
      const reason = tokenEndReason(lifetime, nowMs);
      if (reason) this.end(id, reason);
      else if (lifetime?.expiresAt) this.armExpiry(id, lifetime.expiresAt.getTime() - nowMs);
    }
  }

  /** Closes the token's sockets when it expires. One too far ahead for setTimeout is armed by a later tick. */
  private armExpiry(id: string, delayMs: number): void {
    if (this.expiryTimers.has(id) || delayMs > TIMER_DELAY_MS_MAX) return;
    const timer = setTimeout(() => this.end(id, 'token expired'), delayMs);
    timer.unref();
    this.expiryTimers.set(id, timer);
  }

  private end(id: string, reason: string): void {
    clearTimeout(this.expiryTimers.get(id));
    this.expiryTimers.delete(id);
    const closed = this.hub.closeToken(id, reason);
    if (closed > 0) this.log.info({ tokenId: id, reason, sockets: closed }, 'feed sockets closed');
  }
}

const watches = new WeakMap<FeedHub, TokenWatch>();

/**
 * The hub's TokenWatch, made on first use: the feed and the dashboard share it, so one query per
 * tick covers all their sockets. It stops when the app closes.
 */
export function tokenWatchOf(app: FastifyInstance, ctx: ServeContext): TokenWatch {
  let watch = watches.get(ctx.hub);
  if (!watch) {
    const created = new TokenWatch(ctx.db, ctx.hub, ctx.log, ctx.options.heartbeatMs);
    app.addHook('onClose', (_instance, done) => {
      created.close();
      done();
    });
    watches.set(ctx.hub, created);
    watch = created;
  }
  return watch;
}
