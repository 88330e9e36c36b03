import { mulberry32 } from '../../src/gen/random.js';

/**
 * The seeded fault schedule of a chaos run: which faults happen when, for how long. Pure, so the same
 * seed always draws the same schedule (and a failing seed can be replayed), and unit-tested. Also the run's
 * other pure rules: its settings and prerequisites, its time budget, and when gen is started again.
 */

/** The shortest and the longest run (scripts/chaos.sh refuses others with the same bounds). */
export const MIN_DURATION_S = 20;
export const MAX_DURATION_S = 600;

/** Every fault a chaos run may inject, and the service it breaks (faults of one service never overlap). */
export const FAULT_KINDS = {
  'worker-kill': 'worker',
  'gen-kill': 'gen',
  'broker-stop': 'broker',
  'broker-kill': 'broker',
  'close-connections': 'broker',
  'disk-alarm': 'broker',
  'memory-alarm': 'broker',
  'db-stop': 'database',
  'db-kill': 'database',
  deadlocks: 'database',
} as const;

export type FaultKind = keyof typeof FAULT_KINDS;
export type FaultTarget = (typeof FAULT_KINDS)[FaultKind];

export interface ScheduledFault {
  readonly kind: FaultKind;
  /** Seconds after the run's start. */
  readonly atS: number;
  /** How long the fault lasts before it is cleared (a kill: how long until the process is started again). */
  readonly forS: number;
  /** Which worker (0..2) a worker kill hits: the one with id `workerId(fault)`. */
  readonly worker: number;
}

/** The id (within the run's namespace) of the worker a worker kill hits: w1, w2 or w3, as the stage starts them. */
export function workerId(fault: Pick<ScheduledFault, 'worker'>): string {
  return `w${fault.worker + 1}`;
}

/** Faults drawn per minute of run: enough that several overlap in a two-minute run. */
const FAULTS_PER_MINUTE = 6;
/** No fault starts in the first seconds (everything connecting) or ends in the last (gen finishing). */
const QUIET_START_S = 3;
const QUIET_END_S = 5;

/**
 * Draws the schedule of a run of `durationS` seconds. Faults of different services may overlap (a broker
 * stop while the database is down); two faults of one service do not — a later one is moved after the
 * earlier one ends, or dropped when that leaves no room. Sorted by start.
 */
export function drawSchedule(seed: number, durationS: number): ScheduledFault[] {
  const random = mulberry32(seed);
  const kinds = Object.keys(FAULT_KINDS) as FaultKind[];
  const count = Math.max(2, Math.round((durationS / 60) * FAULTS_PER_MINUTE));
  const lastStartS = durationS - QUIET_END_S;
  const drawn: ScheduledFault[] = [];
  for (let i = 0; i < count; i++) {
    const kind = kinds[Math.floor(random() * kinds.length)]!;
    const atS = round1(QUIET_START_S + random() * Math.max(1, lastStartS - QUIET_START_S - 2));
    const forS = round1(1 + random() * 4);
    drawn.push({ kind, atS, forS, worker: Math.floor(random() * 3) });
  }
  drawn.sort((a, b) => a.atS - b.atS);
  const busyUntilS = new Map<FaultTarget, number>();
  const schedule: ScheduledFault[] = [];
  for (const fault of drawn) {
    const target = FAULT_KINDS[fault.kind];
    // A second of calm between two faults of one service, so the first is cleared before the next begins.
    const atS = round1(Math.max(fault.atS, (busyUntilS.get(target) ?? 0) + 1));
    if (atS + fault.forS > lastStartS) continue;
    schedule.push({ ...fault, atS });
    busyUntilS.set(target, round1(atS + fault.forS));
  }
  return schedule.sort((a, b) => a.atS - b.atS);
}

/** The schedule as a timeline, one line per fault. */
export function timeline(schedule: readonly ScheduledFault[]): string {
  return schedule
    .map(
      (f) =>
        `  t=${f.atS.toFixed(1).padStart(5)}s  ${f.kind.padEnd(17)} for ${f.forS.toFixed(1)}s${f.kind === 'worker-kill' ? ` (worker ${workerId(f)})` : ''}`,
    )
    .join('\n');
}

/** What a chaos run was asked for, from CHAOS_SEED and CHAOS_DURATION_S (scripts/chaos.sh sets both). */
export interface ChaosSettings {
  /** CHAOS_SEED is set: a chaos run was asked for, so it must run (never be skipped). */
  readonly asked: boolean;
  readonly seed: number;
  readonly durationS: number;
  /** Why the settings cannot be used (one line), or null. */
  readonly problem: string | null;
}

export function chaosSettings(env: {
  readonly CHAOS_SEED?: string | undefined;
  readonly CHAOS_DURATION_S?: string | undefined;
}): ChaosSettings {
  const asked = env.CHAOS_SEED !== undefined;
  const seedText = env.CHAOS_SEED ?? '1';
  const durationText = env.CHAOS_DURATION_S ?? '120';
  const wholeNumber = (text: string) => (/^\d{1,9}$/.test(text) ? Number(text) : null);
  const seed = wholeNumber(seedText);
  const durationS = wholeNumber(durationText);
  const problem =
    seed === null
      ? `CHAOS_SEED must be a whole number, not "${seedText}"`
      : durationS === null || durationS < MIN_DURATION_S || durationS > MAX_DURATION_S
        ? `CHAOS_DURATION_S must be ${MIN_DURATION_S}..${MAX_DURATION_S} seconds, not "${durationText}"`
        : null;
  return { asked, seed: seed ?? 1, durationS: problem ? 120 : durationS!, problem };
}

/** The one-line reason a chaos run cannot start on this machine, or null: it must be root and find its tools. */
export function prerequisiteProblem(uid: number | undefined, missingTools: readonly string[]): string | null {
  const missing = [
    ...(uid === 0 ? [] : [`root (running as uid ${uid ?? 'unknown'})`]),
    ...(missingTools.length ? [`${missingTools.join(', ')} on PATH`] : []),
  ];
  if (!missing.length) return null;
  return `a chaos run stops, kills and starts the local RabbitMQ and MariaDB, and needs ${missing.join(' and ')}: cannot run it here`;
}

/** gen's reconnect window in a chaos run (`--reconnect-timeout`), in seconds. */
export const GEN_RECONNECT_S = 300;

/** How long each part of a run may take (ms), all derived from its duration so that every allowed duration can pass. */
export interface ChaosBudget {
  /** One gen attempt: paced over the whole duration, plus as long again stalled on outages, plus its start. */
  readonly genAttemptMs: number;
  /** Once the schedule is over and the services restored: a gen started again at the very end publishes everything again. */
  readonly genDrainMs: number;
  /** The whole test: stage, schedule (and clearing its last faults), restore, gen draining, verify, teardown. */
  readonly testMs: number;
}

/** Setting up the stage (namespace, accounts, three consuming workers). */
const STAGE_S = 120;
/** Clearing faults that took longer than drawn (a database or broker start waits until it answers). */
const CLEARING_SLACK_S = 300;
/** restoreServices after the schedule (a broker start, a database start). */
const RESTORE_S = 240;
/** verify --wait 90 inside a 180 s limit. */
const VERIFY_S = 180;
/** Stopping the workers and dropping the namespace. */
const TEARDOWN_S = 60;

export function chaosBudget(durationS: number): ChaosBudget {
  const genAttemptS = 2 * durationS + 120;
  const genDrainS = durationS + 120;
  const testS = STAGE_S + durationS + CLEARING_SLACK_S + RESTORE_S + genDrainS + VERIFY_S + TEARDOWN_S;
  return { genAttemptMs: genAttemptS * 1000, genDrainMs: genDrainS * 1000, testMs: testS * 1000 };
}

/** How a gen attempt ended: its exit code or signal, whether the schedule killed it, how long gen has been refusing (exit 3) in a row. */
export interface GenExit {
  readonly code: number | null;
  readonly signal: string | null;
  readonly killedBySchedule: boolean;
  /** Since the first of the exits 3 in a row, this one included (0 when this exit is not 3). */
  readonly refusingForMs: number;
}

/** Longer than any outage a schedule draws, with its clearing: gen refusing this long is a real failure. */
export const GEN_REFUSING_LIMIT_MS = 300_000;

/**
 * What the chaos run does when gen exits: done (exit 0); start it again after the schedule's own kill -9,
 * or after exit 3 (a service unreachable, as while the broker or the database is down) unless it has been
 * refusing for longer than any outage; otherwise fail the run at once (2 usage, 6 publish incomplete, 1, …).
 */
export function genExitAction(exit: GenExit): 'finished' | 'restart' | 'fail' {
  if (exit.code === 0) return 'finished';
  if (exit.killedBySchedule && exit.signal === 'SIGKILL') return 'restart';
  if (exit.code === 3 && exit.refusingForMs <= GEN_REFUSING_LIMIT_MS) return 'restart';
  return 'fail';
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
