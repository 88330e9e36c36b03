import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runIdForSeed } from '../../src/domain/ids.js';
import { spawnTxsim, waitFor } from '../helpers/txsim.js';
import { canControlServices, sh, sleep, stage, verifyScenario, type Stage } from './fault-kit.js';

// The cluster faults: a three-node RabbitMQ cluster on this host (scripts/cluster.sh, beside the default
// node, which these scenarios never touch), txsim pointed at all three nodes through AMQP_URL, and a node
// broken on purpose while gen publishes and three workers apply. Each scenario ends like every fault
// scenario: verify --run with nothing lost, nothing applied twice, the invariant holding, workers alive.

const NODES = [1, 2, 3] as const;
const cluster = (...args: string[]) => sh('bash', ['scripts/cluster.sh', ...args], 240_000);
const apiOf = (n: number) => `http://127.0.0.1:${15680 + n}`;
const AUTH = `Basic ${Buffer.from('guest:guest').toString('base64')}`;

let urls = '';
let current: Stage | null = null;

/** The process queue as a running node's management API sees it (null when none answers). */
async function processQueue(s: Stage): Promise<{ leader: string; online: string[] } | null> {
  for (const n of NODES) {
    try {
      const res = await fetch(`${apiOf(n)}/api/queues/%2F/${encodeURIComponent(s.ns.topology.processQueue)}`, {
        headers: { authorization: AUTH },
        signal: AbortSignal.timeout(3_000),
      });
      if (!res.ok) continue;
      const q = (await res.json()) as { leader?: string; online?: string[] };
      if (q.leader) return { leader: q.leader, online: q.online ?? [] };
    } catch {
      // That node is down: ask the next.
    }
  }
  return null;
}

/** Node number (1..3) of `txsim2@localhost`. */
const nodeNumber = (name: string) => Number(/^txsim(\d)@/.exec(name)?.[1] ?? NaN);

/** Waits until the process queue has all three members online again (a quorum survives the next loss). */
async function waitAllOnline(s: Stage): Promise<void> {
  await waitFor(async () => ((await processQueue(s))?.online.length ?? 0) === 3, 120_000, 'all three queue members online', 1_000);
}

const gen = (s: Stage, count: number, seed: string, ratePerS: number) =>
  spawnTxsim(['gen', String(count), '--seed', seed, '--rate', String(ratePerS), '--json', '--reconnect-timeout', '120'], s.ns.env, 400_000);

describe.skipIf(!canControlServices)('RabbitMQ cluster faults', () => {
  beforeAll(async () => {
    await cluster('up');
    urls = (await cluster('urls')).trim();
  }, 300_000);

  afterAll(async () => {
    await cluster('down', '--purge');
  }, 180_000);

  afterEach(async () => {
    // Whatever a scenario broke, the next one starts with three nodes.
    await cluster('up');
    await current?.teardown();
    current = null;
  }, 300_000);

  const clusterStage = (name: string) => stage(name, { env: { AMQP_URL: urls, RABBITMQ_API_URL: `http://guest:guest@127.0.0.1:15681` } });

  it('C1. kill -9 of the node that leads the process queue, mid-run', async () => {
    const s = (current = await clusterStage('cl1'));
    const run = gen(s, 6000, 'cluster-kill-leader', 600);
    await sleep(3_000);
    const before = await processQueue(s);
    expect(before?.online).toHaveLength(3);
    const leader = nodeNumber(before!.leader);
    await cluster('kill', String(leader));
    // A new leader is elected among the two that are left, and the run goes on.
    await waitFor(
      async () => {
        const q = await processQueue(s);
        return q !== null && nodeNumber(q.leader) !== leader;
      },
      60_000,
      'a new leader',
    );
    await sleep(3_000);
    await cluster('start', String(leader));
    await waitAllOnline(s);
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    await verifyScenario(s, `cluster: kill -9 of the process queue's leader (txsim${leader})`, runIdForSeed('cluster-kill-leader'));
  });

  it('C2. one node stopped for 20 s and restarted', async () => {
    const s = (current = await clusterStage('cl2'));
    const run = gen(s, 8000, 'cluster-stop-20s', 300);
    await sleep(2_000);
    await cluster('stop', '2');
    await sleep(20_000);
    await cluster('start', '2');
    await waitAllOnline(s);
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    await verifyScenario(s, 'cluster: one node stopped for 20 s, restarted', runIdForSeed('cluster-stop-20s'));
  });

  it('C3. a rolling restart of all three nodes under load', async () => {
    const s = (current = await clusterStage('cl3'));
    const run = gen(s, 12000, 'cluster-rolling', 300);
    await sleep(2_000);
    for (const n of NODES) {
      await cluster('stop', String(n));
      await sleep(3_000);
      await cluster('start', String(n));
      await waitAllOnline(s);
    }
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    await verifyScenario(s, 'cluster: rolling restart of all three nodes under load', runIdForSeed('cluster-rolling'));
  });
});
