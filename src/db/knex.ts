import knexModule, { type Knex } from 'knex';
import { redactUrl } from '../config/redact.js';
import { NotFoundError, ServiceUnavailableError } from '../errors.js';
import { DatabaseNodes, isNodeNotReady, probeNode, type NodeFault, type PooledConnection } from './database-nodes.js';

export type { Knex };
// knex is CommonJS; its default export is the factory.
const createKnex = knexModule as unknown as (config: Knex.Config) => Knex;

export interface DatabaseOptions {
  readonly databaseUrl: string;
  /** The database to use; null for a server-level connection (creating or dropping databases). */
  readonly databaseName: string | null;
  /** Connections in the pool: bounds concurrent transactions of this process. */
  readonly poolMax?: number;
  /** Session `innodb_lock_wait_timeout` in seconds (short values surface contention as retries). */
  readonly lockWaitTimeoutS?: number;
  /**
   * READ COMMITTED sessions (the worker's). Every balance is read with a locking read, so nothing
   * relies on REPEATABLE READ snapshots; and under REPEATABLE READ an UPDATE or locking SELECT that
   * the optimizer runs as a table scan (a small accounts table) locks rows it does not change, which
   * deadlocks concurrent batches. READ COMMITTED skips and releases rows that do not match.
   */
  readonly readCommitted?: boolean;
  /**
   * Lets one query carry several statements (the worker's pipelined batches, see
   * `withPipelinedTransaction`). Off elsewhere: nothing else needs it.
   */
  readonly multipleStatements?: boolean;
}

/**
 * knex prints connection errors with stacks to the console; txsim reports them itself, in one line
 * through the error boundary or the worker's logger, so knex's own printing is silenced.
 */
const QUIET_KNEX_LOG = { warn: () => {}, error: () => {}, deprecate: () => {}, debug: () => {} };

/** mysql2 connection settings from a URL. BIGINTs arrive as strings: money never passes through a float. */
export function connectionFromUrl(databaseUrl: string, databaseName: string | null, multipleStatements: boolean) {
  const url = new URL(databaseUrl);
  return {
    host: url.hostname || '127.0.0.1',
    port: url.port ? Number(url.port) : 3306,
    user: decodeURIComponent(url.username || 'root'),
    password: decodeURIComponent(url.password),
    ...(databaseName ? { database: databaseName } : {}),
    supportBigNumbers: true,
    bigNumberStrings: true,
    decimalNumbers: false,
    dateStrings: false,
    timezone: 'Z',
    charset: 'utf8mb4',
    connectTimeout: 5_000,
    multipleStatements,
  };
}

/** What a process is told when it moves to another database node, and why. */
export type NodeMove = { readonly from: string; readonly to: string; readonly fault: NodeFault; readonly detail: string };

/** The node list of each multi-node database, for `reportDatabaseError`. */
const nodesOf = new WeakMap<Knex, DatabaseNodes>();
/** The innodb_lock_wait_timeout (s) each database's sessions were given, where one was. */
const lockWaitOf = new WeakMap<Knex, number>();

/** The lock wait its sessions were set to (seconds), or null when the server's own applies. */
export function lockWaitTimeoutOf(db: Knex): number | null {
  return lockWaitOf.get(db) ?? null;
}

/**
 * A knex instance for the txsim database. Call `checkDatabase` to fail fast when it is unreachable.
 * With several nodes in `databaseUrl` (a Galera cluster), connections go to one node at a time and
 * move to the next when it fails or refuses work (DatabaseNodes).
 */
export function createDatabase(options: DatabaseOptions, hooks: { onNodeChange?: (move: NodeMove) => void } = {}): Knex {
  const multipleStatements = options.multipleStatements ?? false;
  const nodes = new DatabaseNodes(options.databaseUrl, (url) => probeNode(connectionFromUrl(url, null, false)));
  const connection =
    nodes.count === 1
      ? connectionFromUrl(options.databaseUrl, options.databaseName, multipleStatements)
      : // knex calls this provider for the first connection and again whenever `expirationChecker` says so.
        async () => {
          const node = await nodes.choose(hooks.onNodeChange);
          return { ...connectionFromUrl(node.url, options.databaseName, multipleStatements), expirationChecker: node.expired };
        };
  const db = buildKnex(options, connection, nodes.count > 1 ? nodes : null);
  if (options.lockWaitTimeoutS) lockWaitOf.set(db, options.lockWaitTimeoutS);
  if (nodes.count > 1) {
    nodesOf.set(db, nodes);
    // tarn's pool (knex's) reports every connection it could not create.
    (db.client as { pool?: { on(event: 'createFail', listener: () => void): void } }).pool?.on('createFail', () => nodes.markSuspect());
    db.on('query-error', (err: unknown) => reportDatabaseError(db, err));
  }
  return db;
}

/**
 * Tells a multi-node database about an error of a statement it ran outside knex's query builder (the
 * worker's pipelined batches): a node that refused work (1047) is probed before the next connection.
 */
export function reportDatabaseError(db: Knex, err: unknown): void {
  if (isNodeNotReady(err)) nodesOf.get(db)?.markSuspect();
}

function buildKnex(options: DatabaseOptions, connection: Knex.Config['connection'], nodes: DatabaseNodes | null): Knex {
  const lockWait = options.lockWaitTimeoutS;
  return createKnex({
    client: 'mysql2',
    connection,
    pool: {
      min: 0,
      max: options.poolMax ?? 4,
      afterCreate: (
        conn: { query: (sql: string, cb: (err: Error | null) => void) => void },
        done: (err: Error | null, conn: unknown) => void,
      ) => {
        // UTC session clock so DATETIME(3) values mean the same thing everywhere. Backslash escapes on:
        // mysql2 escapes values client-side with backslashes (knex's bindings and the worker's batch
        // literals alike), which a server set to NO_BACKSLASH_ESCAPES would read differently.
        const settings = [
          `time_zone = '+00:00'`,
          `sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')`,
          ...(lockWait ? [`innodb_lock_wait_timeout = ${Math.max(1, Math.floor(lockWait))}`] : []),
        ];
        nodes?.track(conn as unknown as PooledConnection);
        conn.query(`SET SESSION ${settings.join(', ')}`, (err) => {
          if (err || !options.readCommitted) return done(err, conn);
          // Same statement on MariaDB and MySQL 8 (their variable names differ).
          conn.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED', (err2) => done(err2, conn));
        });
      },
    },
    acquireConnectionTimeout: 10_000,
    log: QUIET_KNEX_LOG,
  });
}

/** The server part of a database URL (no path, password redacted): where the server is, not which database. */
function serverOf(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    url.pathname = '';
    return redactUrl(url.toString());
  } catch {
    return redactUrl(databaseUrl);
  }
}

/**
 * Runs `SELECT 1`. An unreachable server is the one-line ServiceUnavailableError (exit 3); a server
 * that answers but has no such database is NotFoundError (exit 5) saying to run `txsim setup`, like a
 * missing queue or exchange.
 */
export async function checkDatabase(db: Knex, databaseUrl: string, databaseName: string): Promise<void> {
  try {
    await db.raw('SELECT 1');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ER_BAD_DB_ERROR') {
      throw new NotFoundError(
        `database ${databaseName} does not exist on ${serverOf(databaseUrl)} (the server answered): run \`txsim setup\` to create it, or check --namespace / DATABASE_URL`,
      );
    }
    throw new ServiceUnavailableError('database', redactUrl(databaseUrl), err);
  }
}
