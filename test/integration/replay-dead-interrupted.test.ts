import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplayReport } from '../../src/dead-letters/replay-dead.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { txBody } from '../helpers/publish.js';
import { queueDepth, runTxsim, spawnTxsim, waitFor } from '../helpers/txsim.js';
import { closeConnectionFromBroker, drain, localPortsTo, parkMessages, settledDepth } from './queue-walk-helpers.js';

/**
 * `txsim replay-dead` whose connection the broker closes mid-walk (as an operator does from the
 * management console, or a node going down): it prints what it replayed and recorded before (also in
 * --json), exits 3 with one line saying how far it got, and loses nothing — a message is replayed and
 * gone from the dead queue, or still parked, once.
 *
 * The close has to fall while a page is in hand. The replay of a page goes republish → confirm →
 * record → ack; the test holds the record of the second page (an InnoDB gap lock where its ids sort,
 * above every id of the first page), closes the connection then, and lets the record through.
 */

let ns: TestNamespace;

/** A UUID (v4 layout) whose first hex digit is `lead`, so that where it sorts is known. */
function idStartingWith(lead: string, i: number): string {
  return `${lead}${i.toString(16).padStart(7, '0')}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** An id no message has, between the two pages: the gap lock above it holds only the second page's records. */
const FENCE_ID = idStartingWith('8', 0);
const FIRST_PAGE = Array.from({ length: 32 }, (_, i) => txBody({ id: idStartingWith('1', i), accountId: 1, amountMinor: 100 + i }));
const SECOND_PAGE = Array.from({ length: 8 }, (_, i) => txBody({ id: idStartingWith('f', i), accountId: 1, amountMinor: 200 + i }));
const ids = (bodies: readonly Record<string, unknown>[]) => bodies.map((b) => b.id as string);

beforeAll(async () => {
  ns = await createTestNamespace('rdcut');
  expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
  await ns.seed(2);
});

afterAll(async () => {
  await ns?.cleanup();
});

describe('replay-dead when the broker closes its connection mid-walk', () => {
  it('prints in --json what it replayed and recorded before, exits 3 in one line, and loses or doubles nothing', async () => {
    const dead = ns.topology.deadQueue;
    await parkMessages(ns.amqp, dead, [...FIRST_PAGE, ...SECOND_PAGE]);
    // A record of a transaction that does not exist, between the pages' ids (the gap lock's lower bound).
    await ns.db('transaction_failures').insert({
      transaction_id: FENCE_ID,
      state: 'parked',
      account_id: 1,
      attempt: 1,
      error_code: 'fence',
      error_message: 'the test gap lock',
      worker_id: 'replay-dead-interrupted test',
      failed_at: new Date(),
    });
    const holder = await ns.db.transaction();
    let released = false;
    try {
      // Locks the gap above the fence (REPEATABLE READ): inserts of the second page's records wait, the first page's do not.
      await holder.raw(
        'SELECT seq FROM transaction_failures FORCE INDEX (ix_transaction_failures_transaction) WHERE transaction_id = ? FOR UPDATE',
        [idStartingWith('f', 0xfffffff)],
      );
      const { child, done } = spawnTxsim(['replay-dead', '--json'], ns.env);
      // The first page is replayed and recorded; the second page's record waits for the lock.
      await waitFor(
        async () => {
          const [rows] = (await ns.db.raw(
            "SELECT COUNT(*) AS n FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE ?",
            [`%${SECOND_PAGE[0]!.id as string}%`],
          )) as [{ n: number | string }[]];
          return Number(rows[0]?.n) === 1;
        },
        30_000,
        "the second page's record to wait for the lock",
      );
      const [recordedFirst] = await ns.db('transaction_failures').where('state', 'replayed').count<{ n: number | string }[]>({ n: '*' });
      expect(Number(recordedFirst!.n)).toBe(32);
      const ports = localPortsTo(child.pid!, 5672);
      await closeConnectionFromBroker(ns.config.rabbitmqApiUrl, (c) => c.peer_port !== undefined && ports.includes(c.peer_port));
      // The client has the close before its record goes through.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await holder.rollback();
      released = true;

      const r = await done;
      expect(r.code, r.stderr).toBe(3);
      const report = JSON.parse(r.stdout) as ReplayReport;
      expect(report.replayed.map((m) => m.id)).toEqual(ids(FIRST_PAGE));
      expect(report.failed.map((f) => f.id)).toEqual(ids(SECOND_PAGE));
      for (const f of report.failed)
        expect(f.error).toMatch(/^republished and recorded as replayed, but the read of \S+ stopped before it was removed; still parked/);
      expect(report.interrupted).toBe(
        `reading ${dead} stopped after 32 of 40 messages (Channel closed); the 8 in hand went back to ${dead}`,
      );
      expect(report.notFound).toEqual([]);
      // One error line on stderr (beside the logger's warning that the feed event could not go out): how far
      // it got, and what the report above holds.
      expect(r.stderr.split('\n').filter((line) => line.startsWith('txsim: '))).toEqual([
        `txsim: reading ${dead} stopped after 32 of 40 messages (Channel closed); the 8 in hand went back to ${dead}; replayed and recorded before: 32 (listed above), the rest is still parked`,
      ]);
    } finally {
      if (!released) await holder.rollback().catch(() => {});
    }

    // Broker and database: the first page replayed (gone from the dead queue, a copy each on its way), the
    // second still parked once each, with its copies on their way too and its replay recorded.
    expect(await settledDepth(ns.amqp, dead)).toBe(8);
    const parked = (await drain(ns.amqp, dead)).map((m) => m.id);
    expect([...parked].sort()).toEqual(ids(SECOND_PAGE));
    expect(await queueDepth(ns.amqp, ns.topology.processQueue)).toBe(40);
    const records = await ns.db('transaction_failures').where('state', 'replayed').select<{ transaction_id: string }[]>('transaction_id');
    expect(records.map((row) => row.transaction_id).sort()).toEqual([...ids(FIRST_PAGE), ...ids(SECOND_PAGE)].sort());
  });
});
