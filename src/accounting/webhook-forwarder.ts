import type { Knex } from '../db/knex.js';
import { encodeAccountingEvent, type AccountingEvent } from '../domain/accounting-event.js';
import type { Logger } from '../log.js';
import { abortableSleep, retryDb } from './retry-db.js';
import { deliverWebhook, type WebhookRetryPolicy, type WebhookTransport } from './webhook-delivery.js';
import {
  addWebhookAttempts,
  claimOrphanedDelivery,
  LEASE_REFRESH_IDS_MAX,
  listOrphanedDeliveries,
  recordWebhookOutcome,
  touchPendingDeliveries,
} from '../db/statements.js';

/**
 * The webhook side of `txsim accounting --webhook`: sends stored events to the receiver (with
 * retries), records each outcome, and counts every attempt exactly once. Two paths lead here:
 *
 * - the statements consumer forwards each event of a message it holds, and acks the message once the
 *   outcome is recorded;
 * - the sweeper sends deliveries left `pending` with no message to bring them back: the consumer that
 *   stored them crashed and the redelivered events were then acknowledged by one running without
 *   --webhook (it keeps statements only). It looks for pending rows nobody has worked on for
 *   `orphanAfterMs`, takes each over with a conditional UPDATE (one consumer wins), and sends it.
 *
 * Who works on a pending row shows in its `updated_at`, the lease (see the lease queries in
 * db/statements.ts): every `touchEveryMs`, one UPDATE refreshes the lease of every delivery this
 * forwarder has in progress — on the wire, waiting between attempts, or waiting for one of the
 * `concurrencyMax` POST slots — so a row a consumer still means to send never looks abandoned, however
 * long its turn takes. Lease times are the database server's, not this process's: consumers whose
 * clocks disagree still agree on which rows are stale.
 *
 * In one process, one forward per event at a time: a second one for the same event (a redelivered
 * copy, the sweeper) waits for the first instead of sending beside it. Across processes, a redelivered
 * event may still be sent while a sweeper sends it too; that is the at-least-once a receiver already
 * handles by the event id.
 */

/** Settings of the forwarder. Units in the names. */
export interface WebhookForwarderOptions {
  readonly url: string;
  readonly secret: string;
  readonly policy: WebhookRetryPolicy;
  /** POSTs (with their retries) in progress at once, both paths together. */
  readonly concurrencyMax: number;
  /**
   * A pending delivery whose lease nobody has refreshed for this long (on the database server's clock) is
   * taken over by the sweeper; leases are refreshed every quarter of it. See `orphanAfterMsMin`.
   */
  readonly orphanAfterMs: number;
}

export interface WebhookForwarderDeps {
  readonly db: Knex;
  readonly log: Logger;
  readonly transport: WebhookTransport;
  /** Counters shared with the consumer's metrics; each is raised here and nowhere else. */
  readonly metrics: { webhooksDelivered: number; webhooksFailed: number; webhookAttempts: number; webhooksTakenOver: number };
  /** Aborted at shutdown: no new attempt, no new sweep. */
  readonly shutdown: AbortSignal;
  /** Aborted when the shutdown deadline passes: attempts still on the wire are cut. */
  readonly hardStop: AbortSignal;
}

/** Most pending deliveries one sweep step reads and takes over before it waits for them to be sent. */
export const SWEEP_PAGE_MAX = 100;

/**
 * The shortest orphan window `--webhook-orphan-after` accepts: twice (the longest wait between attempts +
 * the longest attempt). It dates from when a lease was refreshed only before an attempt, so the window
 * had to span a wait and an attempt; leases now have their own timer (every quarter window, whatever the
 * delivery is doing), and the floor is kept so that the flag's limits and the default stay as they were.
 */
export function orphanAfterMsMin(policy: Pick<WebhookRetryPolicy, 'backoffMaxMs'>, attemptTimeoutMs: number): number {
  return 2 * (policy.backoffMaxMs + attemptTimeoutMs);
}

/** Default orphan window: a minute, or longer when the retry settings need it. */
export function defaultOrphanAfterMs(policy: Pick<WebhookRetryPolicy, 'backoffMaxMs'>, attemptTimeoutMs: number): number {
  return Math.max(60_000, orphanAfterMsMin(policy, attemptTimeoutMs));
}

export class WebhookForwarder {
  /** One forward per event at a time in this process; the value settles true once the event has an outcome. */
  private readonly inProgress = new Map<string, Promise<boolean>>();
  private readonly slots: Slots;
  /** Refreshes the lease of every event in `inProgress`, one statement a tick. */
  private readonly leases: LeaseKeeper;
  private readonly touchEveryMs: number;
  private readonly sweepEveryMs: number;
  private sweeping: Promise<void> | null = null;

  constructor(
    private readonly options: WebhookForwarderOptions,
    private readonly deps: WebhookForwarderDeps,
  ) {
    this.slots = new Slots(options.concurrencyMax);
    this.touchEveryMs = options.orphanAfterMs / 4;
    this.leases = new LeaseKeeper(
      this.touchEveryMs,
      () => [...this.inProgress.keys()],
      (ids) => this.refreshLeases(ids),
      deps.hardStop,
    );
    // Often enough that an orphan waits about one window; never more than every 30 s or less than every second.
    this.sweepEveryMs = Math.min(30_000, Math.max(1_000, options.orphanAfterMs / 2));
  }

  /**
   * Sends a stored event's webhook for a message the caller holds, and records the outcome: true once
   * the event has one (recorded here, or by another copy), false when `stop` (shutdown, or the loss of the
   * message's channel) came first. `repeat`: the event was stored before (a redelivery), so its lease is
   * refreshed at once rather than at the next tick; a new row was written just now, its lease with it.
   */
  async forward(event: AccountingEvent, startedMs: number, stop: AbortSignal, repeat: boolean): Promise<boolean> {
    for (let running = this.inProgress.get(event.eventId); running; running = this.inProgress.get(event.eventId)) {
      // Already being sent here (the sweeper took it over, or a lost channel's last attempt is on the
      // wire): wait for that one rather than POST beside it, then carry on only if it ended without an outcome.
      const done = await untilAborted(running, stop);
      if (stop.aborted) return false;
      if (done) return true;
    }
    const task = this.start(event, startedMs, stop);
    // Its row may have gone unrefreshed for long (the consumer that held it died): renew it before a
    // sweeper elsewhere finds it stale. One statement for every lease held, as a tick.
    if (repeat) this.leases.refreshNow();
    return task;
  }

  /** Starts looking for abandoned pending deliveries: now, then every `sweepEveryMs` until shutdown. */
  startSweeping(): void {
    this.sweeping ??= this.sweepLoop();
  }

  /** Resolves once the sweeper has stopped (after shutdown), with what it was sending, and no lease refresh is running. */
  async stopped(): Promise<void> {
    await this.sweeping;
    await this.leases.settled();
  }

  private async sweepLoop(): Promise<void> {
    const { log, shutdown } = this.deps;
    while (!shutdown.aborted) {
      try {
        await this.sweep();
      } catch (err) {
        log.warn(
          { err: (err as Error).message, retryInMs: this.sweepEveryMs },
          'looking for pending webhook deliveries failed; trying again',
        );
      }
      await abortableSleep(this.sweepEveryMs, shutdown);
    }
  }

  /**
   * One pass over the abandoned pending deliveries, oldest first, a page at a time: each is taken over and
   * sent (through the same slots as the consumer's), and the next page is read once this one is done.
   */
  private async sweep(): Promise<void> {
    const { db, log, shutdown } = this.deps;
    let cursor: { createdAt: Date; eventId: string } | null = null;
    const pageMax = Math.min(this.options.concurrencyMax, SWEEP_PAGE_MAX);
    for (;;) {
      if (shutdown.aborted) return;
      const page = await listOrphanedDeliveries(db, { orphanAfterMs: this.options.orphanAfterMs, cursor, limit: pageMax });
      const last = page.at(-1);
      if (!last) return;
      cursor = { createdAt: last.createdAt, eventId: last.event.eventId };
      const sends: Promise<boolean>[] = [];
      for (const { event, createdAt } of page) {
        if (shutdown.aborted) break;
        if (this.inProgress.has(event.eventId)) continue;
        if (!(await claimOrphanedDelivery(db, event.eventId, this.options.orphanAfterMs))) continue;
        // A redelivered copy may have started meanwhile (the claim was awaited): it sends, not this.
        if (this.inProgress.has(event.eventId)) continue;
        this.deps.metrics.webhooksTakenOver++;
        log.info(
          { eventId: event.eventId, storedAt: createdAt.toISOString() },
          'webhook delivery left pending by an earlier consumer; sending it',
        );
        // The give-up clock runs from when the delivery was first stored, as for a redelivered event.
        sends.push(this.start(event, createdAt.getTime(), shutdown));
      }
      await Promise.all(sends);
      if (page.length < pageMax) return;
    }
  }

  /**
   * Sends in a slot (the bound on POSTs at once), registered as this event's forward until it ends: its
   * lease is refreshed from now on, while it waits for the slot as while it is sent.
   */
  private start(event: AccountingEvent, startedMs: number, stop: AbortSignal): Promise<boolean> {
    const { eventId } = event;
    const task: Promise<boolean> = this.slots
      .run(() => this.deliver(event, startedMs, stop), stop)
      .then((done) => done === true)
      .finally(() => {
        if (this.inProgress.get(eventId) === task) this.inProgress.delete(eventId);
        if (this.inProgress.size === 0) this.leases.idle();
      });
    this.inProgress.set(eventId, task);
    this.leases.hold();
    return task;
  }

  /**
   * Refreshes the leases of `ids`, a statement per LEASE_REFRESH_IDS_MAX of them (one, unless thousands
   * are in progress). Never throws: a missed refresh is tried again at the next tick, and only several in
   * a row let another consumer take these deliveries over (then they may be sent twice: at least once).
   */
  private async refreshLeases(ids: readonly string[]): Promise<void> {
    for (let from = 0; from < ids.length; from += LEASE_REFRESH_IDS_MAX) {
      try {
        await touchPendingDeliveries(this.deps.db, ids.slice(from, from + LEASE_REFRESH_IDS_MAX));
      } catch (err) {
        this.deps.log.warn(
          { err: (err as Error).message, deliveries: ids.length, retryInMs: this.touchEveryMs },
          'webhook lease refresh failed; trying again at the next tick',
        );
        return;
      }
    }
  }

  /**
   * POSTs one event, with retries, and records how it ended. The give-up clock runs from `startedMs`.
   * Every attempt is counted once: by the outcome when this forward records it, else added on its own
   * (stopped part-way, or another copy's outcome came first).
   */
  private async deliver(event: AccountingEvent, startedMs: number, stop: AbortSignal): Promise<boolean> {
    const { db, log, metrics } = this.deps;
    const { eventId } = event;
    const wlog = log.child({ eventId });
    const result = await deliverWebhook(
      this.deps.transport,
      { url: this.options.url, eventId, body: encodeAccountingEvent(event) },
      this.options.secret,
      this.options.policy,
      stop,
      {
        startedMs,
        // Not `stop`: an attempt on the wire when the channel goes may finish, and its outcome is recorded.
        attemptSignal: this.deps.hardStop,
        onAttempt: () => metrics.webhookAttempts++,
        onRetry: ({ attempt, delayMs, result: r }) =>
          wlog.info(
            {
              attempt,
              retryInMs: delayMs,
              ...(r.kind === 'response' ? { status: r.status } : r.kind === 'error' ? { code: r.code } : {}),
            },
            'webhook not accepted; retrying',
          ),
      },
    );
    // Stopped mid-delivery: no outcome to record (the event comes back, redelivered or swept), but the attempts were made.
    if (result.status === 'aborted') {
      await this.countAttempts(eventId, result.attempts, wlog);
      return false;
    }
    // Tried at least once even when `stop` has aborted meanwhile: the outcome only lands on a row still pending.
    // One `finishedAt` for every try: a try applied but whose reply was lost leaves this mark, so the next
    // try recognises the outcome as this one instead of another copy's (and does not add its attempts twice).
    const finishedAt = new Date();
    const recorded = await retryDb(wlog, 'record webhook outcome', () => recordWebhookOutcome(db, eventId, result, finishedAt), stop);
    if (!recorded) {
      await this.countAttempts(eventId, result.attempts, wlog);
      return false;
    }
    // Another copy's outcome came first (a redelivery raced this one): its outcome stands, these attempts are added.
    if (!recorded.value) {
      await this.countAttempts(eventId, result.attempts, wlog);
      return true;
    }
    if (result.status === 'delivered') metrics.webhooksDelivered++;
    else {
      metrics.webhooksFailed++;
      wlog.warn(
        { attempts: result.attempts, status: result.responseStatus, err: result.lastError, gaveUp: result.gaveUp },
        'webhook delivery failed; recorded',
      );
    }
    return true;
  }

  /**
   * Adds attempts that no recorded outcome carries. Retried until the shutdown deadline (not only while
   * the channel lives): a lost channel is exactly when these happen.
   */
  private async countAttempts(eventId: string, attempts: number, wlog: Logger): Promise<void> {
    if (attempts === 0) return;
    const counted = await retryDb(
      wlog,
      'count webhook attempts',
      () => addWebhookAttempts(this.deps.db, eventId, attempts),
      this.deps.hardStop,
    );
    if (!counted) wlog.warn({ attempts }, 'webhook attempts made without an outcome could not be counted before shutdown');
  }
}

/**
 * Keeps the leases of the deliveries in progress fresh: every `everyMs` while there are any, one refresh
 * of all of them, never a statement per row. One refresh runs at a time; one asked for meanwhile (a tick
 * of a slow database, a redelivered event) runs right after it, with every id held by then.
 */
class LeaseKeeper {
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly everyMs: number,
    private readonly ids: () => readonly string[],
    /** Must not throw. */
    private readonly refresh: (ids: readonly string[]) => Promise<void>,
    /** Once aborted (the shutdown deadline: what is left is being cut), no refresh starts. */
    private readonly stop: AbortSignal,
  ) {}

  /** Something is in progress: tick, if not ticking already. Unref'd: a lease never keeps the process alive. */
  hold(): void {
    this.timer ??= setInterval(() => this.refreshNow(), this.everyMs).unref();
  }

  /** Nothing is in progress: no tick until the next `hold`. */
  idle(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Refreshes every lease held, now or, when a refresh is running, right after it. */
  refreshNow(): void {
    if (this.refreshing) {
      this.again = true;
      return;
    }
    const ids = this.ids();
    if (ids.length === 0 || this.stop.aborted) return;
    this.refreshing = this.refresh(ids).finally(() => {
      this.refreshing = null;
      if (!this.again) return;
      this.again = false;
      this.refreshNow();
    });
  }

  /** Resolves once no refresh is running. */
  async settled(): Promise<void> {
    while (this.refreshing) await this.refreshing;
  }
}

/** Resolves with `task`'s value, or undefined as soon as `signal` aborts. */
async function untilAborted<T>(task: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return undefined;
  let onAbort = () => {};
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([task, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * At most `max` tasks at once; the others wait their turn, first come first served. A waiting task
 * whose signal aborts leaves the line without starting (null), so the work of a lost channel does
 * not hold a place ahead of the redelivered copies of the same events.
 */
class Slots {
  private free: number;
  /** Each resolves its waiter's turn: the slot passes to it directly (`free` is not raised in between). */
  private readonly waiting: (() => void)[] = [];
  constructor(max: number) {
    this.free = max;
  }

  async run<T>(task: () => Promise<T>, signal: AbortSignal): Promise<T | null> {
    if (signal.aborted) return null;
    if (this.free > 0) this.free--;
    else if (!(await this.turn(signal))) return null;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }

  /** Waits in line: true when the slot is handed over, false when `signal` aborted first (out of line). */
  private turn(signal: AbortSignal): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const onTurn = () => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(onTurn);
        if (at >= 0) this.waiting.splice(at, 1);
        resolve(false);
      };
      this.waiting.push(onTurn);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
