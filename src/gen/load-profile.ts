import { UsageError } from '../errors.js';

/**
 * Load profiles of `txsim gen`: when each message of a run is due. Pure schedule math, no clock.
 *
 * A profile is a list of stages. A stage moves the rate linearly from `fromPerS` to `toPerS` over
 * `durationMs` (k6's stages have `fromPerS` = the previous stage's `toPerS`; steps and spikes jump,
 * so a stage carries its own start). The number of messages due by time t is the integral of the
 * rate, N(t); message i is due at the last time N is still i or less, i.e. when N rises past i. So
 * message 0 is due at the start (or when the rate first rises above 0), no message is due inside a
 * stretch where the rate is 0 (one due where such a stretch begins waits for its end), and any
 * interval [a, b) holds the messages ⌈N(a)⌉ … ⌈N(b)⌉ − 1: each stage exactly its integral when that
 * is whole (`steps:500,0,500@10s`: 0 … 4999 in the first stage, 5000 … 9999 in the third).
 */

/** One stage: the rate moves linearly from `fromPerS` to `toPerS` over `durationMs`. */
export interface Stage {
  readonly fromPerS: number;
  readonly toPerS: number;
  readonly durationMs: number;
}

/** Longest profile: a day (a bound like any other; gen runs are minutes). */
const PROFILE_DURATION_MAX_MS = 86_400_000;
/** Highest rate a stage may ask for. */
const RATE_MAX_PER_S = 1_000_000;

/** Whole messages a real count N stands for: ⌈N⌉, rounded against float dust (N = 5000.0000000001 is 5000). */
function wholeCount(n: number): number {
  return Math.ceil(n - 1e-9);
}

/** Messages due within a stage by `ms` into it: ∫ rate = from·t + (to − from)·t²/(2d). */
function stageCount(stage: Stage, ms: number): number {
  const t = ms / 1000;
  const d = stage.durationMs / 1000;
  return stage.fromPerS * t + ((stage.toPerS - stage.fromPerS) * t * t) / (2 * d);
}

/**
 * Time into a stage (ms) at which `n` of its messages are due: the root of
 * a·t² + from·t − n = 0 with a = (to − from)/(2d), in the form 2n / (from + √(from² + 4an)),
 * which stays exact for a flat stage (a = 0) and a ramp down (a < 0).
 */
function stageTimeOf(stage: Stage, n: number): number {
  if (n <= 0) return 0;
  const d = stage.durationMs / 1000;
  const a = (stage.toPerS - stage.fromPerS) / (2 * d);
  const disc = Math.max(0, stage.fromPerS * stage.fromPerS + 4 * a * n);
  const denominator = stage.fromPerS + Math.sqrt(disc);
  if (denominator <= 0) return stage.durationMs;
  return Math.min(stage.durationMs, ((2 * n) / denominator) * 1000);
}

/** A schedule built from stages: rates, integrals and each message's due time. */
export class LoadProfile {
  /** Messages due before each stage starts (the running integral), and the ms each stage starts at. */
  private readonly countBefore: number[] = [];
  private readonly startMs: number[] = [];
  /** The first message index of each stage, ⌈countBefore⌉: stage k holds firstIndex[k] ≤ i < firstIndex[k+1] (none when its rate is 0). */
  private readonly firstIndex: number[] = [];
  /** Messages due over the whole profile (a real number: the integral). */
  readonly integral: number;
  readonly durationMs: number;

  constructor(readonly stages: readonly Stage[]) {
    if (stages.length === 0) throw new RangeError('a load profile needs at least one stage');
    let count = 0;
    let ms = 0;
    for (const stage of stages) {
      if (!(stage.durationMs > 0) || !(stage.fromPerS >= 0) || !(stage.toPerS >= 0)) {
        throw new RangeError(`bad stage ${JSON.stringify(stage)}: a duration > 0 and rates ≥ 0`);
      }
      this.countBefore.push(count);
      this.startMs.push(ms);
      this.firstIndex.push(wholeCount(count));
      count += stageCount(stage, stage.durationMs);
      ms += stage.durationMs;
    }
    this.integral = count;
    this.durationMs = ms;
  }

  /** Whole messages the profile sends: every i with N⁻¹(i) inside the profile, i.e. ⌈N(end)⌉ (rounded against float dust). */
  get totalCount(): number {
    return wholeCount(this.integral);
  }

  /** The rate (messages/s) at `ms` from the start; 0 outside the profile. At a jump, the rate of the stage that starts there. */
  rateAtMs(ms: number): number {
    if (ms < 0 || ms >= this.durationMs) return 0;
    const i = this.stageIndexAtMs(ms);
    const stage = this.stages[i]!;
    const into = ms - this.startMs[i]!;
    return stage.fromPerS + ((stage.toPerS - stage.fromPerS) * into) / stage.durationMs;
  }

  /** N(ms): messages due from the start up to `ms` (clamped to the profile). */
  countUntilMs(ms: number): number {
    if (ms <= 0) return 0;
    if (ms >= this.durationMs) return this.integral;
    const i = this.stageIndexAtMs(ms);
    return this.countBefore[i]! + stageCount(this.stages[i]!, ms - this.startMs[i]!);
  }

  /**
   * When message `index` is due, in ms from the start of the run: when N rises past `index`. The
   * last stage whose first index is at most `index` holds it, so a stage with no messages (rate 0)
   * is skipped: a message due where it begins is due where the next stage with a rate above 0 begins
   * (`steps:500,0,500@10s`: message 5000 at 20 s, not at 10 s inside the quiet stage), every stage
   * keeps exactly its own messages, and the second a message falls in is the one `firstIndexDueFrom`
   * (and gen's per-second `due`) counts it in.
   */
  dueMs(index: number): number {
    const i = Math.max(0, index);
    let lo = 0;
    let hi = this.stages.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.firstIndex[mid]! <= i) lo = mid;
      else hi = mid - 1;
    }
    return this.startMs[lo]! + stageTimeOf(this.stages[lo]!, i - this.countBefore[lo]!);
  }

  /**
   * The first message index due at or after `ms` (`totalCount` when none is): the messages due in
   * [a, b) are firstIndexDueFrom(a) … firstIndexDueFrom(b) − 1. Starts from ⌈N(ms)⌉ and settles it
   * against dueMs itself, so a due time a hair either side of `ms` (float dust) is counted where dueMs puts it.
   */
  firstIndexDueFrom(ms: number): number {
    const total = this.totalCount;
    let i = Math.min(total, wholeCount(this.countUntilMs(ms)));
    while (i > 0 && this.dueMs(i - 1) >= ms) i--;
    while (i < total && this.dueMs(i) < ms) i++;
    return i;
  }

  /** Expected messages due in each whole second of the profile: N(s+1) − N(s). */
  expectedPerSecond(): number[] {
    const seconds = Math.ceil(this.durationMs / 1000);
    return Array.from({ length: seconds }, (_, s) => this.countUntilMs((s + 1) * 1000) - this.countUntilMs(s * 1000));
  }

  private stageIndexAtMs(ms: number): number {
    let lo = 0;
    let hi = this.stages.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.startMs[mid]! <= ms) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** A flat rate for as long as `count` messages take: what `--rate` means. */
export function constantProfile(ratePerS: number, count: number): LoadProfile {
  return new LoadProfile([{ fromPerS: ratePerS, toPerS: ratePerS, durationMs: (count * 1000) / ratePerS }]);
}

/**
 * Parses `--profile`:
 * - `500@10s,2000@30s,2000@60s,0@10s` — k6 stages: each ramps linearly from the previous stage's
 *   rate (0 before the first) to its own over its duration;
 * - `constant:500@60s` — 500 messages/s for 60 s;
 * - `steps:500,1000,2000@30s` — each rate held for 30 s, jumping from one to the next;
 * - `spike:500,5000@10s` — 500/s for 10 s, 5,000/s for 10 s, 500/s for 10 s;
 *   `spike:500,5000@10s/2s` — the same with a 2 s spike.
 * Durations: `250ms`, `10s`, `2m`, `1h`. Anything else is a UsageError naming the bad part.
 */
export function parseProfile(text: string): LoadProfile {
  const spec = text.trim();
  const flag = '--profile';
  if (spec === '') throw new UsageError(`${flag}: empty; e.g. 500@10s,2000@30s or steps:500,1000@30s`);
  const colon = /^([a-z]+):(.*)$/.exec(spec);
  let stages: Stage[];
  if (!colon) stages = parseStages(spec);
  else {
    const [, kind, rest] = colon as unknown as [string, string, string];
    switch (kind) {
      case 'constant': {
        const [rates, durationMs] = ratesAt(rest, 'constant:<rate>@<duration>, e.g. constant:500@60s');
        if (rates.length !== 1) throw new UsageError(`${flag}: "${rest}" wants one rate: constant:<rate>@<duration>`);
        stages = [{ fromPerS: rates[0]!, toPerS: rates[0]!, durationMs }];
        break;
      }
      case 'steps': {
        const [rates, durationMs] = ratesAt(rest, 'steps:<rate>,<rate>,…@<duration per step>, e.g. steps:500,1000,2000@30s');
        stages = rates.map((r) => ({ fromPerS: r, toPerS: r, durationMs }));
        break;
      }
      case 'spike': {
        const [head, spikePart] = splitOnce(rest, '/');
        const [rates, baseMs] = ratesAt(head, 'spike:<base>,<peak>@<duration>[/<spike duration>], e.g. spike:500,5000@10s/2s');
        if (rates.length !== 2) throw new UsageError(`${flag}: "${rest}" wants two rates: spike:<base>,<peak>@<duration>`);
        const spikeMs = spikePart === undefined ? baseMs : parseDurationMs(spikePart);
        const [base, peak] = rates as [number, number];
        stages = [
          { fromPerS: base, toPerS: base, durationMs: baseMs },
          { fromPerS: peak, toPerS: peak, durationMs: spikeMs },
          { fromPerS: base, toPerS: base, durationMs: baseMs },
        ];
        break;
      }
      default:
        throw new UsageError(`${flag}: "${kind}:" is not a profile kind; use stages (500@10s,…), constant:, steps: or spike:`);
    }
  }
  const profile = new LoadProfile(stages);
  if (profile.durationMs > PROFILE_DURATION_MAX_MS) throw new UsageError(`${flag}: "${spec}" lasts longer than 24 h`);
  if (profile.totalCount === 0) throw new UsageError(`${flag}: "${spec}" sends no messages (every rate is 0)`);
  return profile;
}

/** `500@10s,2000@30s`: k6 stages, each ramping from the previous stage's target. */
function parseStages(spec: string): Stage[] {
  let previous = 0;
  return spec.split(',').map((part) => {
    const [rate, duration] = splitOnce(part.trim(), '@');
    if (duration === undefined) throw new UsageError(`--profile: stage "${part}" must look like <rate>@<duration>, e.g. 500@10s`);
    const toPerS = parseRate(rate);
    const stage = { fromPerS: previous, toPerS, durationMs: parseDurationMs(duration) };
    previous = toPerS;
    return stage;
  });
}

/** `500,1000@30s` → rates and one duration. */
function ratesAt(text: string, shape: string): [number[], number] {
  const [rates, duration] = splitOnce(text, '@');
  if (duration === undefined || rates.trim() === '') throw new UsageError(`--profile: "${text}" must look like ${shape}`);
  return [rates.split(',').map((r) => parseRate(r)), parseDurationMs(duration)];
}

function parseRate(text: string): number {
  const t = text.trim();
  const n = Number(t);
  if (t === '' || !/^\d+(\.\d+)?$/.test(t) || !Number.isFinite(n) || n > RATE_MAX_PER_S) {
    throw new UsageError(`--profile: rate "${text}" must be a number of messages per second, 0 to ${RATE_MAX_PER_S}`);
  }
  return n;
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `250ms`, `10s`, `1.5m`, `1h` → ms (> 0). */
export function parseDurationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  const ms = m ? Number(m[1]) * DURATION_UNITS_MS[m[2]!]! : NaN;
  if (!(ms > 0)) throw new UsageError(`--profile: duration "${text}" must be a positive number with ms, s, m or h, e.g. 10s`);
  return ms;
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}
