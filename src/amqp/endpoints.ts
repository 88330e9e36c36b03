import type { Options } from 'amqplib';
import { redactUrl } from '../config/redact.js';
import { splitUrlList } from '../config/url-list.js';

/**
 * The broker nodes a client may use (`AMQP_URL` may list several, see splitUrlList): every client
 * connects to one node at a time and moves on to the next when a connect fails or the connection is
 * lost, the way RabbitMQ's own clients take a list of addresses.
 *
 * A cursor over the nodes of a list. amqplib's recovering connection re-opens the same target on
 * every attempt, so the target handed to it is a view whose fields are read from the current node at
 * each connect; `advance()` after a failed attempt or a lost connection points the next one at the
 * next node (round robin, so a node that comes back is used again in time).
 */
export class AmqpEndpoints {
  private readonly urls: readonly URL[];
  private index = 0;

  constructor(text: string) {
    const urls = splitUrlList(text).map((url) => new URL(url));
    if (urls.length === 0) throw new Error('AMQP_URL: no broker URL given');
    this.urls = urls;
  }

  get count(): number {
    return this.urls.length;
  }

  /** The node the next connect goes to (its full URL, password included: never log it, use `describe()`). */
  get current(): string {
    return this.urls[this.index]!.toString();
  }

  /** The current node without its password. */
  describe(): string {
    return redactUrl(this.current);
  }

  /** Moves to the next node of the list; a one-node list stays where it is. */
  advance(): void {
    this.index = (this.index + 1) % this.urls.length;
  }

  /**
   * What amqplib's `connect` gets: a plain URL string for one node (unchanged behaviour), else an
   * options object whose getters read the current node at each (re)connect.
   */
  target(): string | Options.Connect {
    if (this.urls.length === 1) return this.current;
    const current = () => this.urls[this.index]!;
    const query = (key: string) => {
      const value = current().searchParams.get(key);
      return value === null ? undefined : Number(value);
    };
    return {
      get protocol() {
        return current().protocol.replace(/:$/, '');
      },
      get hostname() {
        return current().hostname.replace(/^\[|\]$/g, '');
      },
      get port() {
        const url = current();
        return Number(url.port) || (url.protocol === 'amqps:' ? 5671 : 5672);
      },
      // As amqplib reads a URL string: guest/guest when the URL names no user, else exactly what it names.
      get username() {
        const url = current();
        return url.username === '' && url.password === '' ? undefined : decodeURIComponent(url.username);
      },
      get password() {
        const url = current();
        return url.username === '' && url.password === '' ? undefined : decodeURIComponent(url.password);
      },
      // Still escaped: amqplib unescapes the vhost itself.
      get vhost() {
        return current().pathname.slice(1) || undefined;
      },
      get heartbeat() {
        return query('heartbeat');
      },
      get frameMax() {
        return query('frameMax');
      },
      get channelMax() {
        return query('channelMax');
      },
    } satisfies Options.Connect;
  }
}
