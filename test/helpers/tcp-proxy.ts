import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a real service (RabbitMQ, MariaDB) that a test can cut and restore: `cut()`
 * drops every connection through it and refuses new ones (nothing listens), `listen()` listens again on
 * the same port. An outage for the one client that goes through it, while other users of the shared
 * service notice nothing.
 */
export class TcpProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  /** The proxy's port (0 until the first `listen()`, then kept across cuts). */
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async listen(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * Listening proxies in front of the service of `serviceUrl` (its host and port, else `defaultPort`): each
 * stands in for one node of a cluster in the node-list tests.
 */
export async function proxiesInFront(serviceUrl: string, count: number, defaultPort: number): Promise<TcpProxy[]> {
  const target = new URL(serviceUrl);
  const proxies: TcpProxy[] = [];
  for (let i = 0; i < count; i++) {
    const proxy = new TcpProxy(target.hostname, Number(target.port || defaultPort));
    await proxy.listen();
    proxies.push(proxy);
  }
  return proxies;
}

/** A node list (AMQP_URL, DATABASE_URL) of `url` on each of `ports` of 127.0.0.1: credentials and path kept. */
export function urlListOnPorts(url: string, ports: readonly number[]): string {
  return ports
    .map((port) => {
      const node = new URL(url);
      node.hostname = '127.0.0.1';
      node.port = String(port);
      return node.toString();
    })
    .join(',');
}
