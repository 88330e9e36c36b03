import type { Knex } from '../db/knex.js';
import {
  clearRunRefusals,
  finishRun,
  recordRunDrops,
  recordRunFollowUps,
  recordRunRefusals,
  recordRunReturns,
  saveRunInstance,
  saveRunProgress,
  type RunRefusal,
} from '../db/runs.js';
import { isConnectionError, isRetryableDbError } from '../db/with-transaction.js';
import { WHOLE_RUN, type Instance } from './send-schedule.js';

/** How a run ended, as the `runs` row records it (late and dropped go to the instance row of a split run). */
export type RunEnd = Parameters<typeof finishRun>[2] & { readonly late: number; readonly dropped: number };

/** How far a run got, saved every second. */
export interface RunProgressCounts {
  readonly published: number;
  readonly confirmed: number;
  readonly late: number;
  readonly dropped: number;
}

export interface RunRecordHooks {
  /** A save failed (the database is down or unreachable): the counts stay in memory and are saved again. */
  readonly onOutage?: (err: unknown) => void;
  /** A save succeeded after `failedSaves` failures: the record is up to date again. */
  readonly onRecovered?: (failedSaves: number) => void;
}

/** Longest pause between two attempts at the final save. */
const FINISH_RETRY_DELAY_MAX_MS = 2_000;

/**
 * gen's bookkeeping of a run: progress saved every second, the end saved once. Publishing is gen's
 * job, so a database outage must not end the run: a failed progress save is simply superseded by the
 * next one (the counts live in the publisher), and the final save is retried until the database is
 * back or `finish`'s time runs out. The first failure and the recovery are reported once each.
 */
export class RunRecord {
  /** Saves that failed since the last one that succeeded. */
  private failedSaves = 0;
  /** The progress save under way, if any: one at a time (during an outage a save may take seconds to fail). */
  private saving: Promise<void> | null = null;

  /** Dropped ids not saved yet: written with the next save, so a killed run's drops are not taken for losses. */
  private unsavedDrops: string[] = [];
  /** Follow-ups (card flows) published and not saved yet: written with the next save. */
  private unsavedFollowUps: string[] = [];

  constructor(
    private readonly db: Knex,
    readonly runId: string,
    private readonly hooks: RunRecordHooks = {},
    /** The share of the run this gen publishes; a split run saves into its instance row. */
    private readonly instance: Instance = WHOLE_RUN,
  ) {}

  /** An id dropped rather than sent late: recorded with the next save. */
  addDrop(transactionId: string): void {
    this.unsavedDrops.push(transactionId);
  }

  /** A follow-up published: recorded with the next save, so verify --run expects its outcome. */
  addFollowUp(transactionId: string): void {
    this.unsavedFollowUps.push(transactionId);
  }

  /** True while the last save failed (the database has not answered since). */
  get inOutage(): boolean {
    return this.failedSaves > 0;
  }

  /** Saves how far the run got. Never throws; skipped while the previous save is still going. */
  async saveProgress(progress: RunProgressCounts): Promise<void> {
    if (this.saving) return;
    this.saving = this.saveProgressNow(progress).finally(() => {
      this.saving = null;
    });
    await this.saving;
  }

  private async saveProgressNow(progress: RunProgressCounts): Promise<void> {
    try {
      await this.saveDrops();
      if (this.instance.count > 1) await saveRunInstance(this.db, this.runId, this.instance.no, progress);
      else await saveRunProgress(this.db, this.runId, progress);
      this.succeeded();
    } catch (err) {
      this.failed(err);
    }
  }

  /**
   * Saves the end of the run (returned ids, ids the API refused, then the counts and status), after
   * any progress save still under way (which would otherwise write older counts over the final ones),
   * retrying with backoff while the database is unreachable or the save lost a lock race (a deadlock
   * with another instance of the run: every write here is idempotent), for up to `timeoutMs`. Throws
   * the last error after that, or at once for anything else.
   */
  async finish(
    returnedIds: readonly string[],
    end: RunEnd,
    timeoutMs: number,
    http: { readonly refusals: readonly RunRefusal[]; readonly acceptedIds: readonly string[] } | null = null,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.saving;
    for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, FINISH_RETRY_DELAY_MAX_MS)) {
      try {
        await recordRunReturns(this.db, this.runId, returnedIds);
        await this.saveDrops();
        if (http) {
          // A resumed run: an id refused last time and accepted now is no longer a refusal.
          await clearRunRefusals(this.db, this.runId, http.acceptedIds);
          await recordRunRefusals(this.db, this.runId, http.refusals);
        }
        if (this.instance.count > 1) await saveRunInstance(this.db, this.runId, this.instance.no, end);
        else await finishRun(this.db, this.runId, end);
        this.succeeded();
        return;
      } catch (err) {
        if (!isRetryableDbError(err) || Date.now() + delayMs > deadline) throw err;
        // Only an outage is reported as one; a lost lock race is simply tried again.
        if (isConnectionError(err)) this.failed(err);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  /** Writes the drops and follow-ups not saved yet; on failure they stay for the next save. */
  private async saveDrops(): Promise<void> {
    const followUps = this.unsavedFollowUps;
    if (followUps.length > 0) {
      this.unsavedFollowUps = [];
      try {
        await recordRunFollowUps(this.db, this.runId, followUps);
      } catch (err) {
        this.unsavedFollowUps = [...followUps, ...this.unsavedFollowUps];
        throw err;
      }
    }
    const drops = this.unsavedDrops;
    if (drops.length === 0) return;
    this.unsavedDrops = [];
    try {
      await recordRunDrops(this.db, this.runId, drops);
    } catch (err) {
      this.unsavedDrops = [...drops, ...this.unsavedDrops];
      throw err;
    }
  }

  private failed(err: unknown): void {
    if (this.failedSaves++ === 0) this.hooks.onOutage?.(err);
  }

  private succeeded(): void {
    if (this.failedSaves > 0) this.hooks.onRecovered?.(this.failedSaves);
    this.failedSaves = 0;
  }
}
