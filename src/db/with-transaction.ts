import type { Knex } from './knex.js';

/** MySQL/MariaDB errors worth retrying: the same work will likely succeed on another try. */
export const RETRYABLE_ERRNOS = new Set([
  1213, // ER_LOCK_DEADLOCK: InnoDB chose this transaction as the victim
  1205, // ER_LOCK_WAIT_TIMEOUT
  1062, // ER_DUP_ENTRY: a concurrent worker recorded the same id first; the retry sees its outcome
  2006, // CR_SERVER_GONE_ERROR
  2013, // CR_SERVER_LOST
  1927, // ER_CONNECTION_KILLED (MariaDB)
  1053, // ER_SERVER_SHUTDOWN
]);
const CONNECTION_CODES = new Set(['PROTOCOL_CONNECTION_LOST', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_SERVER_SHUTDOWN']);

/** True when the database (not this transaction) is the problem: the server is down or unreachable. */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; errno?: number; name?: string; fatal?: boolean };
  if (e?.name === 'KnexTimeoutError') return true; // no connection could be acquired in time
  if (e?.code && CONNECTION_CODES.has(e.code)) return true;
  if (e?.fatal === true) return true; // mysql2 marks errors that killed the connection
  return e?.errno === 2006 || e?.errno === 2013 || e?.errno === 1927 || e?.errno === 1053;
}

/** True for errors a retry can cure: deadlock, lock-wait timeout, duplicate race, lost connection. */
export function isRetryableDbError(err: unknown): boolean {
  const errno = (err as { errno?: number }).errno;
  return (typeof errno === 'number' && RETRYABLE_ERRNOS.has(errno)) || isConnectionError(err);
}

export interface WithTransactionOptions {
  /** Immediate in-process retries of deadlocks before giving up to the caller (bounded). */
  readonly deadlockRetriesMax?: number;
}

/**
 * Runs `work` in one transaction and commits, or rolls everything back on any error. A lock-wait
 * timeout rolls back only the failed statement in InnoDB; committing after it would keep the other
 * half of a posting, so the whole transaction is always rolled back here. Deadlocks are retried at
 * once a bounded number of times; every other error goes to the caller.
 */
export async function withTransaction<T>(db: Knex, work: (trx: Knex.Transaction) => Promise<T>, options: WithTransactionOptions = {}): Promise<T> {
  const retriesMax = options.deadlockRetriesMax ?? 2;
  for (let attempt = 0; ; attempt++) {
    try {
      return await db.transaction(work);
    } catch (err) {
      if ((err as { errno?: number }).errno === 1213 && attempt < retriesMax) continue;
      throw err;
    }
  }
}
