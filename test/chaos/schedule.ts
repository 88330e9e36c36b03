import { mulberry32 } from '../../src/gen/random.js';

/**
 * The seeded fault schedule of a chaos run: which faults happen when, for how long. Pure, so the same
 * seed always draws the same schedule (and a failing seed can be replayed), and unit-tested.
 */

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
  /** Which worker (0..2) a worker kill hits. */
  readonly worker: number;
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
        `  t=${f.atS.toFixed(1).padStart(5)}s  ${f.kind.padEnd(17)} for ${f.forS.toFixed(1)}s${f.kind === 'worker-kill' ? ` (worker ${f.worker + 1})` : ''}`,
    )
    .join('\n');
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
