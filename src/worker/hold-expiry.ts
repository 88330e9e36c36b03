import { expireOneHold, type ExpiryResult } from '../db/hold-expiry.js';
import type { Knex } from '../db/knex.js';
import { uuidV5 } from '../domain/ids.js';
import type { Logger } from '../log.js';

/** Accounting event type of an expiry: a statement line "card hold expired" with the amount released. */
export const HOLD_EXPIRED_EVENT = 'hold_expired';

/** Default sweep interval (`worker --expire-every`). */
export const EXPIRY_INTERVAL_DEFAULT_MS = 1_000;
/**
 * Holds one worker expires per tick at most: expiry is background work and must not take a
 * noticeable share of the database from the batches. With the defaults each worker releases up to
 * 20 holds a second; a hold is released within about one interval of its expiry unless more than
 * that expire at once (then the backlog drains at that rate per worker).
 */
export const EXPIRY_HOLDS_PER_TICK_MAX = 20;

export interface HoldExpiryOptions {
  readonly intervalMs: number;
  readonly holdsPerTickMax?: number;
  readonly now?: () => Date;
}

/** Counters a worker can report (tests read them). */
export interface HoldExpiryCounts {
  expired: number;
  /** Due holds left for a later tick because a batch held their account. */
  busy: number;
  failures: number;
}

/**
 * The worker's hold sweeper: every `intervalMs`, expires due holds one transaction at a time (see
 * db/hold-expiry.ts), up to `holdsPerTickMax`. Every worker runs one; SKIP LOCKED spreads the holds
 * over them without two ever taking the same one. A failed tick (database away) is logged and the
 * next one tries again: expiry is never urgent, a late one is only a hold released late — and a
 * capture or void after `expiresAt` is rejected whether or not the sweep has run.
 */
export class HoldExpiry {
  readonly counts: HoldExpiryCounts = { expired: 0, busy: 0, failures: 0 };
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly db: Knex,
    private readonly options: HoldExpiryOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => {
      // One tick at a time: a slow one (database busy) is not overlapped by the next.
      this.running ??= this.tick().finally(() => (this.running = null));
    }, this.options.intervalMs);
    this.timer.unref();
  }

  /** Expires due holds, at most `holdsPerTickMax`; stops at the first tick with nothing (more) to do. */
  async tick(): Promise<void> {
    const max = this.options.holdsPerTickMax ?? EXPIRY_HOLDS_PER_TICK_MAX;
    let expired = 0;
    // Accounts in a batch right now: their holds wait for the next tick, the others' go on. A busy
    // account adds one to the set each time, so the loop ends within max + (accounts found busy).
    const busy = new Set<number>();
    while (expired < max && busy.size <= max && !this.stopped) {
      let result: ExpiryResult;
      try {
        const event = (holdId: string) => ({ eventId: uuidV5(holdId, 'hold-expired'), type: HOLD_EXPIRED_EVENT });
        result = await expireOneHold(this.db, this.options.now?.() ?? new Date(), event, busy);
      } catch (err) {
        this.counts.failures++;
        this.log.warn({ err: (err as Error).message }, 'hold expiry failed; trying again next tick');
        return;
      }
      if (result.kind === 'none') break;
      if (result.kind === 'busy') {
        // Its account is in a batch right now: the next tick takes it. This one goes on past it, so
        // a hot account's hold (the earliest due for every worker's sweep) holds up no other expiry.
        this.counts.busy++;
        if (busy.has(result.accountId)) break; // cannot come back (passed over in the query), but never loop on it
        busy.add(result.accountId);
        continue;
      }
      expired++;
      this.counts.expired++;
      this.log.debug(
        { holdId: result.holdId, accountId: result.accountId, releasedMinor: result.releasedMinor.toString() },
        'hold expired',
      );
    }
    if (expired > 0) this.log.info({ expired }, 'holds expired');
  }

  /** Stops the timer and waits for a tick in progress. Safe to call twice. */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
