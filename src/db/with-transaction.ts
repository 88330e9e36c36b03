import { isNodeNotReady } from './database-nodes.js';
import { reportDatabaseError, type Knex } from './knex.js';

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
  query(sql: string, callback: (err: Error | null, results: unknown) => void): void;
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
function onGalera(connection: RawConnection): Promise<boolean> {
  const known = galeraConnections.get(connection);
  if (known) return known;
  const asked = new Promise<boolean>((resolve) =>
    connection.query('SELECT @@wsrep_on AS wsrep', (err, rows) => {
      // MySQL has no such variable: not Galera. Any other failure: not known, so the safe way, asked again next time.
      if (err) {
        const unknownVariable = (err as { errno?: unknown }).errno === ER_UNKNOWN_SYSTEM_VARIABLE;
        if (!unknownVariable) galeraConnections.delete(connection);
        return resolve(!unknownVariable);
      }
      resolve(Number((rows as { wsrep?: unknown }[] | undefined)?.[0]?.wsrep) === 1);
    }),
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

/**
 * The pipelined counterpart of `withTransaction`, for the worker's hot path: one batch costs two
 * round trips to the database, whatever its size (on a Galera node, the writes go one a round trip:
 * see onGalera). MySQL stops a multi-statement query at the first
 * failing statement, so a failed write never reaches the COMMIT behind it; the transaction is then
 * rolled back here, exactly as `withTransaction` does, and deadlocks are retried the same way.
 */
export async function withPipelinedTransaction<T>(
  db: Knex,
  work: (trx: PipelinedTransaction) => Promise<T>,
  options: WithTransactionOptions = {},
): Promise<T> {
  // knex types its client `any`; this is the part of it that lends out raw pooled connections.
  const pool = db.client as { acquireConnection(): Promise<unknown>; releaseConnection(connection: unknown): Promise<void> };
  return retryingDeadlocks(async () => {
    const connection = (await pool.acquireConnection()) as RawConnection;
    if (!connection.config.multipleStatements) {
      await pool.releaseConnection(connection);
      throw new Error('withPipelinedTransaction needs a database created with multipleStatements');
    }
    const galera = await onGalera(connection);
    let open = false;
    let committed = false;
    const send = (statements: readonly string[]) =>
      new Promise<StatementResult[]>((resolve, reject) => {
        connection.query(statements.join(';\n'), (err, results) =>
          err ? reject(err) : resolve((statements.length === 1 ? [results] : results) as StatementResult[]),
        );
      });
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
      if (open && !committed) await send(['ROLLBACK']).catch(() => {}); // a dead connection rolls back by itself
      throw err;
    } finally {
      await pool.releaseConnection(connection);
    }
  }, options);
}
