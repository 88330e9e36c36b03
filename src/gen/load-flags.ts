import { parseFractionFlag, parseIntFlag, parseNumberFlag } from '../config/parse.js';
import { UsageError } from '../errors.js';
import { parseAccountsDist, type AccountsDist } from './account-choice.js';
import { parseProfile, type LoadProfile } from './load-profile.js';
import { parseInstance, WHOLE_RUN, type Instance } from './send-schedule.js';

/** The load-shape flags of `txsim gen`, as text (absent: not given). */
export interface LoadShapeFlags {
  readonly count?: string;
  readonly rate?: string;
  readonly profile?: string;
  readonly accountsDist?: string;
  readonly hotAccounts?: string;
  readonly hotSet?: string;
  readonly instance?: string;
  readonly lateThreshold?: string;
  readonly dropLate?: string;
  readonly linger?: string;
}

/** What the load-shape flags decide. */
export interface LoadShape {
  readonly count: number;
  readonly ratePerS: number;
  readonly profile?: LoadProfile;
  readonly accountsDist: AccountsDist;
  readonly instance: Instance;
  readonly lateThresholdMs: number;
  readonly dropLateMs: number | null;
  /** Paced messages go out in groups: each may wait this long for the ones due after it (`--linger`; 0: each at its time). */
  readonly lingerMs: number;
}

/** Most a paced message may wait for the ones after it (`--linger`). */
const LINGER_MAX_MS = 1_000;

/** `--linger <ms>` (0 when absent), refused above a second and without a pace; `needs` names the pacing flags. */
export function parseLingerFlag(text: string | undefined, paced: boolean, needs: string): number {
  const lingerMs = parseIntFlag('--linger', text, 0, 0, LINGER_MAX_MS);
  if (lingerMs > 0 && !paced) throw new UsageError(`--linger needs ${needs}: an unpaced run sends each message as soon as it can`);
  return lingerMs;
}

/** Most messages of one run (the `runs.count_requested` column is an INT; a bound like any other). */
export const RUN_COUNT_MAX = 100_000_000;

/**
 * The count, pace, account choice and instance of a run from gen's flags. With `--profile` the
 * count follows from the profile (its integral) unless `<count>` is given, which may only shorten
 * the run; `--rate` and `--profile` exclude each other. `--hot-accounts`/`--hot-set` are the older
 * spelling of `--accounts-dist hot:<share>/<n>`.
 */
export function loadShapeOf(flags: LoadShapeFlags): LoadShape {
  const profile = flags.profile === undefined ? undefined : parseProfile(flags.profile);
  if (profile && flags.rate !== undefined)
    throw new UsageError('--rate and --profile exclude each other: --profile constant:<rate>@<duration> is a flat rate');
  let count: number;
  if (flags.count !== undefined) {
    count = parseIntFlag('<count>', flags.count, 0, 1, RUN_COUNT_MAX);
    if (profile && count > profile.totalCount) {
      throw new UsageError(
        `<count>: ${count} is more than the profile sends (${profile.totalCount} messages in ${profile.durationMs / 1000} s); leave <count> out to send the whole profile`,
      );
    }
  } else if (profile) {
    count = profile.totalCount;
    if (count > RUN_COUNT_MAX) throw new UsageError(`--profile: sends ${count} messages, more than a run's ${RUN_COUNT_MAX}`);
  } else {
    throw new UsageError('<count> is required unless --profile gives it (e.g. gen 20000, or gen --profile 500@10s,500@60s)');
  }
  const instanceText = flags.instance;
  const instance = instanceText === undefined ? WHOLE_RUN : parseInstance(instanceText);
  if (!instance) throw new UsageError(`--instance: "${instanceText}" must look like k/n with 1 ≤ k ≤ n ≤ 1000, e.g. 2/4`);
  const dropLateMs = flags.dropLate === undefined ? null : parseIntFlag('--drop-late', flags.dropLate, 0, 1, 3_600_000);
  if (dropLateMs !== null && !profile && !(Number(flags.rate) > 0)) {
    throw new UsageError('--drop-late needs a paced run (--rate or --profile): an unpaced message is never late');
  }
  const lingerMs = parseLingerFlag(flags.linger, profile !== undefined || Number(flags.rate) > 0, 'a paced run (--rate or --profile)');
  return {
    count,
    ratePerS: parseNumberFlag('--rate', flags.rate, 0),
    ...(profile ? { profile } : {}),
    accountsDist: accountsDistOf(flags),
    instance,
    lateThresholdMs: parseIntFlag('--late-threshold', flags.lateThreshold, 10, 0, 3_600_000),
    dropLateMs,
    lingerMs,
  };
}

function accountsDistOf(flags: LoadShapeFlags): AccountsDist {
  if (flags.accountsDist !== undefined) {
    if (flags.hotAccounts !== undefined || flags.hotSet !== undefined) {
      throw new UsageError(
        '--accounts-dist and --hot-accounts/--hot-set exclude each other: --hot-accounts 0.5 --hot-set 3 is --accounts-dist hot:0.5/3',
      );
    }
    return parseAccountsDist(flags.accountsDist);
  }
  const share = parseFractionFlag('--hot-accounts', flags.hotAccounts, 0);
  const setSize = parseIntFlag('--hot-set', flags.hotSet, 3, 1, 1_000_000);
  // Without a hot share the choice is uniform; `hot:0/n` draws the same numbers, so streams are unchanged.
  return share > 0 || flags.hotSet !== undefined ? { kind: 'hot', share, setSize } : { kind: 'uniform' };
}
