import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { ChannelModel } from 'amqplib';
import { HEADERS } from '../../src/amqp/topology.js';
import { txBody } from '../helpers/publish.js';
import { queueDepth, waitFor } from '../helpers/txsim.js';

/**
 * What the queue-walk and replay-dead-* tests share: messages parked by hand, the queue drained with
 * their ids in the broker's order, and a connection closed from the broker's side (the management API),
 * as an operator or a broker restart closes it.
 */

/** Calls the RabbitMQ management API at `apiUrl` (credentials from the URL, sent as basic auth). */
export async function managementApi(apiUrl: string, path: string, method: 'GET' | 'DELETE' = 'GET'): Promise<unknown> {
  const base = new URL(apiUrl);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  const response = await fetch(`${base.origin}${path}`, {
    method,
    headers: { authorization, accept: 'application/json', 'x-reason': 'txsim queue-walk test' },
  });
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
}

interface ConnectionInfo {
  readonly name: string;
  readonly peer_port?: number;
  readonly client_properties?: { readonly connection_name?: string };
}

/**
 * Closes, from the broker's side, the one AMQP connection that `match` picks, and waits until the
 * broker no longer lists it. Throws when none (or more than one) matches within 10 s.
 */
export async function closeConnectionFromBroker(apiUrl: string, match: (c: ConnectionInfo) => boolean): Promise<void> {
  let target: ConnectionInfo | undefined;
  await waitFor(
    async () => {
      const found = ((await managementApi(apiUrl, '/api/connections')) as ConnectionInfo[]).filter(match);
      if (found.length > 1) throw new Error(`${found.length} connections match: ${found.map((c) => c.name).join(', ')}`);
      target = found[0];
      return target !== undefined;
    },
    10_000,
    'the connection in the management API',
  );
  const path = `/api/connections/${encodeURIComponent(target!.name)}`;
  await managementApi(apiUrl, path, 'DELETE');
  await waitFor(
    async () => !((await managementApi(apiUrl, '/api/connections')) as ConnectionInfo[]).some((c) => c.name === target!.name),
    10_000,
    'the connection to close',
  );
}

/**
 * The local ports of a process's TCP connections to `remotePort` (Linux: its socket inodes in /proc/<pid>/fd,
 * looked up in /proc/<pid>/net/tcp[6]). The management API lists a client connection with that port as
 * `peer_port`: this finds a child's connection whatever it is named.
 */
export function localPortsTo(pid: number, remotePort: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode) inodes.add(inode);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [local, remote, inode] = [fields[1], fields[2], fields[9]];
      if (!local || !remote || !inode || !inodes.has(inode)) continue;
      if (parseInt(remote.split(':')[1] ?? '', 16) === remotePort) ports.push(parseInt(local.split(':')[1] ?? '', 16));
    }
  }
  return ports;
}

/**
 * Puts `bodies` in `queue` in this order, as a worker parks them (last error, attempts, when, original
 * routing key), and waits for their confirms. Their ids, in order.
 */
export async function parkMessages(connection: ChannelModel, queue: string, bodies: readonly Record<string, unknown>[]): Promise<string[]> {
  const channel = await connection.createConfirmChannel();
  try {
    for (const body of bodies) {
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)), {
        persistent: true,
        contentType: 'application/json',
        messageId: body.id as string,
        headers: {
          [HEADERS.attempts]: 5,
          [HEADERS.lastError]: 'ER_LOCK_DEADLOCK: Deadlock found',
          [HEADERS.failedAt]: new Date().toISOString(),
          [HEADERS.originalRoutingKey]: 'tx.deposit',
        },
      });
    }
    await channel.waitForConfirms();
  } finally {
    await channel.close();
  }
  return bodies.map((b) => b.id as string);
}

/** `count` parked-looking messages (deposits on account 1) put in `queue`; their ids in order. */
export function parkDeposits(connection: ChannelModel, queue: string, count: number): Promise<string[]> {
  return parkMessages(
    connection,
    queue,
    Array.from({ length: count }, (_, i) => txBody({ accountId: 1, amountMinor: 100 + i })),
  );
}

/** One message as the broker hands it out to a consumer: its id, and what the broker counted of it. */
export interface Drained {
  readonly id: string;
  readonly redelivered: boolean;
  readonly deliveryCount: unknown;
}

/** Empties `queue` (get with auto-ack: this does remove them), in the order the broker hands them out. */
export async function drain(connection: ChannelModel, queue: string): Promise<Drained[]> {
  const channel = await connection.createChannel();
  const out: Drained[] = [];
  try {
    for (let msg = await channel.get(queue, { noAck: true }); msg !== false; msg = await channel.get(queue, { noAck: true }))
      out.push({
        id: (JSON.parse(msg.content.toString()) as { id: string }).id,
        redelivered: msg.fields.redelivered,
        deliveryCount: msg.properties.headers?.['x-delivery-count'] as unknown,
      });
  } finally {
    await channel.close();
  }
  return out;
}

/**
 * The depth of `queue` once it stops changing (600 ms alike): returns to a quorum queue go through Raft,
 * so a count read once right after a command may lag.
 */
export async function settledDepth(connection: ChannelModel, queue: string): Promise<number> {
  let last = -1;
  let stableSince = Date.now();
  await waitFor(
    async () => {
      const now = await queueDepth(connection, queue);
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
      return Date.now() - stableSince >= 600;
    },
    10_000,
    `${queue} depth to settle`,
    100,
  );
  return last;
}
