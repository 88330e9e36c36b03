// What the database spends per transaction on the shape of the ledger, apart from the broker and the
// workers' logic: the rows a worker's batch writes for the v1 types, sent as the worker sends them (one
// transaction of two pipelined round trips: the locking and idempotency reads, then the inserts, the
// account update and COMMIT), by three connections at once, in batches of 100, five ways alternated:
//   entries    an outcome row, two ledger_entries rows and an outbox event (txsim's schema today)
//   transfer   an outcome row, one row that is its own double entry (debit account, credit account,
//              amount, keyed by the transaction id, indexed by each account) and an outbox event
//   none       an outcome row and an outbox event: no ledger rows at all (the floor of any ledger shape)
//   prepared   the rows of `entries`, each insert a server-side prepared statement (no SQL text to parse)
//   no-outbox  the rows of `entries` but the outbox event: the floor of an outbox kept in the outcome row
// It prints the database's (mariadbd's) CPU µs per transaction of each, from /proc, so it must run on
// the database's host, and this process's own (building and sending the SQL). Run it on an otherwise
// idle machine:
//   npm run build && node scripts/ledger-shape-cost.mjs [rounds=3] [transactions=60000]
// Needs DATABASE_URL (default mysql://root@127.0.0.1:3306); creates and drops its own database
// (`txsim_ledger_shape`).
import { randomBytes } from 'node:crypto';
import mysql2 from 'mysql2/promise';
import { pidsNamed, CpuSampler } from '../dist/bench/cpu-sampler.js';
import { parseIntFlag } from '../dist/config/parse.js';
import { redactUrl } from '../dist/config/redact.js';
import { connectionFromUrl, createDatabase } from '../dist/db/knex.js';
import { seedAccounts } from '../dist/db/accounts.js';
import { dropDatabase, ensureSchema } from '../dist/db/schema.js';
import { systemAccountId } from '../dist/domain/ledger.js';
import { sqlList, sqlTuple } from '../dist/db/sql-literal.js';
import { medianOf as median } from '../dist/stats/median.js';

let rounds, count;
try {
  rounds = parseIntFlag('rounds', process.argv[2], 3, 1, 20);
  count = parseIntFlag('transactions', process.argv[3], 60_000, 3_000, 1_000_000);
} catch (err) {
  console.error(`ledger-shape-cost: ${err.message}`);
  console.error('usage: node scripts/ledger-shape-cost.mjs [rounds=3] [transactions=60000]');
  process.exit(2);
}
const url = process.env.DATABASE_URL ?? 'mysql://root@127.0.0.1:3306';
const DATABASE = 'txsim_ledger_shape';
const SHAPES = ['entries', 'prepared', 'transfer', 'none', 'no-outbox'];
const ACCOUNTS = 10_000;
const BATCH = 100;
const CONNECTIONS = 3;
const TRANSFERS_TABLE = `CREATE TABLE ledger_transfers (
  transaction_id    CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  debit_account_id  BIGINT      NOT NULL,
  credit_account_id BIGINT      NOT NULL,
  amount_minor      BIGINT      NOT NULL,
  created_at        DATETIME(3) NOT NULL,
  KEY ix_transfers_debit (debit_account_id),
  KEY ix_transfers_credit (credit_account_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4`;

const databasePids = pidsNamed(['mariadbd', 'mysqld']);
if (databasePids.length === 0) {
  console.error('ledger-shape-cost: no mariadbd or mysqld process on this host (the database must run here to read its CPU)');
  process.exit(1);
}

/** A fresh database with txsim's schema, the transfers table and the bench's 10,000 accounts. */
async function freshDatabase() {
  await dropDatabase(url, DATABASE);
  await ensureSchema(url, DATABASE);
  const db = createDatabase({ databaseUrl: url, databaseName: DATABASE, poolMax: 2 });
  try {
    await db.raw(TRANSFERS_TABLE);
    await seedAccounts(db, { count: ACCOUNTS, firstId: 1, openingBalanceMinor: 10_000_000n, currency: 'EUR', chunkSize: 1_000 });
  } finally {
    await db.destroy();
  }
}

/** The v1 mix as gen draws it, near enough: a third each of deposits, withdrawals and card payments. */
const TYPES = [
  { type: 'deposit', sign: 1n, contra: systemAccountId('cash_in', 'EUR') },
  { type: 'withdrawal', sign: -1n, contra: systemAccountId('cash_out', 'EUR') },
  { type: 'card_payment', sign: -1n, contra: systemAccountId('card_settlement', 'EUR') },
];

const INSERTS = {
  outcomes:
    'transactions (id, run_id, type, account_id, amount_minor, currency, merchant, to_account_id, to_balance_after_minor, authorization_id, capture_id, body_hash, status, reason, detail, balance_after_minor, worker_id, attempts, created_at, processed_at, account_seq, seq_stream)',
  entries: 'ledger_entries (transaction_id, account_id, amount_minor, created_at)',
  transfers: 'ledger_transfers (transaction_id, debit_account_id, credit_account_id, amount_minor, created_at)',
  events:
    'outbox_events (event_id, transaction_id, account_id, account_seq, type, amount_minor, currency, outcome, reason, balance_after_minor, created_at)',
};
/** The ledger rows each shape writes (`prepared` writes today's, as prepared statements); every shape but `no-outbox` writes the outbox event. */
const LEDGER_OF = { entries: 'entries', prepared: 'entries', transfer: 'transfers', none: null, 'no-outbox': 'entries' };

/** One batch: its reads (with START TRANSACTION), its inserts' rows by table, and the account update. */
function batchOf(shape, batchNo, balances, now) {
  const messages = Array.from({ length: BATCH }, (_, i) => {
    const n = batchNo * BATCH + i;
    const kind = TYPES[n % 3];
    return {
      id: `00000000-0000-4000-8000-${n.toString().padStart(12, '0')}`,
      accountId: 1 + Math.floor(Math.random() * ACCOUNTS),
      amount: BigInt(100 + (n % 5000)),
      ...kind,
    };
  });
  const accountIds = [...new Set(messages.map((m) => m.accountId))].sort((a, b) => a - b);
  const reads =
    `START TRANSACTION; SELECT id, currency, balance_minor, held_minor, event_seq FROM accounts WHERE id IN (${sqlList(accountIds)}) AND kind = 'customer' ORDER BY id FOR UPDATE; ` +
    `SELECT id, body_hash, status, reason FROM transactions WHERE id IN (${sqlList(messages.map((m) => m.id))})`;
  const rows = { outcomes: [], entries: [], transfers: [], events: [] };
  for (const m of messages) {
    const signed = m.sign * m.amount;
    const after = (balances.get(m.accountId) ?? 10_000_000n) + signed;
    balances.set(m.accountId, after);
    const hash = randomBytes(32).toString('hex');
    rows.outcomes.push([
      m.id,
      null,
      m.type,
      m.accountId,
      m.amount,
      'EUR',
      null,
      null,
      null,
      null,
      null,
      hash,
      'applied',
      null,
      null,
      after,
      'shape-w',
      1,
      now,
      now,
      null,
      null,
    ]);
    rows.entries.push([m.id, m.accountId, signed, now], [m.id, m.contra, -signed, now]);
    rows.transfers.push([m.id, signed < 0n ? m.accountId : m.contra, signed < 0n ? m.contra : m.accountId, m.amount, now]);
    rows.events.push([m.id, m.id, m.accountId, 1, m.type, m.amount, 'EUR', 'applied', null, after, now]);
  }
  const ledger = LEDGER_OF[shape];
  const inserts = ['outcomes', ...(ledger ? [ledger] : []), ...(shape === 'no-outbox' ? [] : ['events'])].map((table) => ({
    into: INSERTS[table],
    rows: rows[table],
  }));
  const update = `UPDATE accounts SET balance_minor = CASE id ${accountIds.map((id) => `WHEN ${id} THEN ${balances.get(id)}`).join(' ')} END WHERE id IN (${sqlList(accountIds)})`;
  return { reads, inserts, update };
}

/**
 * Sends one batch as the worker does: the reads, then the writes with COMMIT in one round trip. The
 * `prepared` shape sends each insert as a server-side prepared statement instead (mysql2's `execute`,
 * cached per connection): one round trip each, no SQL text for the server to parse but the placeholders.
 */
async function send(c, shape, batch) {
  await c.query(batch.reads);
  if (shape !== 'prepared') {
    await c.query(
      [...batch.inserts.map((i) => `INSERT INTO ${i.into} VALUES ${i.rows.map(sqlTuple).join(', ')}`), batch.update, 'COMMIT'].join('; '),
    );
    return;
  }
  for (const i of batch.inserts) {
    const placeholders = `(${i.rows[0].map(() => '?').join(', ')})`;
    const params = i.rows.flat().map((v) => (typeof v === 'bigint' ? v.toString() : v));
    await c.execute(`INSERT INTO ${i.into} VALUES ${i.rows.map(() => placeholders).join(', ')}`, params);
  }
  await c.query(`${batch.update}; COMMIT`);
}

/** One run of `count` transactions written the shape's way by three connections; µs per transaction. */
async function runOnce(shape) {
  await freshDatabase();
  const connections = await Promise.all(
    Array.from({ length: CONNECTIONS }, () => mysql2.createConnection(connectionFromUrl(url, DATABASE, true))),
  );
  const balances = new Map();
  const batches = Math.floor(count / BATCH);
  let next = 0;
  const database = new CpuSampler(databasePids);
  const ownStart = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(
    connections.map(async (c) => {
      for (let b = next++; b < batches; b = next++) {
        await send(c, shape, batchOf(shape, b, balances, new Date()));
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  database.sample();
  const own = process.cpuUsage(ownStart);
  await Promise.all(connections.map((c) => c.end()));
  const applied = batches * BATCH;
  return {
    rate: Math.round(applied / seconds),
    databaseUs: (database.cpuSecondsSinceStart() * 1e6) / applied,
    ownUs: (own.user + own.system) / applied,
  };
}

const results = Object.fromEntries(SHAPES.map((s) => [s, []]));
try {
  for (let r = 1; r <= rounds; r++) {
    for (const shape of SHAPES) {
      const res = await runOnce(shape);
      results[shape].push(res);
      console.log(
        `round ${r} ${shape.padEnd(9)} ${res.rate} tx/s, database ${res.databaseUs.toFixed(1)} µs/tx, this process ${res.ownUs.toFixed(1)} µs/tx`,
      );
    }
  }
} catch (err) {
  console.error(`ledger-shape-cost: database at ${redactUrl(url)}: ${err.message}`);
  process.exitCode = 1;
} finally {
  await dropDatabase(url, DATABASE).catch(() => {});
}
if (!process.exitCode) {
  console.log(`median of ${rounds} round(s), ${count} transactions each, ${CONNECTIONS} connections, batches of ${BATCH}:`);
  const base = median(results.entries.map((r) => r.databaseUs));
  for (const shape of SHAPES) {
    const rs = results[shape];
    const db = median(rs.map((r) => r.databaseUs));
    console.log(
      `  ${shape.padEnd(9)} database ${db.toFixed(1)} µs/tx (${shape === 'entries' ? 'txsim today' : `${(db - base >= 0 ? '+' : '') + (db - base).toFixed(1)}`}), this process ${median(rs.map((r) => r.ownUs)).toFixed(1)} µs/tx, ${median(rs.map((r) => r.rate))} tx/s`,
    );
  }
}
