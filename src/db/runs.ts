import { isMissingTable } from './rows.js';
import { withTransaction } from './with-transaction.js';
import type { Knex } from './knex.js';

/** Storage of gen runs (`runs`, `run_returns`): what `verify --run` accounts for. */

export type RunStatus = 'running' | 'completed' | 'incomplete';

/** A run as verify reads it (INT columns arrive as numbers). */
export interface RunRow {
  readonly id: string;
  readonly status: RunStatus;
  readonly countRequested: number;
  readonly published: number;
  readonly confirmed: number;
}

/**
 * Records the start of a run. A re-run with the same seed continues the same run: the largest count
 * asked for is kept, and so is the flow epoch (`flowEpochMs` in the options) of its first start, even
 * when two instances of a split run start at the same moment; read it back with `runStart`.
 */
export async function startRun(
  db: Knex,
  run: { id: string; seed: string; countRequested: number; optionsJson: string; startedAt: Date },
): Promise<void> {
  await db.raw(
    `INSERT INTO runs (id, seed, count_requested, options_json, status, started_at) VALUES (?, ?, ?, ?, 'running', ?)
     ON DUPLICATE KEY UPDATE count_requested = GREATEST(count_requested, VALUES(count_requested)),
       options_json = IF(JSON_VALUE(options_json, '$.flowEpochMs') IS NOT NULL AND JSON_VALUE(VALUES(options_json), '$.flowEpochMs') IS NOT NULL,
                         JSON_SET(VALUES(options_json), '$.flowEpochMs', CAST(JSON_VALUE(options_json, '$.flowEpochMs') AS SIGNED)),
                         VALUES(options_json)),
       status = 'running', started_at = VALUES(started_at), finished_at = NULL`,
    [run.id, run.seed, run.countRequested, run.optionsJson, run.startedAt],
  );
}

/** What an earlier run of the same id was started with (its `options_json` and count), to refuse a conflicting re-use of a seed. */
export async function runStart(db: Knex, runId: string): Promise<{ countRequested: number; optionsJson: string } | undefined> {
  const row = await db('runs')
    .where('id', runId)
    .first<{ count_requested: number | string; options_json: string } | undefined>('count_requested', 'options_json');
  return row ? { countRequested: Number(row.count_requested), optionsJson: row.options_json } : undefined;
}

/** True when some run already has this id (a `--new-run` looks for the first free one). */
export async function runExists(db: Knex, runId: string): Promise<boolean> {
  return (await db('runs').where('id', runId).first('id')) !== undefined;
}

/** Saves how far a running run got, so verify can tell a killed run's unsent tail from lost messages. */
export async function saveRunProgress(db: Knex, runId: string, progress: { published: number; confirmed: number }): Promise<void> {
  await db('runs').where('id', runId).update({ published: progress.published, confirmed: progress.confirmed });
}

/** Rows per insert of returned ids (bounded so one statement stays small). */
const RETURNS_CHUNK = 500;

/** Records the ids the broker returned as unroutable (idempotent). */
export async function recordRunReturns(db: Knex, runId: string, transactionIds: readonly string[]): Promise<void> {
  for (let i = 0; i < transactionIds.length; i += RETURNS_CHUNK) {
    await db('run_returns')
      .insert(transactionIds.slice(i, i + RETURNS_CHUNK).map((id) => ({ run_id: runId, transaction_id: id })))
      .onConflict()
      .ignore();
  }
}

/** An id of a run sent over HTTP that the API did not accept: the status it answered, or null for no answer. */
export interface RunRefusal {
  readonly id: string;
  readonly status: number | null;
}

/**
 * Records the ids of a run sent over HTTP (`gen --via`) that were not accepted (idempotent: a resumed
 * run that gets another answer for an id keeps the latest). Once accepted, an id leaves the list.
 */
export async function recordRunRefusals(db: Knex, runId: string, refusals: readonly RunRefusal[]): Promise<void> {
  for (let i = 0; i < refusals.length; i += RETURNS_CHUNK) {
    await db('run_refusals')
      .insert(refusals.slice(i, i + RETURNS_CHUNK).map((r) => ({ run_id: runId, transaction_id: r.id, http_status: r.status })))
      .onConflict(['run_id', 'transaction_id'])
      .merge(['http_status']);
  }
}

/** Removes ids a resumed HTTP run got accepted this time from its refusals. */
export async function clearRunRefusals(db: Knex, runId: string, acceptedIds: readonly string[]): Promise<void> {
  for (let i = 0; i < acceptedIds.length; i += RETURNS_CHUNK) {
    await db('run_refusals')
      .where('run_id', runId)
      .whereIn('transaction_id', acceptedIds.slice(i, i + RETURNS_CHUNK))
      .delete();
  }
}

/**
 * Ids of a run sent over HTTP that the API did not accept (answered non-2xx, or not at all). A
 * database set up before `run_refusals` existed has no such runs: verify of an AMQP run must not
 * need `txsim setup` again to work.
 */
export async function runRefusedIds(db: Knex, runId: string): Promise<Set<string>> {
  const rows = await orNoneBeforeSetup(db('run_refusals').where('run_id', runId).select<{ transaction_id: string }[]>('transaction_id'));
  return new Set(rows.map((r) => r.transaction_id));
}

/** Records how a run ended. */
export async function finishRun(
  db: Knex,
  runId: string,
  result: {
    published: number;
    confirmed: number;
    returned: number;
    nacked: number;
    invalid: number;
    status: Exclude<RunStatus, 'running'>;
    finishedAt: Date;
  },
): Promise<void> {
  await db('runs').where('id', runId).update({
    published: result.published,
    confirmed: result.confirmed,
    returned: result.returned,
    nacked: result.nacked,
    invalid: result.invalid,
    status: result.status,
    finished_at: result.finishedAt,
  });
}

export async function getRun(db: Knex, runId: string): Promise<RunRow | undefined> {
  const row = await db('runs')
    .where('id', runId)
    .first<
      | { id: string; status: RunStatus; count_requested: number | string; published: number | string; confirmed: number | string }
      | undefined
    >('id', 'status', 'count_requested', 'published', 'confirmed');
  if (!row) return undefined;
  return {
    id: row.id,
    status: row.status,
    countRequested: Number(row.count_requested),
    published: Number(row.published),
    confirmed: Number(row.confirmed),
  };
}

/** Ids of a run the broker returned as unroutable. */
export async function runReturnedIds(db: Knex, runId: string): Promise<Set<string>> {
  const rows = await db('run_returns').where('run_id', runId).select<{ transaction_id: string }[]>('transaction_id');
  return new Set(rows.map((r) => r.transaction_id));
}

/** Records the ids a paced run dropped rather than sent late (idempotent). */
export async function recordRunDrops(db: Knex, runId: string, transactionIds: readonly string[]): Promise<void> {
  for (let i = 0; i < transactionIds.length; i += RETURNS_CHUNK) {
    await db('run_drops')
      .insert(transactionIds.slice(i, i + RETURNS_CHUNK).map((id) => ({ run_id: runId, transaction_id: id })))
      .onConflict()
      .ignore();
  }
}

/** Ids of a run dropped rather than sent late. */
export async function runDroppedIds(db: Knex, runId: string): Promise<Set<string>> {
  const rows = await orNoneBeforeSetup(db('run_drops').where('run_id', runId).select<{ transaction_id: string }[]>('transaction_id'));
  return new Set(rows.map((r) => r.transaction_id));
}

/** Records the follow-ups (card flows) a run published (idempotent). */
export async function recordRunFollowUps(db: Knex, runId: string, transactionIds: readonly string[]): Promise<void> {
  for (let i = 0; i < transactionIds.length; i += RETURNS_CHUNK) {
    await db('run_followups')
      .insert(transactionIds.slice(i, i + RETURNS_CHUNK).map((id) => ({ run_id: runId, transaction_id: id })))
      .onConflict()
      .ignore();
  }
}

/** Ids of the follow-ups a run published (none before sql/008 existed). */
export async function runFollowUpIds(db: Knex, runId: string): Promise<string[]> {
  const rows = await orNoneBeforeSetup(
    db('run_followups').where('run_id', runId).orderBy('transaction_id').select<{ transaction_id: string }[]>('transaction_id'),
  );
  return rows.map((r) => r.transaction_id);
}

/** Saves what gen planned for a run's card flows (JSON): the whole run's, or one instance's share of a split run. */
export async function saveRunFlowsPlanned(db: Knex, runId: string, plannedJson: string, instanceNo: number | null = null): Promise<void> {
  if (instanceNo === null) await db('runs').where('id', runId).update({ flows_planned_json: plannedJson });
  else await db('run_instances').where({ run_id: runId, instance_no: instanceNo }).update({ flows_planned_json: plannedJson });
}

/**
 * A split run's plan: the sum of its instances' shares once every instance has saved one, else null
 * (an instance still running, or a namespace set up before sql/013: `*` reads no such column then).
 */
async function instancesPlannedJson(db: Knex, runId: string): Promise<string | null> {
  const rows = await orNoneBeforeSetup(
    db('run_instances').where('run_id', runId).select<{ instance_count: number; flows_planned_json?: string | null }[]>('*'),
  );
  if (rows.length === 0 || rows.length < Number(rows[0]!.instance_count)) return null;
  const sum: Record<string, number> = {};
  for (const row of rows) {
    if (!row.flows_planned_json) return null;
    for (const [key, n] of Object.entries(JSON.parse(row.flows_planned_json) as Record<string, number>)) sum[key] = (sum[key] ?? 0) + n;
  }
  return JSON.stringify(sum);
}

/**
 * The card flows of a run as verify shows them: what gen planned (null when it saved no plan; a split
 * run's once all its instances saved theirs), its
 * applied authorizations' holds by state, and its authorizations rejected (which have no hold).
 */
export async function runFlowOutcomes(
  db: Knex,
  runId: string,
): Promise<{ plannedJson: string | null; holdsByState: Record<string, number>; authorizationsRejected: number }> {
  const run = await db('runs').where('id', runId).first<{ flows_planned_json?: string | null } | undefined>('*');
  const states = (await db.raw(
    `SELECT h.state, COUNT(*) AS n FROM transactions t JOIN holds h ON h.id = t.id
      WHERE t.run_id = ? AND t.type = 'card_authorization' GROUP BY h.state`,
    [runId],
  )) as [{ state: string; n: number | string }[], unknown];
  const rejected = await db('transactions')
    .where({ run_id: runId, type: 'card_authorization', status: 'rejected' })
    .count<{ n: number | string }[]>({ n: '*' });
  return {
    plannedJson: run?.flows_planned_json ?? (await instancesPlannedJson(db, runId)),
    holdsByState: Object.fromEntries(states[0].map((r) => [r.state, Number(r.n)])),
    authorizationsRejected: Number(rejected[0]?.n ?? 0),
  };
}

/**
 * The rows, or none when the table does not exist: a namespace set up before the table's sql file has
 * no split runs, drops or refusals, and verify must still account for its runs (`txsim setup` adds the tables).
 */
async function orNoneBeforeSetup<T>(query: PromiseLike<T[]>): Promise<T[]> {
  try {
    return await query;
  } catch (err) {
    if (isMissingTable(err)) return [];
    throw err;
  }
}

/** One instance of a run published by several gen processes (`gen --instance k/n`). */
export interface RunInstanceRow {
  readonly instanceNo: number;
  readonly instanceCount: number;
  readonly countShare: number;
  readonly published: number;
  readonly confirmed: number;
  readonly dropped: number;
  readonly late: number;
  readonly status: RunStatus;
}

/** Counts of one instance, saved while it runs and at its end. */
export interface InstanceCounts {
  readonly published: number;
  readonly confirmed: number;
  readonly dropped: number;
  readonly late: number;
  readonly returned?: number;
  readonly nacked?: number;
  readonly invalid?: number;
  readonly status?: Exclude<RunStatus, 'running'>;
  readonly finishedAt?: Date;
}

/** Records the start of one instance of a run (a re-run of the same instance resumes its row). */
export async function startRunInstance(
  db: Knex,
  runId: string,
  instance: { no: number; count: number; countShare: number; startedAt: Date },
): Promise<void> {
  await db.raw(
    `INSERT INTO run_instances (run_id, instance_no, instance_count, count_share, status, started_at) VALUES (?, ?, ?, ?, 'running', ?)
     ON DUPLICATE KEY UPDATE instance_count = VALUES(instance_count), count_share = VALUES(count_share), status = 'running', started_at = VALUES(started_at), finished_at = NULL`,
    [runId, instance.no, instance.count, instance.countShare, instance.startedAt],
  );
}

/**
 * Saves one instance's counts, then rolls every instance of the run up into its `runs` row (sums;
 * `running` until all instances have finished), in one transaction so the row never mixes two saves.
 * The `runs` row is locked first: instances saving at once then queue on it. Without that, each held
 * its own instance row and waited for the other's to read the sums, and InnoDB killed one as a deadlock.
 */
export async function saveRunInstance(db: Knex, runId: string, instanceNo: number, counts: InstanceCounts): Promise<void> {
  await withTransaction(db, async (trx) => {
    await trx('runs').where('id', runId).forUpdate().first('id');
    await trx('run_instances')
      .where({ run_id: runId, instance_no: instanceNo })
      .update({
        published: counts.published,
        confirmed: counts.confirmed,
        dropped: counts.dropped,
        late: counts.late,
        ...(counts.returned !== undefined ? { returned: counts.returned } : {}),
        ...(counts.nacked !== undefined ? { nacked: counts.nacked } : {}),
        ...(counts.invalid !== undefined ? { invalid: counts.invalid } : {}),
        ...(counts.status ? { status: counts.status, finished_at: counts.finishedAt ?? new Date() } : {}),
      });
    await trx.raw(
      `UPDATE runs r
         JOIN (SELECT run_id, SUM(published) AS published, SUM(confirmed) AS confirmed, SUM(returned) AS returned,
                      SUM(nacked) AS nacked, SUM(invalid) AS invalid, COUNT(*) AS reported, MAX(instance_count) AS instances,
                      SUM(status = 'running') AS running, SUM(status = 'incomplete') AS incomplete, MAX(finished_at) AS finished_at
                 FROM run_instances WHERE run_id = ? GROUP BY run_id) i ON i.run_id = r.id
          SET r.published = i.published, r.confirmed = i.confirmed, r.returned = i.returned, r.nacked = i.nacked, r.invalid = i.invalid,
              r.status = CASE WHEN i.running > 0 OR i.reported < i.instances THEN 'running' WHEN i.incomplete > 0 THEN 'incomplete' ELSE 'completed' END,
              r.finished_at = CASE WHEN i.running > 0 OR i.reported < i.instances THEN NULL ELSE i.finished_at END`,
      [runId],
    );
  });
}

/** Every instance of a run that has reported (empty for a run published by one gen). */
export async function runInstances(db: Knex, runId: string): Promise<RunInstanceRow[]> {
  const rows = await orNoneBeforeSetup(
    db('run_instances').where('run_id', runId).orderBy('instance_no').select<
      {
        instance_no: number;
        instance_count: number;
        count_share: number;
        published: number;
        confirmed: number;
        dropped: number;
        late: number;
        status: RunStatus;
      }[]
    >('instance_no', 'instance_count', 'count_share', 'published', 'confirmed', 'dropped', 'late', 'status'),
  );
  return rows.map((r) => ({
    instanceNo: Number(r.instance_no),
    instanceCount: Number(r.instance_count),
    countShare: Number(r.count_share),
    published: Number(r.published),
    confirmed: Number(r.confirmed),
    dropped: Number(r.dropped),
    late: Number(r.late),
    status: r.status,
  }));
}
