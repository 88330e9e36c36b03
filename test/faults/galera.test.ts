import mysql from 'mysql2/promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../../src/db/knex.js';
import { isDeadlock, withPipelinedTransaction } from '../../src/db/with-transaction.js';
import { runIdForSeed } from '../../src/domain/ids.js';
import { spawnTxsim, waitFor } from '../helpers/txsim.js';
import { canControlServices, sh, sleep, stage, verifyScenario, type Stage } from './fault-kit.js';

// The Galera faults: a three-node MariaDB Galera cluster on this host (scripts/galera.sh, beside the default
// server on 3306, which these scenarios never touch), txsim pointed at all three nodes through DATABASE_URL
// (workers write through the first that answers), and a node broken on purpose mid-run. Each scenario ends
// like every fault scenario (verify --run clean, workers alive) and checks that the three nodes hold the
// same books.

const NODES = [1, 2, 3] as const;
const galera = (...args: string[]) => sh('bash', ['scripts/galera.sh', ...args], 300_000);

let urls = '';
let current: Stage | null = null;

/** Accounts, their balance total and the outcome count on node n (its own view, through its port). */
async function booksOn(n: number, database: string): Promise<string> {
  const conn = await mysql.createConnection({
    host: '127.0.0.1',
    port: 3310 + n,
    user: 'root',
    database,
    supportBigNumbers: true,
    bigNumberStrings: true,
  });
  try {
    // A causal read: the node first applies every write-set the cluster committed before it (a node
    // may still be applying the last ones when verify, on node 1, has passed).
    await conn.query('SET SESSION wsrep_sync_wait = 1');
    const [rows] = await conn.query(
      'SELECT (SELECT COUNT(*) FROM accounts) AS accounts, (SELECT SUM(balance_minor) FROM accounts) AS balances, (SELECT COUNT(*) FROM transactions) AS outcomes, (SELECT COUNT(*) FROM ledger_entries) AS entries',
    );
    return JSON.stringify((rows as unknown[])[0]);
  } finally {
    await conn.end();
  }
}

async function expectSameBooksOnEveryNode(s: Stage): Promise<void> {
  const views = await Promise.all(NODES.map((n) => booksOn(n, s.ns.config.databaseName)));
  expect(new Set(views).size, `books per node: ${views.join(' | ')}`).toBe(1);
}

const gen = (s: Stage, count: number, seed: string, ratePerS: number) =>
  spawnTxsim(['gen', String(count), '--seed', seed, '--rate', String(ratePerS), '--json', '--reconnect-timeout', '120'], s.ns.env, 400_000);

describe.skipIf(!canControlServices)('Galera faults', () => {
  beforeAll(async () => {
    await galera('up');
    urls = (await galera('urls')).trim();
  }, 400_000);

  afterAll(async () => {
    await galera('down', '--purge');
  }, 300_000);

  afterEach(async () => {
    await current?.teardown();
    current = null;
    await galera('up');
  }, 400_000);

  const galeraStage = (name: string) => stage(name, { env: { DATABASE_URL: urls } });

  it('G1. kill -9 of the node the workers write to, mid-run; it rejoins', async () => {
    const s = (current = await galeraStage('gl1'));
    const run = gen(s, 5000, 'galera-kill-writer', 500);
    await waitFor(async () => Number((await s.ns.db('transactions').count({ n: '*' }))[0]!.n) > 500, 30_000, 'the first outcomes');
    // Every process starts on the first node that answers: node 1.
    await galera('kill', '1');
    await sleep(5_000);
    await galera('start', '1');
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    await verifyScenario(s, 'Galera: kill -9 of the node the workers write to (node 1), restarted', runIdForSeed('galera-kill-writer'));
    for (const w of s.workers) expect(w.output()).toMatch(/database node unreachable; moved to the next/);
    await expectSameBooksOnEveryNode(s);
  });

  it('G3. the node the workers write to loses the cluster (non-Primary, still accepting connections) for the rest of the run', async () => {
    const s = (current = await galeraStage('gl3'));
    const run = gen(s, 5000, 'galera-isolate-writer', 500);
    await waitFor(async () => Number((await s.ns.db('transactions').count({ n: '*' }))[0]!.n) > 500, 30_000, 'the first outcomes');
    // Node 1, where every process started, stays up and answers TCP but refuses work (1047): the workers,
    // gen and verify must leave it for node 2 or 3. It stays cut off until verify has passed, so nothing
    // here waits for it to come back.
    await galera('isolate', '1');
    try {
      const r = await run.done;
      expect(r.code, r.stderr).toBe(0);
      await verifyScenario(
        s,
        'Galera: the node the workers write to (node 1) non-Primary for the rest of the run',
        runIdForSeed('galera-isolate-writer'),
      );
      for (const w of s.workers) expect(w.output()).toMatch(/database node (unreachable|not ready)[^"]*; moved to the next/);
    } finally {
      await galera('rejoin', '1');
    }
    await expectSameBooksOnEveryNode(s);
  });

  it('G4. brute-force aborts (the same rows written through two nodes) leave no write of an aborted transaction behind', async () => {
    // What the worker's batches do, in small: lock, then write an outcome row, two entry rows and a counter,
    // then commit — four clients through nodes 1 and 2 on the same rows, so Galera aborts one side again and
    // again. Sent as one multi-statement query, an aborted transaction's remaining writes committed on their own.
    const setup = await mysql.createConnection({ host: '127.0.0.1', port: 3311, user: 'root', multipleStatements: true });
    await setup.query(
      'DROP DATABASE IF EXISTS g4; CREATE DATABASE g4; CREATE TABLE g4.t (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO g4.t VALUES (1, 0), (2, 0); CREATE TABLE g4.o (k INT PRIMARY KEY); CREATE TABLE g4.e (id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL)',
    );
    await setup.end();
    const dbs = [1, 2].map((n) =>
      createDatabase({ databaseUrl: `mysql://root@127.0.0.1:${3310 + n}`, databaseName: 'g4', poolMax: 2, multipleStatements: true }),
    );
    let next = 0;
    let aborted = 0;
    const client = async (db: (typeof dbs)[number]) => {
      for (const until = Date.now() + 15_000; Date.now() < until;) {
        const k = ++next;
        await withPipelinedTransaction(
          db,
          async (trx) => {
            await trx.begin(['SELECT v FROM t WHERE id IN (1, 2) FOR UPDATE']);
            await trx.commit([
              `INSERT INTO o VALUES (${k})`,
              `INSERT INTO e (k) VALUES (${k}), (${k})`,
              'UPDATE t SET v = v + 1 WHERE id IN (1, 2)',
            ]);
          },
          { deadlockRetriesMax: 0 },
        ).catch((err: unknown) => {
          if (!isDeadlock(err)) throw err;
          aborted++;
        });
      }
    };
    try {
      await Promise.all([client(dbs[0]!), client(dbs[1]!), client(dbs[0]!), client(dbs[1]!)]);
    } finally {
      await Promise.all(dbs.map((db) => db.destroy()));
    }
    const check = await mysql.createConnection({ host: '127.0.0.1', port: 3313, user: 'root', database: 'g4' });
    try {
      await check.query('SET SESSION wsrep_sync_wait = 1');
      const [rows] = await check.query(
        'SELECT (SELECT COUNT(*) FROM o) AS outcomes, (SELECT COUNT(*) FROM e WHERE k NOT IN (SELECT k FROM o)) AS orphans, (SELECT COUNT(*) FROM e) AS entries, (SELECT v FROM t WHERE id = 1) AS counter',
      );
      const r = (rows as { outcomes: number; orphans: number; entries: number; counter: number }[])[0]!;
      expect(aborted, 'the clients must have conflicted').toBeGreaterThan(100);
      expect(r.outcomes).toBeGreaterThan(100);
      expect({ orphans: Number(r.orphans), entries: Number(r.entries), counter: Number(r.counter) }).toEqual({
        orphans: 0,
        entries: 2 * Number(r.outcomes),
        counter: Number(r.outcomes),
      });
      await check.query('DROP DATABASE g4');
    } finally {
      await check.end();
    }
  });

  it('G2. a node stopped under load and rejoined (state transfer)', async () => {
    const s = (current = await galeraStage('gl2'));
    const run = gen(s, 5000, 'galera-rejoin', 500);
    await sleep(2_000);
    await galera('stop', '3');
    await sleep(5_000);
    // It rejoins with what it missed (an incremental state transfer from the gcache, or a full one).
    await galera('start', '3');
    const r = await run.done;
    expect(r.code, r.stderr).toBe(0);
    await verifyScenario(s, 'Galera: a node stopped 5 s under load, rejoined by state transfer', runIdForSeed('galera-rejoin'));
    await expectSameBooksOnEveryNode(s);
  });
});
