import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topologyFor, topologyNames } from '../../src/amqp/topology.js';
import { handleReset } from '../../src/commands/reset.js';
import { databaseExists } from '../../src/db/reset.js';
import { createLogger } from '../../src/log.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { runTxsim } from '../helpers/txsim.js';

/**
 * `txsim reset` against the real broker and database: the namespace's queues (with their messages),
 * exchanges and database are gone afterwards, and a second namespace set up beside it is untouched.
 */

let ns: TestNamespace;
let other: TestNamespace;

/** Whether a queue or exchange exists, by a passive declare on a throwaway channel (404 closes it). */
async function exists(t: TestNamespace, kind: 'queue' | 'exchange', name: string): Promise<boolean> {
  const channel = await t.amqp.createChannel();
  channel.on('error', () => {});
  try {
    await (kind === 'queue' ? channel.checkQueue(name) : channel.checkExchange(name));
    await channel.close();
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return false;
    throw err;
  }
}

async function existing(t: TestNamespace, names: { queues: string[]; exchanges: string[] }) {
  const queues: string[] = [];
  const exchanges: string[] = [];
  for (const q of names.queues) if (await exists(t, 'queue', q)) queues.push(q);
  for (const e of names.exchanges) if (await exists(t, 'exchange', e)) exchanges.push(e);
  return { queues, exchanges };
}

/** Retry delays of an earlier setup with other options: their queues must go too. */
const OTHER_DELAYS = '777';

beforeAll(async () => {
  ns = await createTestNamespace('rst');
  other = await createTestNamespace('rsto');
  for (const t of [ns, other]) expect((await runTxsim(['setup'], t.env)).code).toBe(0);
  expect((await runTxsim(['setup', '--retry-delays', OTHER_DELAYS], ns.env)).code).toBe(0);
  // Messages in the process queue (no worker runs): reset says how many it deleted.
  await publishRaw(
    ns.amqp,
    ns.topology,
    [txBody(), txBody(), txBody()].map((body) => ({ body })),
  );
});

afterAll(async () => {
  await ns?.cleanup();
  await other?.cleanup();
});

describe('txsim reset', () => {
  it('without --yes and without a terminal it is a usage error (exit 2) and touches nothing', async () => {
    const r = await runTxsim(['reset'], ns.env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`add --yes to confirm`);
    expect(await databaseExists(ns.config.databaseUrl, ns.config.databaseName)).toBe(true);
    expect((await existing(ns, topologyNames(ns.topology))).queues).toHaveLength(topologyNames(ns.topology).queues.length);
  });

  it('on a terminal it shows what it will delete and asks; "no" removes nothing', async () => {
    const out: string[] = [];
    const questions: string[] = [];
    const ctx = { config: ns.config, log: createLogger('silent', { pretty: false }), out: (t: string) => void out.push(t) };
    const outcome = await handleReset(
      ctx,
      { yes: false, json: false },
      { interactive: true, confirm: (q) => (questions.push(q), Promise.resolve(false)) },
    );
    expect(outcome.removed).toBe(false);
    expect(questions).toHaveLength(1);
    expect(questions[0]).toContain(`namespace ${ns.name}: will remove`);
    expect(questions[0]).toContain(`queue     ${ns.topology.processQueue} (3 messages)`);
    expect(questions[0]).toMatch(/\? \[y\/N\] $/);
    expect(out).toEqual(['nothing removed']);
    expect(await exists(ns, 'queue', ns.topology.processQueue)).toBe(true);
    expect(await databaseExists(ns.config.databaseUrl, ns.config.databaseName)).toBe(true);
  });

  it('refuses a DATABASE_URL that names a database other than the namespace, before deleting anything', async () => {
    const r = await runTxsim(['reset', '--yes'], { ...ns.env, DATABASE_URL: `${ns.config.databaseUrl}/${other.config.databaseName}` });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`names the database "${other.config.databaseName}", not the namespace's own`);
    expect(await databaseExists(ns.config.databaseUrl, other.config.databaseName)).toBe(true);
    expect(await exists(ns, 'queue', ns.topology.processQueue)).toBe(true);
  });

  it('--yes --json deletes the queues, exchanges and database of the namespace and says what it removed', async () => {
    const otherRetryQueue = topologyFor(ns.name, [Number(OTHER_DELAYS)]).retryQueues[0]!.name;
    expect(await exists(ns, 'queue', otherRetryQueue)).toBe(true);
    const names = topologyNames(ns.topology);

    const r = await runTxsim(['reset', '--yes', '--json'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      namespace: string;
      removed: boolean;
      queues: { name: string; messages: number }[];
      exchanges: string[];
      database: string | null;
      apiError: string | null;
    };
    expect(report).toMatchObject({ namespace: ns.name, removed: true, database: ns.config.databaseName, apiError: null });
    expect(report.queues.map((q) => q.name).sort()).toEqual([...names.queues, otherRetryQueue].sort());
    expect(report.exchanges.sort()).toEqual([...names.exchanges].sort());
    expect(report.queues.find((q) => q.name === ns.topology.processQueue)?.messages).toBe(3);

    // Gone, as the broker and the database server see it.
    expect(await existing(ns, { queues: [...names.queues, otherRetryQueue], exchanges: names.exchanges })).toEqual({
      queues: [],
      exchanges: [],
    });
    expect(await databaseExists(ns.config.databaseUrl, ns.config.databaseName)).toBe(false);

    // The namespace beside it is untouched.
    const otherNames = topologyNames(other.topology);
    expect(await existing(other, otherNames)).toEqual(otherNames);
    expect(await databaseExists(other.config.databaseUrl, other.config.databaseName)).toBe(true);
    expect(Number((await other.db('accounts').count({ n: '*' }))[0]!.n)).toBeGreaterThan(0);
  });

  it('a second reset finds nothing to remove, as text', async () => {
    const r = await runTxsim(['reset', '--yes'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`namespace ${ns.name}: nothing to remove`);
  });
});
