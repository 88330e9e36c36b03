import { createLatencyHistogram, percentilesOf, recordMs, type Percentiles } from '../stats/histogram.js';
import type { LoadProfile } from './load-profile.js';

/** Which share of a run one gen process publishes (`--instance k/n`); `{ no: 1, count: 1 }` is the whole run. */
export interface Instance {
  /** 1..count. */
  readonly no: number;
  readonly count: number;
}

export const WHOLE_RUN: Instance = { no: 1, count: 1 };

/** Parses `--instance k/n` (1 ≤ k ≤ n ≤ 1000). Returns null when the text is not of that shape or out of range. */
export function parseInstance(text: string): Instance | null {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) return null;
  const no = Number(m[1]);
  const count = Number(m[2]);
  return no >= 1 && count >= 1 && no <= count && count <= 1000 ? { no, count } : null;
}

/** Index i of a run belongs to instance (i mod n) + 1: interleaved, so every instance follows the whole profile. */
export function instanceOfIndex(index: number, instanceCount: number): number {
  return (index % instanceCount) + 1;
}

/** How many of a run's `count` indices belong to instance `no` of `n`. */
export function instanceShare(count: number, instance: Instance): number {
  return count >= instance.no ? Math.floor((count - instance.no) / instance.count) + 1 : 0;
}

/** Indices in [from, to) that belong to the instance. */
function countCongruent(from: number, to: number, instance: Instance): number {
  const below = (x: number) => (x <= 0 ? 0 : instanceShare(x, instance));
  return Math.max(0, below(to) - below(Math.max(0, from)));
}

/**
 * The send schedule of one gen process: which indices it publishes (its instance's share, in
 * order) and when each is due, in ms from the start (null: as fast as the broker confirms).
 * Every instance keeps the run's global due times, so n instances started together send the
 * profile between them.
 */
export class SendSchedule {
  readonly shareCount: number;

  constructor(
    readonly profile: LoadProfile | null,
    readonly count: number,
    readonly instance: Instance = WHOLE_RUN,
  ) {
    this.shareCount = instanceShare(count, instance);
  }

  /** The indices of this instance, ascending. */
  *indices(): Generator<number> {
    for (let index = this.instance.no - 1; index < this.count; index += this.instance.count) yield index;
  }

  /** When `index` is due (ms from the start), or null when unpaced. */
  dueMs(index: number): number | null {
    return this.profile ? this.profile.dueMs(index) : null;
  }

  /**
   * This instance's messages due in second `s` of the run (0 when unpaced: nothing is due at a time):
   * those whose `dueMs` falls in [s, s+1), so the per-second `due` counts each message in the second
   * it is paced in (a message due on a stage boundary counts where it is sent, never in a 0-rate stage).
   */
  dueInSecond(s: number): number {
    if (!this.profile) return 0;
    const from = Math.min(this.count, this.profile.firstIndexDueFrom(s * 1000));
    const to = Math.min(this.count, this.profile.firstIndexDueFrom((s + 1) * 1000));
    return countCongruent(from, to, this.instance);
  }
}

/** One second of a run as gen saw it. */
export interface SecondLine {
  /** Whole seconds since the run started. */
  readonly second: number;
  /** Messages of this instance the schedule had due in this second. */
  readonly due: number;
  /** Messages handed to the broker in this second. */
  readonly published: number;
  /** Of those, sent later than the late threshold after they were due. */
  readonly late: number;
  /** Messages dropped in this second (`--drop-late`). */
  readonly dropped: number;
  /** The latest any message sent in this second went out, ms (0 when none was late). */
  readonly latenessMaxMs: number;
}

export interface LatenessSummary {
  readonly lateThresholdMs: number;
  /** `--drop-late` ms, or null when late messages are sent anyway. */
  readonly dropLateMs: number | null;
  /** `--linger` ms: lateness counts from when a message's group went out (0: from its due time). */
  readonly lingerMs: number;
  /** Messages sent more than `lateThresholdMs` after they were due. */
  readonly late: number;
  /** How late those late messages went out (ms). */
  readonly latenessMs: Percentiles;
  /** Messages not sent at all because they were already `dropLateMs` late. */
  readonly dropped: number;
  readonly seconds: SecondLine[];
}

interface Bucket {
  published: number;
  late: number;
  dropped: number;
  latenessMaxMs: number;
}

/**
 * Open-loop bookkeeping: every message has a due time; what went out late (and how late), what was
 * dropped, per second and in total. A publisher that cannot keep up shows here instead of silently
 * stretching the run (coordinated omission).
 */
export class LatenessTracker {
  late = 0;
  dropped = 0;
  private readonly histogram = createLatencyHistogram();
  private readonly buckets = new Map<number, Bucket>();
  /** Seconds already handed out by `takeCompleted`. */
  private reportedUpTo = 0;

  constructor(
    private readonly schedule: SendSchedule,
    readonly lateThresholdMs: number,
    readonly dropLateMs: number | null,
    readonly lingerMs = 0,
  ) {}

  /** True when a message this late must be dropped rather than sent. */
  shouldDrop(latenessMs: number): boolean {
    return this.dropLateMs !== null && latenessMs > this.dropLateMs;
  }

  /** A message went out `latenessMs` after it was due, at `sinceStartMs` into the run. */
  sent(latenessMs: number, sinceStartMs: number): void {
    const bucket = this.bucketAt(sinceStartMs);
    bucket.published++;
    if (latenessMs > this.lateThresholdMs) {
      this.late++;
      bucket.late++;
      bucket.latenessMaxMs = Math.max(bucket.latenessMaxMs, Math.round(latenessMs));
      recordMs(this.histogram, latenessMs);
    }
  }

  /** A message was dropped at `sinceStartMs` into the run. */
  droppedAt(sinceStartMs: number): void {
    this.dropped++;
    this.bucketAt(sinceStartMs).dropped++;
  }

  /** The seconds that have fully passed by `sinceStartMs` and were not handed out before. */
  takeCompleted(sinceStartMs: number): SecondLine[] {
    const upTo = Math.floor(sinceStartMs / 1000);
    const lines: SecondLine[] = [];
    for (; this.reportedUpTo < upTo; this.reportedUpTo++) lines.push(this.line(this.reportedUpTo));
    return lines;
  }

  summary(elapsedMs: number): LatenessSummary {
    const lastSecond = Math.max(Math.ceil(elapsedMs / 1000), ...[...this.buckets.keys()].map((s) => s + 1));
    return {
      lateThresholdMs: this.lateThresholdMs,
      dropLateMs: this.dropLateMs,
      lingerMs: this.lingerMs,
      late: this.late,
      latenessMs: percentilesOf(this.histogram),
      dropped: this.dropped,
      seconds: Array.from({ length: lastSecond }, (_, s) => this.line(s)),
    };
  }

  private line(second: number): SecondLine {
    const b = this.buckets.get(second);
    return {
      second,
      due: this.schedule.dueInSecond(second),
      published: b?.published ?? 0,
      late: b?.late ?? 0,
      dropped: b?.dropped ?? 0,
      latenessMaxMs: b?.latenessMaxMs ?? 0,
    };
  }

  private bucketAt(sinceStartMs: number): Bucket {
    const second = Math.max(0, Math.floor(sinceStartMs / 1000));
    let bucket = this.buckets.get(second);
    if (!bucket) this.buckets.set(second, (bucket = { published: 0, late: 0, dropped: 0, latenessMaxMs: 0 }));
    return bucket;
  }
}
