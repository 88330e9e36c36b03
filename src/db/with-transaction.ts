import { isNodeNotReady } from './database-nodes.js';
import { lockWaitTimeoutOf, reportDatabaseError, type Knex } from './knex.js';

/** MySQL/MariaDB errors worth retrying: the same work will likely succeed on another try. */
export const RETRYABLE_ERRNOS = new Set([
  1213, // ER_LOCK_DEADLOCK: InnoDB chose this transaction as the victim
  1205, // ER_LOCK_WAIT_TIMEOUT
  1062, // ER_DUP_ENTRY: a concurrent worker recorded the same id first; the retry sees its outcome
  2006, // CR_SERVER_GONE_ERROR
  2013, // CR_SERVER_LOST
  1927, // ER_CONNECTION_KILLED (MariaDB)
  1053, // ER_SERVER_SHUTDOWN
  1047, // ER_UNKNOWN_COM_ERROR: a Galera node not (yet or any longer) in the primary component
]);
const CONNECTION_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_SERVER_SHUTDOWN',
]);

/** True when the database (not this transaction) is the problem: the server is down or unreachable. */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; errno?: number; name?: string; fatal?: boolean };
  if (e?.name === 'KnexTimeoutError') return true; // no connection could be acquired in time
  if (e?.code && CONNECTION_CODES.has(e.code)) return true;
  if (e?.fatal === true) return true; // mysql2 marks errors that killed the connection
  // A Galera node that lost the primary component (or is still joining) refuses work: the database is unavailable.
  return e?.errno === 2006 || e?.errno === 2013 || e?.errno === 1927 || e?.errno === 1053 || isNodeNotReady(err);
}

/** True for errors a retry can cure: deadlock, lock-wait timeout, duplicate race, lost connection. */
export function isRetryableDbError(err: unknown): boolean {
  const errno = (err as { errno?: number }).errno;
  return (typeof errno === 'number' && RETRYABLE_ERRNOS.has(errno)) || isConnectionError(err);
}

export interface WithTransactionOptions {
  /** Immediate in-process retries of deadlocks (and of what `retryWhen` accepts) before giving up to the caller (bounded). */
  readonly deadlockRetriesMax?: number;
  /** Other errors a fresh try of the whole transaction cures (a lost race for a key, say); deadlocks always are. */
  readonly retryWhen?: (err: unknown) => boolean;
}

/** True for InnoDB's deadlock: it rolled this transaction back, and the same work will likely succeed on another try. */
export function isDeadlock(err: unknown): boolean {
  return (err as { errno?: number }).errno === 1213;
}

/** True for a duplicate key (ER_DUP_ENTRY): a row with that key exists, perhaps committed a moment ago by another process. */
export function isDuplicateKey(err: unknown): boolean {
  return (err as { errno?: number }).errno === 1062;
}

/**
 * Runs `work` in one transaction and commits, or rolls everything back on any error. A lock-wait
 * timeout rolls back only the failed statement in InnoDB; committing after it would keep the other
 * half of a posting, so the whole transaction is always rolled back here. Deadlocks (and what
 * `retryWhen` accepts) are retried at once a bounded number of times; every other error goes to the caller.
 */
export async function withTransaction<T>(
  db: Knex,
  work: (trx: Knex.Transaction) => Promise<T>,
  options: WithTransactionOptions = {},
): Promise<T> {
  return retryingDeadlocks(() => db.transaction(work), options);
}

/** Runs `attempt` again, at once, while it fails with a deadlock (InnoDB rolled it back), a bounded number of times. */
async function retryingDeadlocks<T>(attempt: () => Promise<T>, options: WithTransactionOptions): Promise<T> {
  const retriesMax = options.deadlockRetriesMax ?? 2;
  for (let retries = 0; ; retries++) {
    try {
      return await attempt();
    } catch (err) {
      if ((isDeadlock(err) || options.retryWhen?.(err) === true) && retries < retriesMax) continue;
      throw err;
    }
  }
}

/** What a statement sends back: rows for a SELECT, a header (affected rows, insert id) otherwise. */
export type StatementResult = Record<string, unknown>[] | { affectedRows: number; insertId: number };

/** The raw mysql2 connection under knex's pool, as far as the pipelined helper uses it. */
interface RawConnection {
  readonly config: { readonly multipleStatements?: boolean };
  /** Its socket: destroyed to give the connection up (see discard). */
  readonly stream: { destroy(): void };
  query(sql: string, callback: (err: Error | null, results: unknown) => void): void;
}

/** A round trip of withPipelinedTransaction that got no answer in time: its connection was closed (see discard). */
export class RoundTripTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer from the database in ${timeoutMs} ms: connection closed, its transaction left to the server to roll back`);
    this.name = new.target.name;
  }
}

/**
 * Sends `sql` (one statement or several) and resolves with what comes back, or rejects with the error
 * the server sent — or with RoundTripTimeoutError after `timeoutMs` without an answer, when the
 * connection, still busy with `sql`, can no longer be used.
 */
function query(connection: RawConnection, sql: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new RoundTripTimeoutError(timeoutMs)), timeoutMs);
    connection.query(sql, (err, results) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(results);
    });
  });
}

/** Sends ROLLBACK; whether the server answered it without an error. */
async function rolledBack(send: (statements: readonly string[]) => Promise<unknown>): Promise<boolean> {
  try {
    await send(['ROLLBACK']);
    return true;
  } catch {
    return false;
  }
}

/**
 * Gives up a connection whose transaction may still be open: the server rolls back what a closed
 * connection left. The socket is destroyed, as when the server goes away, so that mysql2 fails what
 * still waits on it and knex drops it from the pool instead of lending it out again.
 */
function discard(connection: RawConnection): void {
  connection.stream.destroy();
}

const galeraConnections = new WeakMap<RawConnection, Promise<boolean>>();

/**
 * Whether the connection's server is a Galera node (`@@wsrep_on`; asked once per connection, and a
 * server without the variable, MySQL, is not). On Galera the writes are not sent as one multi-statement
 * query: when a replicated write-set aborts the transaction (a brute-force abort) while such a query
 * runs, the node goes on with the query's remaining statements outside the transaction, each committing
 * on its own. Measured on this project's three local nodes (scripts/galera.sh), four clients writing
 * the same two rows through two nodes for 20 s: sent as one query, 854 entry rows were left without
 * their outcome row and 185 updates committed without it; one statement a round trip, none.
 * `test/faults/galera.test.ts` G4 checks it.
 */
function onGalera(connection: RawConnection, timeoutMs: number): Promise<boolean> {
  const known = galeraConnections.get(connection);
  if (known) return known;
  const asked = query(connection, 'SELECT @@wsrep_on AS wsrep', timeoutMs).then(
    (rows) => Number((rows as { wsrep?: unknown }[] | undefined)?.[0]?.wsrep) === 1,
    (err: unknown) => {
      // MySQL has no such variable: not Galera. Any other failure: not known, so the safe way, asked again next time.
      const unknownVariable = (err as { errno?: unknown }).errno === ER_UNKNOWN_SYSTEM_VARIABLE;
      if (!unknownVariable) galeraConnections.delete(connection);
      // No answer: the connection is still busy with the question, so the caller gives it up.
      if (err instanceof RoundTripTimeoutError) throw err;
      return !unknownVariable;
    },
  );
  galeraConnections.set(connection, asked);
  return asked;
}

const ER_UNKNOWN_SYSTEM_VARIABLE = 1193;

/**
 * A transaction that sends its statements in two round trips instead of one per statement: `begin`
 * sends START TRANSACTION with the reads the work needs (locks first), `commit` sends the writes
 * with COMMIT. It needs a pool created with `multipleStatements`; every value in the SQL must be
 * escaped by the caller (see sql-literal.ts).
 */
export interface PipelinedTransaction {
  /** Opens the transaction and runs `statements` in it; one result per statement. */
  begin(statements: readonly string[]): Promise<StatementResult[]>;
  /** Runs `statements` and commits, in one round trip; one result per statement (COMMIT's left out). */
  commit(statements: readonly string[]): Promise<StatementResult[]>;
}

export interface PipelinedTransactionOptions extends WithTransactionOptions {
  /**
   * How long one round trip may go unanswered before the transaction is given up (RoundTripTimeoutError)
   * and its connection closed. Longer than any round trip that works: each of its statements may wait
   * for a row lock up to the session's innodb_lock_wait_timeout (the worker's: 10 s unless set).
   * Default 60 s, or six of the database's lock waits when that is longer (`--lock-wait-timeout` 20 s: 120 s).
   */
  readonly roundTripTimeoutMs?: number;
}

const ROUND_TRIP_TIMEOUT_MS = 60_000;
/** Lock waits one round trip is given room for when the session's lock wait is long (the write round trip has about five statements). */
const ROUND_TRIP_LOCK_WAITS = 6;

/**
 * The pipelined counterpart of `withTransaction`, for the worker's hot path: one batch costs two
 * round trips to the database, whatever its size (on a Galera node, the writes go one a round trip:
 * see onGalera). MySQL stops a multi-statement query at the first failing statement, so a failed
 * write never reaches the COMMIT behind it; the transaction is then rolled back here, exactly as
 * `withTransaction` does, and deadlocks are retried the same way.
 *
 * Two ways a KILL QUERY (or MariaDB's max_statement_time) leaves the transaction open, both measured on
 * MariaDB 10.11 (test/integration/pipelined-transaction-innodb.test.ts 4b, 4c): landing between two
 * statements of a multi-statement query, it stops the query without an error — the last answer says
 * more follow, then nothing comes (about one in fifty of the KILLs that stopped a batch's writes), and
 * the call would wait forever, the batch's rows locked; landing as a ROLLBACK starts, it fails the
 * ROLLBACK without running it. Either way the connection is closed here rather than handed back to the
 * pool with the transaction open, where the next START TRANSACTION on it would commit whatever of the
 * batch had run. A connection closed while its COMMIT still runs leaves the batch committed whole or
 * not at all, as a lost connection does: an error from here never proves that nothing was written.
 */
export async function withPipelinedTransaction<T>(
  db: Knex,
  work: (trx: PipelinedTransaction) => Promise<T>,
  options: PipelinedTransactionOptions = {},
): Promise<T> {
  // knex types its client `any`; this is the part of it that lends out raw pooled connections.
  const pool = db.client as { acquireConnection(): Promise<unknown>; releaseConnection(connection: unknown): Promise<void> };
  // Each statement of a round trip may wait for a lock up to the session's lock wait: a worker started with
  // a long --lock-wait-timeout gets a limit that leaves room for a few such waits.
  const lockWaitS = lockWaitTimeoutOf(db);
  const timeoutMs = options.roundTripTimeoutMs ?? Math.max(ROUND_TRIP_TIMEOUT_MS, (lockWaitS ?? 0) * ROUND_TRIP_LOCK_WAITS * 1000);
  return retryingDeadlocks(async () => {
    const connection = (await pool.acquireConnection()) as RawConnection;
    if (!connection.config.multipleStatements) {
      await pool.releaseConnection(connection);
      throw new Error('withPipelinedTransaction needs a database created with multipleStatements');
    }
    let galera: boolean;
    try {
      galera = await onGalera(connection, timeoutMs);
    } catch (err) {
      discard(connection);
      await pool.releaseConnection(connection);
      throw err;
    }
    let open = false;
    let committed = false;
    const send = async (statements: readonly string[]) => {
      const results = await query(connection, statements.join(';\n'), timeoutMs);
      return (statements.length === 1 ? [results] : results) as StatementResult[];
    };
    try {
      const value = await work({
        begin: async (statements) => {
          if (open) throw new Error('transaction already begun');
          open = true;
          return (await send(['START TRANSACTION', ...statements])).slice(1);
        },
        commit: async (statements) => {
          if (!open) throw new Error('transaction not begun');
          let results: StatementResult[];
          if (galera) {
            // One statement a round trip: see onGalera.
            results = [];
            for (const statement of statements) results.push(...(await send([statement])));
            await send(['COMMIT']);
          } else {
            results = (await send([...statements, 'COMMIT'])).slice(0, -1);
          }
          committed = true;
          return results;
        },
      });
      if (open && !committed) throw new Error('pipelined transaction ended without commit');
      return value;
    } catch (err) {
      reportDatabaseError(db, err);
      // Over before its connection goes back to the pool, or the next START TRANSACTION there commits what
      // of it ran. A connection still waiting for an unanswered round trip cannot send ROLLBACK; one whose
      // ROLLBACK failed may still be in the transaction (a dead one has rolled back by itself): both are closed.
      if (open && !committed && (err instanceof RoundTripTimeoutError || !(await rolledBack(send)))) discard(connection);
      throw err;
    } finally {
      await pool.releaseConnection(connection);
    }
  }, options);
}
