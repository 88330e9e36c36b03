import type { Knex } from '../db/knex.js';
import { overappliedInRun } from '../db/ledger.js';
import {
  getRun,
  runDroppedIds,
  runFlowOutcomes,
  runFollowUpIds,
  runInstances,
  runRefusedIds,
  runReturnedIds,
  type RunInstanceRow,
  type RunRow,
} from '../db/runs.js';
import { outcomesOfIds, type OutcomeOfId } from '../db/transactions.js';
import { transactionIdFor } from '../domain/ids.js';
import { NotFoundError } from '../errors.js';
import { peekDeadIds, queueCounts, type BrokerDeps } from './broker-counts.js';
import { EXAMPLES } from './checks.js';

/** Where each published id of a run ended up. */
export interface RunAccount {
  readonly runId: string;
  readonly status: string;
  readonly requested: number;
  readonly published: number;
  readonly confirmed: number;
  readonly expected: number;
  /** Of `expected`: follow-ups of card flows (captures, voids, refunds) the run recorded as published. */
  readonly followUps: number;
  /**
   * A run with card flows: what gen planned (`planned`, as gen printed it; null if it saved none), the
   * holds of the run's applied authorizations by state, and its authorizations rejected (no hold).
   * Shown, not judged: a rejected authorization changes how its flow ends. Null for a run without flows.
   */
  readonly flows: {
    readonly planned: Record<string, number> | null;
    readonly holds: Record<string, number>;
    readonly authorizationsRejected: number;
  } | null;
  /**
   * Ids that were never sent: for a finished run (interrupted, or given up) the requested count less
   * the published one, from the run record; for an unfinished (killed) run, ids past its last saved
   * progress that are nowhere (probably never sent).
   */
  readonly notPublished: number;
  readonly applied: number;
  readonly rejected: number;
  readonly rejectedByReason: Record<string, number>;
  readonly parked: number;
  readonly returned: number;
  /** Ids a paced run dropped rather than sent late (`gen --drop-late`): never sent, on purpose. */
  readonly dropped: number;
  /**
   * A run split over several gen processes (`gen --instance k/n`): how many, which have reported and
   * which have not (their ids are not accounted for until they do). Null for a run of one gen.
   */
  readonly instances: { readonly count: number; readonly reported: number[]; readonly missing: number[] } | null;
  /**
   * Ids of a run sent over HTTP (`gen --via`) that the API did not accept (answered non-2xx, or not
   * at all) and that have no outcome: nothing was queued for them, so none is expected.
   */
  readonly refused: number;
  /** Missing ids while messages are still in the process/retry queues. */
  readonly pending: number;
  /** Missing ids with nothing left in the queues: lost. */
  readonly lost: number;
  /** Ids with more than one effect (applied twice). */
  readonly duplicated: number;
  readonly queued: number;
  /**
   * Queues the workers consume that have no consumer while messages wait for them (see QueueCounts):
   * ids still queued there go nowhere until a worker starts.
   */
  readonly unconsumedQueues: string[];
  /**
   * Examples of missing ids, labelled by what they are known to be: `lostExamples` when nothing is
   * queued any more (all missing ids are lost), `queuedExamples` when nothing is lost (all are still
   * queued), and only `missingExamples` (either) when both counts are non-zero.
   */
  readonly missingExamples: string[];
  readonly queuedExamples: string[];
  readonly lostExamples: string[];
  readonly duplicatedExamples: string[];
}

/** Where one id of a run is. */
export type IdPlace = 'applied' | 'rejected' | 'parked' | 'returned' | 'dropped' | 'refused' | 'not_published' | 'missing';

/**
 * Places one id: its outcome if it has one, else the parking queue, else returned by the broker,
 * else refused by the API (a run sent over HTTP, answered non-2xx or not at all); an id of an unfinished run past its last saved progress was probably never sent; anything else
 * is missing (still queued, or lost).
 */
export function placeId(
  outcome: OutcomeOfId | undefined,
  where: { parked: boolean; returned: boolean; dropped?: boolean; refused?: boolean; pastProgress: boolean },
): IdPlace {
  if (outcome?.status === 'applied') return 'applied';
  if (outcome?.status === 'rejected') return 'rejected';
  if (where.parked) return 'parked';
  if (where.returned) return 'returned';
  if (where.dropped) return 'dropped';
  if (where.refused) return 'refused';
  if (where.pastProgress) return 'not_published';
  return 'missing';
}

/** Counts of where a run's ids are, filled chunk by chunk. */
export class RunTally {
  applied = 0;
  rejected = 0;
  parked = 0;
  refused = 0;
  notPublished = 0;
  readonly rejectedByReason: Record<string, number> = {};
  readonly missing: string[] = [];

  add(id: string, place: IdPlace, outcome: OutcomeOfId | undefined): void {
    switch (place) {
      case 'applied':
        this.applied++;
        return;
      case 'rejected': {
        this.rejected++;
        const reason = outcome?.reason ?? 'unknown';
        this.rejectedByReason[reason] = (this.rejectedByReason[reason] ?? 0) + 1;
        return;
      }
      case 'parked':
        this.parked++;
        return;
      case 'returned':
      case 'dropped':
        return;
      case 'refused':
        this.refused++;
        return;
      case 'not_published':
        this.notPublished++;
        return;
      case 'missing':
        this.missing.push(id);
        return;
    }
  }
}

/** Ids read from the database at once. */
const ID_CHUNK = 1_000;

/**
 * Accounts for every id a run published: applied, rejected, parked, returned, still queued — or
 * lost / duplicated.
 */
export async function accountForRun(deps: BrokerDeps & { db: Knex }, runId: string, peekLimit: number): Promise<RunAccount> {
  const { db } = deps;
  const run = await getRun(db, runId);
  if (!run) throw new NotFoundError(`run ${runId} not found (txsim gen prints its run id)`);
  const returned = await runReturnedIds(db, runId);
  const dropped = await runDroppedIds(db, runId);
  const refused = await runRefusedIds(db, runId);
  const instanceRows = await runInstances(db, runId);
  const scope = idScopeOf(run, instanceRows, dropped.size);
  const parkedIds = await peekDeadIds(deps, peekLimit);
  const tally = new RunTally();
  let expected = 0;
  let notPublishedFinished = 0;
  for (let start = 0; start < run.countRequested; start += ID_CHUNK) {
    const indices = Array.from({ length: Math.min(ID_CHUNK, run.countRequested - start) }, (_, i) => start + i);
    const inScope = indices.filter((index) => {
      const where = scope(index);
      if (where === 'unsent') notPublishedFinished++;
      return where === 'sent' || where === 'maybe';
    });
    expected += inScope.length;
    const ids = inScope.map((index) => transactionIdFor(runId, index));
    const found = new Map((ids.length > 0 ? await outcomesOfIds(db, ids) : []).map((r) => [r.id, r]));
    for (const [at, id] of ids.entries()) {
      const outcome = found.get(id);
      const pastProgress = scope(inScope[at]!) === 'maybe';
      tally.add(
        id,
        placeId(outcome, {
          parked: parkedIds.has(id),
          returned: returned.has(id),
          dropped: dropped.has(id),
          refused: refused.has(id),
          pastProgress,
        }),
        outcome,
      );
    }
  }
  // The follow-ups of card flows: published ids recorded by gen, placed like the others (never
  // "not published": gen records only what it sent).
  const followUpIds = await runFollowUpIds(db, runId);
  for (let start = 0; start < followUpIds.length; start += ID_CHUNK) {
    const ids = followUpIds.slice(start, start + ID_CHUNK);
    const found = new Map((await outcomesOfIds(db, ids)).map((r) => [r.id, r]));
    for (const id of ids) {
      const outcome = found.get(id);
      tally.add(id, placeId(outcome, { parked: parkedIds.has(id), returned: returned.has(id), pastProgress: false }), outcome);
    }
  }
  expected += followUpIds.length;
  const flowOutcomes = await runFlowOutcomes(db, runId);
  const flows =
    flowOutcomes.plannedJson !== null || followUpIds.length > 0
      ? {
          planned: flowOutcomes.plannedJson === null ? null : (JSON.parse(flowOutcomes.plannedJson) as Record<string, number>),
          holds: flowOutcomes.holdsByState,
          authorizationsRejected: flowOutcomes.authorizationsRejected,
        }
      : null;
  const instances =
    instanceRows.length === 0
      ? null
      : (() => {
          const count = Math.max(...instanceRows.map((r) => r.instanceCount));
          const reported = instanceRows.map((r) => r.instanceNo);
          return { count, reported, missing: Array.from({ length: count }, (_, i) => i + 1).filter((k) => !reported.includes(k)) };
        })();
  const duplicated = await overappliedInRun(db, runId);
  const { queued, unconsumed } = await queueCounts(deps);
  const pending = Math.min(tally.missing.length, queued);
  const lost = tally.missing.length - pending;
  const missingExamples = tally.missing.slice(0, EXAMPLES);
  return {
    runId,
    status: String(run.status),
    requested: run.countRequested,
    published: run.published,
    confirmed: run.confirmed,
    expected,
    followUps: followUpIds.length,
    flows,
    notPublished: tally.notPublished + notPublishedFinished,
    applied: tally.applied,
    rejected: tally.rejected,
    rejectedByReason: tally.rejectedByReason,
    parked: tally.parked,
    returned: returned.size,
    dropped: dropped.size,
    instances,
    refused: tally.refused,
    pending,
    lost,
    duplicated: duplicated.length,
    queued,
    unconsumedQueues: unconsumed,
    missingExamples,
    queuedExamples: lost === 0 ? missingExamples : [],
    lostExamples: pending === 0 ? missingExamples : [],
    duplicatedExamples: duplicated.slice(0, EXAMPLES),
  };
}

/**
 * Where an index of a run stands before looking it up: `sent` (a finished gen went past it, so it
 * was published or dropped), `maybe` (its gen is still running or was killed, past its last saved
 * progress: probably never sent), `unsent` (its gen finished without reaching it: never published),
 * `unreported` (its instance of a split run has not reported: nothing to account for yet).
 * A gen goes through its ids in order, so "how far" is a prefix: published + dropped of its ids.
 */
export type IdScope = 'sent' | 'maybe' | 'unsent' | 'unreported';

export function idScopeOf(
  run: Pick<RunRow, 'status' | 'published'>,
  instances: readonly Pick<RunInstanceRow, 'instanceNo' | 'instanceCount' | 'status' | 'published' | 'dropped'>[],
  droppedCount: number,
): (index: number) => IdScope {
  if (instances.length === 0) {
    const reached = run.published + droppedCount;
    return (index) => (index < reached ? 'sent' : run.status === 'running' ? 'maybe' : 'unsent');
  }
  const count = Math.max(...instances.map((r) => r.instanceCount));
  const byNo = new Map(instances.map((r) => [r.instanceNo, r]));
  return (index) => {
    const row = byNo.get((index % count) + 1);
    if (!row) return 'unreported';
    const position = Math.floor(index / count);
    if (position < row.published + row.dropped) return 'sent';
    return row.status === 'running' ? 'maybe' : 'unsent';
  };
}
