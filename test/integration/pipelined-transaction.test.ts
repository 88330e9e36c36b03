import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type Knex } from '../../src/db/knex.js';
import { sqlTuple } from '../../src/db/sql-literal.js';
import { withPipelinedTransaction } from '../../src/db/with-transaction.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';

/** The worker's two-round-trip transactions against the real server: commit, rollback, refusal. */
describe('withPipelinedTransaction', () => {
  let ns: TestNamespace;
  let db: Knex;

  beforeAll(async () => {
    ns = await createTestNamespace('pipe');
    db = createDatabase({
      databaseUrl: ns.config.databaseUrl,
      databaseName: ns.config.databaseName,
      poolMax: 2,
      readCommitted: true,
      multipleStatements: true,
    });
    await ns.db.raw('CREATE TABLE pipe_test (id INT PRIMARY KEY, v INT NOT NULL)');
  });

  afterAll(async () => {
    await db.destroy();
    await ns.cleanup();
  });

  const rows = async () => (await ns.db('pipe_test').orderBy('id').select('id', 'v')).map((r: { id: number; v: number }) => [r.id, r.v]);

  it('reads under the transaction, then writes and commits; one result per statement', async () => {
    await ns.db('pipe_test').insert({ id: 1, v: 10 });
    const results = await withPipelinedTransaction(db, async (trx) => {
      const [locked, none] = await trx.begin([
        'SELECT id, v FROM pipe_test WHERE id = 1 FOR UPDATE',
        'SELECT id FROM pipe_test WHERE id = 99',
      ]);
      expect(locked).toEqual([{ id: 1, v: 10 }]);
      expect(none).toEqual([]);
      return trx.commit(['UPDATE pipe_test SET v = v + 1 WHERE id = 1', 'INSERT INTO pipe_test (id, v) VALUES (2, 20), (3, 30)']);
    });
    expect(results.map((r) => (r as { affectedRows: number }).affectedRows)).toEqual([1, 2]);
    expect(await rows()).toEqual([
      [1, 11],
      [2, 20],
      [3, 30],
    ]);
  });

  it('a statement failing in the commit round trip stops before COMMIT: the earlier writes are rolled back', async () => {
    const before = await rows();
    await expect(
      withPipelinedTransaction(db, async (trx) => {
        await trx.begin([]);
        // The UPDATE succeeds, the INSERT hits the primary key: nothing of it may stay.
        return trx.commit(['UPDATE pipe_test SET v = 0', 'INSERT INTO pipe_test (id, v) VALUES (1, 1)']);
      }),
    ).rejects.toMatchObject({ errno: 1062 });
    expect(await rows()).toEqual(before);
    // The connection went back to the pool clean: the next transaction on it works.
    await withPipelinedTransaction(db, async (trx) => {
      await trx.begin([]);
      await trx.commit(['INSERT INTO pipe_test (id, v) VALUES (4, 40)']);
    });
    expect(await rows()).toEqual([...before, [4, 40]]);
  });

  it('work that throws between the round trips rolls back and releases its row locks', async () => {
    await expect(
      withPipelinedTransaction(db, async (trx) => {
        await trx.begin(['SELECT id FROM pipe_test WHERE id = 1 FOR UPDATE', 'UPDATE pipe_test SET v = -1 WHERE id = 1']);
        throw new Error('decided not to');
      }),
    ).rejects.toThrow('decided not to');
    expect((await rows())[0]).toEqual([1, 11]);
    // Had the lock been kept, this would wait for innodb_lock_wait_timeout.
    await ns.db.transaction(async (trx) => {
      await trx.raw('SET SESSION innodb_lock_wait_timeout = 1');
      await trx.raw('SELECT id FROM pipe_test WHERE id = 1 FOR UPDATE');
    });
  });

  it('escaped literals mean the same on a server set to NO_BACKSLASH_ESCAPES (txsim sessions turn it off)', async () => {
    const [[{ mode }]] = (await ns.db.raw('SELECT @@GLOBAL.sql_mode AS mode')) as [[{ mode: string }]];
    const hostile = "O'Brien \\'; DELETE FROM pipe_test; -- \\";
    await ns.db.raw(`SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, IF(@@GLOBAL.sql_mode = '', '', ','), 'NO_BACKSLASH_ESCAPES')`);
    // New connections take the global mode: this pool's sessions start with NO_BACKSLASH_ESCAPES set.
    const fresh = createDatabase({
      databaseUrl: ns.config.databaseUrl,
      databaseName: ns.config.databaseName,
      poolMax: 1,
      multipleStatements: true,
    });
    try {
      await ns.db.raw('CREATE TABLE pipe_text (id INT PRIMARY KEY, s VARCHAR(100) NOT NULL)');
      await withPipelinedTransaction(fresh, async (trx) => {
        await trx.begin([]);
        await trx.commit([`INSERT INTO pipe_text (id, s) VALUES ${sqlTuple([1, hostile])}`]);
      });
    } finally {
      await fresh.destroy();
      await ns.db.raw('SET GLOBAL sql_mode = ?', [mode]);
    }
    expect((await ns.db('pipe_text').select('s'))[0].s).toBe(hostile);
    expect((await rows()).length).toBeGreaterThan(0);
  });

  it('refuses a database created without multipleStatements, with a reason', async () => {
    await expect(withPipelinedTransaction(ns.db, () => Promise.resolve(1))).rejects.toThrow(/multipleStatements/);
  });
});
