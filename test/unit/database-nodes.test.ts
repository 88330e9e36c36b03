import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { DatabaseNodes, isNodeNotReady, type NodeProbe } from '../../src/db/database-nodes.js';

const URLS = 'mysql://root@127.0.0.1:3311,mysql://root@127.0.0.1:3312,mysql://root@127.0.0.1:3313';

/** A stand-in for a pooled mysql2 connection: its node, knex's disposal mark, and its events. */
function connectionTo(port: number) {
  return Object.assign(new EventEmitter(), { config: { host: '127.0.0.1', port }, __knex__disposed: undefined as string | undefined });
}

/** A probe that answers from a table of faulty ports, and counts its calls. */
function probeOf(faulty: Map<number, 'unreachable' | 'not ready'>) {
  const calls: number[] = [];
  const probe: NodeProbe = (url) => {
    const port = Number(new URL(url).port);
    calls.push(port);
    const fault = faulty.get(port);
    return Promise.resolve(fault ? { fault, detail: `port ${port} ${fault}` } : null);
  };
  return { probe, calls };
}

describe('DatabaseNodes', () => {
  it('starts on the first node that takes work, skipping one that answers but is not ready', async () => {
    const { probe, calls } = probeOf(new Map([[3311, 'not ready']]));
    const nodes = new DatabaseNodes(URLS, probe);
    const moves: unknown[] = [];
    const chosen = await nodes.choose((m) => moves.push(m));
    expect(chosen.url).toBe('mysql://root@127.0.0.1:3312');
    expect(calls).toEqual([3311, 3312]);
    expect(moves).toEqual([
      { from: 'mysql://root@127.0.0.1:3311', to: 'mysql://root@127.0.0.1:3312', fault: 'not ready', detail: 'port 3311 not ready' },
    ]);
    // Not suspect any more: the next connection does not probe.
    await nodes.choose();
    expect(calls).toHaveLength(2);
  });

  it("a node marked suspect is probed again; a move expires the settings and marks the old node's connections disposed", async () => {
    const faulty = new Map<number, 'unreachable' | 'not ready'>();
    const { probe, calls } = probeOf(faulty);
    const nodes = new DatabaseNodes(URLS, probe);
    const first = await nodes.choose();
    expect(first.url).toBe('mysql://root@127.0.0.1:3311');
    const [a, b] = [connectionTo(3311), connectionTo(3311)];
    nodes.track(a);
    nodes.track(b);
    b.emit('end'); // closed before the move: forgotten, left alone

    // Still fine when probed: no move, nothing disposed.
    nodes.markSuspect();
    expect(first.expired()).toBe(true);
    const same = await nodes.choose();
    expect(same.url).toBe(first.url);
    expect(same.expired()).toBe(false);
    expect(a.__knex__disposed).toBeUndefined();

    // The node leaves the primary component: the next choice moves on and drops its connections.
    faulty.set(3311, 'not ready');
    nodes.markSuspect();
    const moved = await nodes.choose();
    expect(moved.url).toBe('mysql://root@127.0.0.1:3312');
    expect(same.expired()).toBe(true);
    expect(moved.expired()).toBe(false);
    expect(a.__knex__disposed).toBe('its database node was left');
    expect(b.__knex__disposed).toBeUndefined();
    // A connection that was being made to the old node when the move happened is dropped as it arrives.
    const late = connectionTo(3311);
    nodes.track(late);
    expect(late.__knex__disposed).toBe('made to a database node since left');
    const fresh = connectionTo(3312);
    nodes.track(fresh);
    expect(fresh.__knex__disposed).toBeUndefined();
    expect(calls).toEqual([3311, 3311, 3311, 3312]);
  });

  it('with no node taking work it comes round to where it began: the connect error then names that node', async () => {
    const { probe } = probeOf(
      new Map([
        [3311, 'unreachable'],
        [3312, 'unreachable'],
        [3313, 'not ready'],
      ]),
    );
    const nodes = new DatabaseNodes(URLS, probe);
    expect((await nodes.choose()).url).toBe('mysql://root@127.0.0.1:3311');
    nodes.markSuspect();
    expect((await nodes.choose()).url).toBe('mysql://root@127.0.0.1:3311');
  });

  it('1047, and 1180 that names the primary component, count as a node not ready; nothing else does', () => {
    expect(isNodeNotReady({ errno: 1047, code: 'ER_UNKNOWN_COM_ERROR' })).toBe(true);
    expect(
      isNodeNotReady({
        errno: 1180,
        message: 'Error while appending streaming replication fragment(provider status: Not connected to Primary Component)',
      }),
    ).toBe(true);
    expect(isNodeNotReady({ errno: 1180, message: 'Got error 28 during COMMIT' })).toBe(false);
    expect(isNodeNotReady({ errno: 1213 })).toBe(false);
    expect(isNodeNotReady(null)).toBe(false);
  });
});
