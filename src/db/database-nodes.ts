import mysql, { type ConnectionOptions } from 'mysql2/promise';
import { redactUrl } from '../config/redact.js';
import { splitUrlList } from '../config/url-list.js';

/** How long the probe of one node (login and one status read) may take before the next node is tried. */
const PROBE_TIMEOUT_MS = 1_000;

/** Why a node was left: it could not be reached, or it answered but refuses work. */
export type NodeFault = 'unreachable' | 'not ready';

/** Whether a node takes work: null when it does, else why not (with the detail for the log). */
export type NodeProbe = (databaseUrl: string) => Promise<{ fault: NodeFault; detail: string } | null>;

/** A mysql2 connection of a pool (the part of it DatabaseNodes reads or marks). */
export interface PooledConnection {
  readonly config: { readonly host?: string; readonly port?: number };
  once(event: 'end' | 'error', listener: () => void): unknown;
  /** knex's own mark: a connection with it is dropped, not lent out, the next time the pool would lend it. */
  __knex__disposed?: string;
}

/**
 * The database nodes a process may use: `DATABASE_URL` may list several nodes of a Galera cluster,
 * comma-separated. A process writes through one node at a time (writing through several would only
 * add certification conflicts) and moves on to the next when that node fails: a connection that
 * cannot be made, or a statement refused because the node is outside the cluster's primary component
 * (error 1047 — it still accepts connections), marks the node suspect, and the next new connection
 * first probes the current node (a login and `wsrep_ready`), moving round robin until one takes work.
 * On a move, knex's pool re-creates its connections (the config provider's expiration checker) and
 * every pooled connection to another node is marked disposed, so none is used again.
 */
export class DatabaseNodes {
  private readonly urls: readonly string[];
  private index = 0;
  /** Bumped on every move; connection settings handed out at an older version are expired. */
  private version = 0;
  private suspect: boolean;
  /** The pool's open connections, to drop those of a node left behind. */
  private readonly connections = new Set<PooledConnection>();

  constructor(
    databaseUrl: string,
    private readonly probe: NodeProbe,
  ) {
    this.urls = splitUrlList(databaseUrl);
    if (this.urls.length === 0) throw new Error('DATABASE_URL: no database URL given');
    // The first connection checks its node too: a one-shot command fails on its first error, so it must
    // start on a node that answers.
    this.suspect = this.urls.length > 1;
  }

  get count(): number {
    return this.urls.length;
  }

  /** The node new connections go to (password included: log `describe()` instead). */
  get current(): string {
    return this.urls[this.index]!;
  }

  describe(): string {
    return redactUrl(this.current);
  }

  /** A connection to the current node failed, or the node refused work: the next new connection probes it first. */
  markSuspect(): void {
    this.suspect = true;
  }

  /** Follows one of the pool's connections (knex's afterCreate), so a move can drop it. */
  track(connection: PooledConnection): void {
    if (!this.isOnCurrent(connection)) {
      connection.__knex__disposed = 'made to a database node since left';
      return;
    }
    this.connections.add(connection);
    const forget = () => this.connections.delete(connection);
    connection.once('end', forget);
    connection.once('error', forget);
  }

  /**
   * The node for the next connection: the current one if it takes work, else the next that does (when
   * none does, the round ends where it began, and the connect error names that node; the next failure
   * starts another round). Returns the node and a checker that says when its settings are out of date.
   */
  async choose(
    onMove?: (move: { from: string; to: string; fault: NodeFault; detail: string }) => void,
  ): Promise<{ url: string; expired: () => boolean }> {
    if (this.suspect && this.urls.length > 1) {
      this.suspect = false;
      const from = this.describe();
      let left: { fault: NodeFault; detail: string } | null = null;
      for (let tried = 0; tried < this.urls.length; tried++) {
        const fault = await this.probe(this.current);
        if (!fault) break;
        left ??= fault;
        this.index = (this.index + 1) % this.urls.length;
      }
      if (left) {
        this.version++;
        for (const connection of this.connections) {
          if (this.isOnCurrent(connection)) continue;
          connection.__knex__disposed = 'its database node was left';
          this.connections.delete(connection);
        }
        onMove?.({ from, to: this.describe(), ...left });
      }
    }
    const version = this.version;
    return { url: this.current, expired: () => this.suspect || this.version !== version };
  }

  private isOnCurrent(connection: PooledConnection): boolean {
    const url = new URL(this.current);
    return connection.config.host === (url.hostname || '127.0.0.1') && connection.config.port === (Number(url.port) || 3306);
  }
}

/**
 * A Galera node outside the primary component accepts logins but refuses statements with 1047
 * (ER_UNKNOWN_COM_ERROR, "WSREP has not yet prepared node for application use"), and a COMMIT caught
 * as it leaves with 1180 (ER_ERROR_DURING_COMMIT, "… Not connected to Primary Component").
 */
export function isNodeNotReady(err: unknown): boolean {
  const e = err as { errno?: number; message?: string } | null;
  return e?.errno === 1047 || (e?.errno === 1180 && /primary component/i.test(e.message ?? ''));
}

/**
 * Probes a node with the pool's own settings: a login, then, on a Galera node (`wsrep_on`), `wsrep_ready` —
 * OFF outside the primary component or while joining. A server without Galera takes work once it accepts the login.
 */
export async function probeNode(settings: ConnectionOptions): Promise<{ fault: NodeFault; detail: string } | null> {
  let connection: mysql.Connection;
  try {
    connection = await mysql.createConnection({ ...settings, connectTimeout: PROBE_TIMEOUT_MS });
  } catch (err) {
    return { fault: 'unreachable', detail: (err as Error).message };
  }
  try {
    const valueOf = async (sql: string) =>
      (await connection.query<mysql.RowDataPacket[]>({ sql, timeout: PROBE_TIMEOUT_MS }))[0][0]?.Value as string | undefined;
    // MariaDB without Galera has the status too (OFF): only a node with wsrep on is judged by it.
    if ((await valueOf("SHOW VARIABLES LIKE 'wsrep_on'")) !== 'ON') return null;
    const ready = await valueOf("SHOW STATUS LIKE 'wsrep_ready'");
    return ready === 'ON' ? null : { fault: 'not ready', detail: `wsrep_ready is ${ready ?? 'missing'}` };
  } catch (err) {
    return { fault: isNodeNotReady(err) ? 'not ready' : 'unreachable', detail: (err as Error).message };
  } finally {
    connection.destroy();
  }
}
