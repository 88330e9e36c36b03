import type { Knex } from './knex.js';
import { isMissingTable, rowsOf } from './rows.js';
import { sqlLiteral } from './sql-literal.js';

/**
 * The partition leases of an ordered namespace (sql/008-ordering.sql): the partition count that
 * `setup --partitions` recorded, the workers' heartbeats and who holds each partition queue. Every
 * time is the database's NOW(3), so the workers' clocks never have to agree.
 */

/** The partition count `setup --partitions` recorded for a namespace; 0 when it is unordered. */
export async function readPartitionCount(db: Knex, namespace: string): Promise<number> {
  try {
    const row = rowsOf<{ partitions: number }>(await db.raw('SELECT partitions FROM ordering_setup WHERE namespace = ?', [namespace]))[0];
    return row ? Number(row.partitions) : 0;
  } catch (err) {
    // A database set up before ordering existed has no such table: it was never ordered.
    if (isMissingTable(err)) return 0;
    throw err;
  }
}

/** Records the namespace's partition count and makes one lease row per partition (rows of a larger earlier count go). */
export async function recordPartitionCount(db: Knex, namespace: string, partitions: number): Promise<void> {
  if (!Number.isSafeInteger(partitions) || partitions < 1) throw new RangeError(`partitions must be >= 1, got ${partitions}`);
  await db.raw(
    'INSERT INTO ordering_setup (namespace, partitions, updated_at) VALUES (?, ?, NOW(3)) ON DUPLICATE KEY UPDATE partitions = VALUES(partitions), updated_at = VALUES(updated_at)',
    [namespace, partitions],
  );
  const rows = Array.from({ length: partitions }, (_, k) => `(${sqlLiteral(namespace)}, ${k})`).join(', ');
  await db.raw(`INSERT IGNORE INTO partition_leases (namespace, partition_no) VALUES ${rows}`);
  await db.raw('DELETE FROM partition_leases WHERE namespace = ? AND partition_no >= ?', [namespace, partitions]);
}

/** Back to unordered (`setup --partitions 0`): the record and the leases go. */
export async function forgetPartitionCount(db: Knex, namespace: string): Promise<void> {
  await db.raw('DELETE FROM ordering_setup WHERE namespace = ?', [namespace]);
  await db.raw('DELETE FROM partition_leases WHERE namespace = ?', [namespace]);
}

/** What one heartbeat saw: the live workers (sorted), the partitions this worker holds and those free to claim. */
export interface LeaseView {
  readonly liveWorkers: readonly string[];
  readonly held: readonly number[];
  readonly free: readonly number[];
}

/** The lease operations a worker needs (an interface so unit tests can run the balancer without a database). */
export interface PartitionLeaseStore {
  /** Renews this worker's heartbeat and every lease it holds, and reads the state. */
  heartbeat(workerId: string, leaseMs: number): Promise<LeaseView>;
  /** Takes a partition that is free or whose lease expired; false when another worker has it. */
  claim(workerId: string, partition: number, leaseMs: number): Promise<boolean>;
  /** Gives a held partition up (it is free at once). */
  release(workerId: string, partition: number): Promise<void>;
  /** At shutdown: gives every partition up and removes the heartbeat, so the others rebalance at once. */
  leave(workerId: string): Promise<void>;
}

const expiry = (leaseMs: number) => `NOW(3) + INTERVAL ${Math.round(leaseMs) * 1000} MICROSECOND`;

/** The store over the database, for one namespace. */
export function partitionLeaseStore(db: Knex, namespace: string): PartitionLeaseStore {
  return {
    async heartbeat(workerId, leaseMs) {
      await db.raw(
        `INSERT INTO worker_heartbeats (namespace, worker_id, expires_at) VALUES (?, ?, ${expiry(leaseMs)}) ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)`,
        [namespace, workerId],
      );
      await db.raw(`UPDATE partition_leases SET expires_at = ${expiry(leaseMs)} WHERE namespace = ? AND worker_id = ?`, [
        namespace,
        workerId,
      ]);
      const live = rowsOf<{ worker_id: string }>(
        await db.raw('SELECT worker_id FROM worker_heartbeats WHERE namespace = ? AND expires_at > NOW(3) ORDER BY worker_id', [namespace]),
      );
      const leases = rowsOf<{ partition_no: number; worker_id: string | null; live: number }>(
        await db.raw(
          'SELECT partition_no, worker_id, (expires_at IS NOT NULL AND expires_at > NOW(3)) AS live FROM partition_leases WHERE namespace = ? ORDER BY partition_no',
          [namespace],
        ),
      );
      // Dead workers' heartbeats are not needed any more: keep the table as small as the live set.
      await db.raw('DELETE FROM worker_heartbeats WHERE namespace = ? AND expires_at < NOW(3) - INTERVAL 1 MINUTE', [namespace]);
      return {
        liveWorkers: live.map((r) => r.worker_id),
        held: leases.filter((r) => r.worker_id === workerId).map((r) => Number(r.partition_no)),
        free: leases.filter((r) => r.worker_id === null || !Number(r.live)).map((r) => Number(r.partition_no)),
      };
    },
    async claim(workerId, partition, leaseMs) {
      const [result] = (await db.raw(
        `UPDATE partition_leases SET worker_id = ?, expires_at = ${expiry(leaseMs)} WHERE namespace = ? AND partition_no = ? AND (worker_id IS NULL OR worker_id = ? OR expires_at IS NULL OR expires_at <= NOW(3))`,
        [workerId, namespace, partition, workerId],
      )) as [{ affectedRows: number }];
      return result.affectedRows === 1;
    },
    async release(workerId, partition) {
      await db.raw(
        'UPDATE partition_leases SET worker_id = NULL, expires_at = NULL WHERE namespace = ? AND partition_no = ? AND worker_id = ?',
        [namespace, partition, workerId],
      );
    },
    async leave(workerId) {
      await db.raw('UPDATE partition_leases SET worker_id = NULL, expires_at = NULL WHERE namespace = ? AND worker_id = ?', [
        namespace,
        workerId,
      ]);
      await db.raw('DELETE FROM worker_heartbeats WHERE namespace = ? AND worker_id = ?', [namespace, workerId]);
    },
  };
}

/** Rows of the ordering check: an outcome applied after one of a later sequence number of the same account. */
export interface OrderingViolationRow {
  readonly id: string;
  readonly account_id: string;
  readonly account_seq: string;
  readonly prev_max_seq: string;
  readonly run_id: string | null;
}

/**
 * The outcomes written after an outcome of a higher sequence number of the same account (same run
 * and gen instance): applied out of gen's order. `runId` narrows it to one run.
 */
export function orderingViolationsQuery(runId: string | null): { countSql: string; examplesSql: string } {
  const where = `account_seq IS NOT NULL${runId === null ? '' : ` AND run_id = ${sqlLiteral(runId)}`}`;
  const from =
    `FROM (SELECT id, account_id, account_seq, run_id, apply_order, MAX(account_seq) OVER (PARTITION BY run_id, account_id, seq_stream ORDER BY apply_order ` +
    `ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max_seq FROM transactions WHERE ${where}) o WHERE o.account_seq < o.prev_max_seq`;
  return {
    countSql: `SELECT COUNT(*) AS n ${from}`,
    examplesSql: `SELECT o.id, o.account_id, o.account_seq, o.prev_max_seq, o.run_id ${from} ORDER BY o.apply_order`,
  };
}
