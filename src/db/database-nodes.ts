import { connect } from 'node:net';
import { redactUrl } from '../config/redact.js';
import { splitUrlList } from '../config/url-list.js';

/** How long the reachability probe of one node may take before the next node is tried. */
const PROBE_TIMEOUT_MS = 1_000;

/**
 * The database nodes a process may use: `DATABASE_URL` may list several nodes of a Galera cluster,
 * comma-separated. A process writes through one node at a time (writing through several would only
 * add certification conflicts) and moves on to the next when that node fails: a connection that
 * cannot be made marks the node suspect, and the next new connection first checks that the current
 * node accepts TCP connections, moving round robin until one does. knex's pool re-creates every pooled
 * connection when the node changes (its connection-config provider with an expiration checker), so
 * no connection to the old node is used again.
 */
export class DatabaseNodes {
  private readonly urls: readonly string[];
  private index = 0;
  /** Bumped on every move; connection settings handed out at an older version are expired. */
  private version = 0;
  private suspect: boolean;

  constructor(databaseUrl: string) {
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

  /** A connection to the current node failed: the next new connection checks it first. */
  markSuspect(): void {
    this.suspect = true;
  }

  /**
   * The node for the next connection: the current one if it accepts TCP, else the next that does
   * (or, when none answers, the next in turn, so that the connect error names a node and the one after
   * is tried next time). Returns the node and a checker that says when its settings are out of date.
   */
  async choose(onMove?: (from: string, to: string) => void): Promise<{ url: string; expired: () => boolean }> {
    if (this.suspect && this.urls.length > 1) {
      this.suspect = false;
      const from = this.describe();
      let moved = false;
      for (let tried = 0; tried < this.urls.length; tried++) {
        if (await acceptsTcp(this.current)) break;
        this.index = (this.index + 1) % this.urls.length;
        moved = true;
      }
      if (moved) {
        this.version++;
        onMove?.(from, this.describe());
      }
    }
    const version = this.version;
    return { url: this.current, expired: () => this.suspect || this.version !== version };
  }
}

/** Whether something accepts a TCP connection at the URL's host and port within the probe timeout. */
function acceptsTcp(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname || '127.0.0.1', port: Number(url.port) || 3306 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
