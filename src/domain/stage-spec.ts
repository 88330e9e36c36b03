import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';

/**
 * Simulated processing stages (`txsim worker --stage fraud:5..50ms:decline=0.01:fail=0.001`): the
 * downstream calls a real payment pipeline makes before it books a transaction (fraud scoring, the
 * issuer, …). Each stage takes a log-uniform time in its range and may decline the transaction (a
 * business reject, `declined_by_<stage>`) or fail it (a system error, retried like any other).
 *
 * Pure: the spec parser and the seeded draw. The worker's runner (src/worker/stages.ts) sleeps.
 */

/** One stage as configured. Times in milliseconds, shares in 0..1. */
export interface StageSpec {
  /** `[a-z][a-z0-9_]*`, at most STAGE_NAME_CHARS_MAX: it becomes the reject reason `declined_by_<name>`. */
  readonly name: string;
  readonly minMs: number;
  readonly maxMs: number;
  /** Share of walks this stage declines (business reject, final). */
  readonly declineShare: number;
  /** Share of walks this stage fails (system error: retried through the delay queues, parked after the last attempt). */
  readonly failShare: number;
}

/** The reject reason of a stage's decline: `declined_by_<stage>`. */
export type StageDeclineReason = `declined_by_${string}`;

/** Prefix of a stage decline's reject reason. */
export const STAGE_DECLINE_PREFIX = 'declined_by_';

/**
 * Longest stage name: `declined_by_` (12) + name must fit the 32-character `reason` columns
 * (transactions, accounting_events).
 */
export const STAGE_NAME_CHARS_MAX = 20;
/** Most stages a worker walks: each costs a timer and (with events) two feed messages per message. */
export const STAGES_MAX = 16;
/** Longest stage time: a slow downstream, not a stuck one (the consumer timeout of RabbitMQ is far above). */
export const STAGE_TIME_MAX_MS = 60_000;
/** Error code of a stage's simulated failure (the retry header `x-last-error`, `transaction_failures`). */
export const STAGE_FAILED_CODE = 'stage_failed';

const NAME = /^[a-z][a-z0-9_]*$/;
/** A bound: a decimal number and an optional unit (`5`, `5ms`, `0.5s`). */
const BOUND = /^(\d+(?:\.\d+)?)(ms|s)?$/;
const SHARE_KEYS = ['decline', 'fail'] as const;

export function declineReasonOf(stageName: string): StageDeclineReason {
  return `${STAGE_DECLINE_PREFIX}${stageName}`;
}

/** True for a reject reason a stage produced. */
export function isStageDeclineReason(reason: string): reason is StageDeclineReason {
  return reason.startsWith(STAGE_DECLINE_PREFIX) && NAME.test(reason.slice(STAGE_DECLINE_PREFIX.length));
}

/**
 * Parses one `--stage` value: `<name>:<min>..<max><unit>[:decline=<share>][:fail=<share>]`, units
 * `ms` or `s` (`5..50ms`, `500ms..2s`; a bound without a unit takes the other bound's), or a fixed
 * time `<name>:<time><unit>`. Throws UsageError naming the flag, the value and what is wrong.
 */
export function parseStageSpec(value: string, flag = '--stage'): StageSpec {
  const fail = (why: string): never => {
    throw new UsageError(
      `${flag}: "${value}": ${why}; expected name:min..max(ms|s)[:decline=share][:fail=share], e.g. fraud:5..50ms:decline=0.01`,
    );
  };
  const parts = value.trim().split(':');
  const [name, range, ...options] = parts;
  if (!name) return fail('missing stage name');
  if (!NAME.test(name)) return fail(`stage name "${name}" must be lowercase letters, digits and _ and start with a letter`);
  if (name.length > STAGE_NAME_CHARS_MAX) return fail(`stage name "${name}" is longer than ${STAGE_NAME_CHARS_MAX} characters`);
  if (range === undefined || range === '') return fail('missing time range');
  const [minMs, maxMs] = parseRange(range, fail);
  const shares: Record<(typeof SHARE_KEYS)[number], number> = { decline: 0, fail: 0 };
  const seen = new Set<string>();
  for (const option of options) {
    const eq = option.indexOf('=');
    const key = eq < 0 ? option : option.slice(0, eq);
    if (!(SHARE_KEYS as readonly string[]).includes(key)) return fail(`unknown key "${key}" (known: ${SHARE_KEYS.join(', ')})`);
    if (eq < 0) return fail(`${key} needs a share, e.g. ${key}=0.01`);
    if (seen.has(key)) return fail(`${key} given twice`);
    seen.add(key);
    const text = option.slice(eq + 1);
    const share = Number(text);
    if (text.trim() === '' || !Number.isFinite(share) || share < 0 || share > 1)
      return fail(`${key}=${text} must be a share between 0 and 1`);
    shares[key as (typeof SHARE_KEYS)[number]] = share;
  }
  return { name, minMs, maxMs, declineShare: shares.decline, failShare: shares.fail };
}

function parseRange(range: string, fail: (why: string) => never): [number, number] {
  const bounds = range.split('..');
  if (bounds.length > 2) return fail(`time range "${range}" must be min..max`);
  const parsed = bounds.map((b) => {
    const m = BOUND.exec(b.trim());
    if (!m) return fail(`"${b}" is not a time: a number with unit ms or s (e.g. 20ms, 1.5s)`);
    return { value: Number(m[1]), unit: m[2] as 'ms' | 's' | undefined };
  });
  const unitOf = (i: number) => parsed[i]?.unit ?? parsed[parsed.length - 1 - i]?.unit;
  const toMs = (i: number): number => {
    const unit = unitOf(i);
    if (!unit) return fail(`time range "${range}" needs a unit: ms or s`);
    return parsed[i]!.value * (unit === 's' ? 1_000 : 1);
  };
  const minMs = toMs(0);
  const maxMs = parsed.length === 2 ? toMs(1) : minMs;
  if (minMs <= 0) return fail('the shortest time must be above 0 (times are drawn log-uniformly)');
  if (minMs > maxMs) return fail(`min ${minMs} ms is above max ${maxMs} ms`);
  if (maxMs > STAGE_TIME_MAX_MS) return fail(`max ${maxMs} ms is above the limit of ${STAGE_TIME_MAX_MS} ms`);
  return [minMs, maxMs];
}

/**
 * The stages of a worker, in walk order: `--stage` values, or the lines of a `--stages-file` (one
 * spec a line; blank lines and lines starting with `#` are skipped). Names must be unique: a
 * decline's reason names its stage.
 */
export function parseStageSpecs(values: readonly string[], flag = '--stage'): StageSpec[] {
  const specs = values.map((v) => parseStageSpec(v, flag));
  if (specs.length > STAGES_MAX) throw new UsageError(`${flag}: ${specs.length} stages, at most ${STAGES_MAX}`);
  const names = new Set<string>();
  for (const s of specs) {
    if (names.has(s.name)) throw new UsageError(`${flag}: stage "${s.name}" is given twice; stage names must be unique`);
    names.add(s.name);
  }
  return specs;
}

/** The spec lines of a stages file's text (see parseStageSpecs). */
export function stageLinesOf(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** What one stage does to one attempt of one transaction. */
export interface StageDraw {
  readonly durationMs: number;
  readonly result: 'passed' | 'declined' | 'failed';
}

/**
 * The stage's time and decision for one attempt of one transaction: a function of (seed, stage,
 * transaction id, attempt) only, so a redelivery of the same attempt (after a crash or a channel
 * loss) walks exactly as the first delivery did — it cannot be declined where the first was applied
 * — while a retry (the next attempt) draws afresh, as a real flaky downstream would answer anew.
 *
 * Three independent uniforms come from one SHA-256 of the inputs. The time is log-uniform in
 * [minMs, maxMs] (`min · (max/min)^u`): latencies of real services spread over orders of magnitude,
 * and a log-uniform draw gives as many fast calls in 5..10 ms as slow ones in 25..50 ms. The fail
 * draw comes first: an attempt that fails is not declined as well.
 */
export function drawStage(seed: string, spec: StageSpec, transactionId: string, attempt: number): StageDraw {
  const digest = createHash('sha256').update(`${seed}\u0000${spec.name}\u0000${transactionId}\u0000${attempt}`).digest();
  const [uTime, uFail, uDecline] = [0, 6, 12].map((offset) => digest.readUIntBE(offset, 6) / 2 ** 48) as [number, number, number];
  const durationMs = spec.minMs === spec.maxMs ? spec.minMs : Math.min(spec.maxMs, spec.minMs * (spec.maxMs / spec.minMs) ** uTime);
  const result = uFail < spec.failShare ? 'failed' : uDecline < spec.declineShare ? 'declined' : 'passed';
  return { durationMs, result };
}

/** The spec as the user would write it (logs, `--help` echo). */
export function formatStageSpec(s: StageSpec): string {
  const range = s.minMs === s.maxMs ? `${s.minMs}ms` : `${s.minMs}..${s.maxMs}ms`;
  return `${s.name}:${range}${s.declineShare > 0 ? `:decline=${s.declineShare}` : ''}${s.failShare > 0 ? `:fail=${s.failShare}` : ''}`;
}
