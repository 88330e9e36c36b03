import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeAccountingEvents, type AccountingEvent } from '../../src/domain/accounting-event.js';
import { runIdForSeed } from '../../src/domain/ids.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { queueState, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { jsonLines, startTxsim, type TxsimProcess } from './accounting-helpers.js';

// End to end through real processes: gen → workers (each running the outbox relay) → accounting
// consumer → statements, then `txsim verify` reconciles the statements with the ledger.
describe('accounting statements', () => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];
  let accounting: TxsimProcess;

  beforeAll(async () => {
    ns = await createTestNamespace('acct');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(15, { openingBalanceMinor: 50_000n });
    workers = ['w1', 'w2'].map((id) => startWorker(id, ns.env, ['--batch-size', '20', '--prefetch', '50']));
    accounting = startTxsim(['accounting', '--json', '--prefetch', '20'], ns.env);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await accounting?.stop();
    await ns.cleanup();
  });

  it('N transactions through two workers and their relays: one statement line per outcome, balances equal the ledger', async () => {
    const gen = await runTxsim(['gen', '300', '--seed', 'acct-1', '--invalid', '0.05', '--json'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const { runId } = JSON.parse(gen.stdout);

    const verify = await runTxsim(['verify', '--run', runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout);
    expect(report.run).toMatchObject({ lost: 0, duplicated: 0, pending: 0 });
    expect(report.accounting).toMatchObject({
      ok: true,
      settled: true,
      outcomes: 300,
      statements: 300,
      missing: 0,
      lost: 0,
      outboxUnsent: 0,
      queued: 0,
    });
    for (const check of report.accounting.checks) expect(check.violations, check.name).toBe(0);

    // Independently of verify, straight from the tables: every outcome has exactly one line that
    // says the same thing, and each account's lines are numbered 1..event_seq.
    const [[join]] = (await ns.db.raw(
      `SELECT COUNT(*) AS n, SUM(s.outcome = t.status AND s.balance_after_minor <=> t.balance_after_minor AND s.amount_minor <=> t.amount_minor) AS same
         FROM transactions t JOIN accounting_statements s ON s.transaction_id = t.id WHERE t.type IS NULL OR t.type <> 'opening'`,
    )) as [[{ n: string; same: string }]];
    expect(Number(join.n)).toBe(300);
    expect(Number(join.same)).toBe(300);
    const accounts: { id: string; balance_minor: string; event_seq: string }[] = await ns
      .db('accounts')
      .where('kind', 'customer')
      .select('id', 'balance_minor', 'event_seq');
    for (const a of accounts) {
      const lines: { account_seq: string; outcome: string; balance_after_minor: string | null }[] = await ns
        .db('accounting_statements')
        .where('account_id', a.id)
        .orderBy('account_seq')
        .select('account_seq', 'outcome', 'balance_after_minor');
      expect(lines.map((l) => Number(l.account_seq))).toEqual(Array.from({ length: Number(a.event_seq) }, (_, i) => i + 1));
      const lastApplied = lines.filter((l) => l.outcome === 'applied').at(-1);
      if (lastApplied) expect(lastApplied.balance_after_minor).toBe(a.balance_minor);
    }

    // The consumer printed each new line once.
    await waitFor(() => jsonLines(accounting.stdout()).length >= 300, 5_000, 'printed lines');
    const printed = jsonLines(accounting.stdout());
    expect(new Set(printed.map((e) => e.eventId)).size).toBe(300);
    expect(printed.some((e) => e.outcome === 'rejected' && e.reason === 'invalid_message')).toBe(true);
  });

  it('`txsim accounting statement` prints the account in sequence order with balances', async () => {
    const [busiest] = (
      await ns.db.raw(
        `SELECT account_id, COUNT(*) AS n FROM accounting_statements WHERE account_id IS NOT NULL GROUP BY account_id ORDER BY n DESC LIMIT 1`,
      )
    )[0] as { account_id: string; n: string }[];
    const id = busiest!.account_id;
    const json = await runTxsim(['accounting', 'statement', id, '--limit', '1000', '--json'], ns.env);
    expect(json.code, json.stderr).toBe(0);
    const statement = JSON.parse(json.stdout);
    expect(statement.lineCount).toBe(Number(busiest!.n));
    expect(statement.missingSeqs).toEqual([]);
    expect(statement.lines.map((l: { accountSeq: number }) => l.accountSeq)).toEqual(
      Array.from({ length: statement.lineCount }, (_, i) => i + 1),
    );
    const account = await ns.db('accounts').where('id', id).first('balance_minor');
    expect(statement.lines.at(-1).balanceMinor).toBe(account.balance_minor);

    const text = await runTxsim(['accounting', 'statement', id, '--limit', '5'], ns.env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`Statement of account ${id} (last 5 of ${statement.lineCount} lines)`);
    expect(text.stdout).toMatch(/EUR/);

    expect((await runTxsim(['accounting', 'statement', '999999'], ns.env)).code).toBe(5);
  });

  it('a worker killed mid-run (relay and all) and the consumer restarted: still exactly one line per outcome', async () => {
    const gen = runTxsim(['gen', '300', '--seed', 'acct-2', '--rate', '300', '--json'], ns.env);
    await waitFor(
      async () => Number((await ns.db('transactions').where('run_id', runIdForSeed('acct-2')).count({ n: '*' }))[0]!.n) > 60,
      30_000,
      'the run under way',
    );
    await workers[0]!.kill();
    await accounting.kill();
    workers[0] = startWorker('w1b', ns.env, ['--batch-size', '20', '--prefetch', '50']);
    accounting = startTxsim(['accounting', '--json', '--prefetch', '20'], ns.env);
    const done = await gen;
    expect(done.code, done.stderr).toBe(0);
    const { runId } = JSON.parse(done.stdout);

    const verify = await runTxsim(['verify', '--run', runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout);
    expect(report.accounting).toMatchObject({ ok: true, settled: true, outcomes: 600, statements: 600, missing: 0 });
    expect((await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount).toBe(0);
  });

  it('a message of several events: each good one gets its line, a bad one is kept in accounting_invalid_events, a bad message as a whole too', async () => {
    const event = (accountSeq: number): AccountingEvent => ({
      eventId: randomUUID(),
      transactionId: randomUUID(),
      accountId: 900_001,
      accountSeq,
      type: 'deposit',
      outcome: 'applied',
      reason: null,
      amountMinor: 500n,
      currency: 'EUR',
      balanceAfterMinor: 500n * BigInt(accountSeq),
      occurredAt: new Date().toISOString(),
    });
    const [first, last] = [event(1), event(2)];
    const wire = JSON.parse(encodeAccountingEvents([first, last]).toString()) as { version: number; events: unknown[] };
    wire.events.splice(1, 0, { ...(wire.events[0] as object), eventId: 'not-a-uuid' });
    const channel = await ns.amqp.createConfirmChannel();
    try {
      channel.publish(ns.topology.accountingExchange, 'events', Buffer.from(JSON.stringify(wire)), { persistent: true });
      channel.publish(ns.topology.accountingExchange, 'events', Buffer.from('{"version":1,"events":[]}'), { persistent: true });
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    // The bad element is recorded before the event after it is stored, and the other message is handled
    // at the same time: wait for both good lines as well as both bad records.
    await waitFor(
      async () =>
        Number((await ns.db('accounting_invalid_events').count({ n: '*' }))[0]!.n) === 2 &&
        Number((await ns.db('accounting_statements').where('account_id', 900_001).count({ n: '*' }))[0]!.n) === 2,
      20_000,
      'both good events stored, the bad element and the bad message recorded',
    );
    const lines = await ns.db('accounting_statements').where('account_id', 900_001).orderBy('account_seq').select('event_id');
    expect(lines.map((l: { event_id: string }) => l.event_id)).toEqual([first.eventId, last.eventId]);
    // The two messages are handled at once: which was recorded first is not fixed.
    const invalid: { detail: string; body: string; routing_key: string }[] = await ns
      .db('accounting_invalid_events')
      .orderBy('detail')
      .select('detail', 'body', 'routing_key');
    expect(invalid[0]).toMatchObject({ detail: 'event 2 of 3: eventId must be a lowercase UUID', routing_key: 'events' });
    expect(JSON.parse(invalid[0]!.body)).toMatchObject({ eventId: 'not-a-uuid' });
    expect(invalid[1]!.detail).toMatch(/^events must be an array of 1 to \d+ events$/);
    await waitFor(async () => (await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount === 0, 5_000, 'both acked');
    await ns.db('accounting_statements').where('account_id', 900_001).del();
  });

  it('a message that comes back records its bad elements once; one without a message id cannot be told apart', async () => {
    await ns.db('accounting_invalid_events').del();
    const good: AccountingEvent = {
      eventId: randomUUID(),
      transactionId: randomUUID(),
      accountId: 900_002,
      accountSeq: 1,
      type: 'deposit',
      outcome: 'applied',
      reason: null,
      amountMinor: 700n,
      currency: 'EUR',
      balanceAfterMinor: 700n,
      occurredAt: new Date().toISOString(),
    };
    const wire = JSON.parse(encodeAccountingEvents([good]).toString()) as { version: number; events: unknown[] };
    wire.events.push({ ...(wire.events[0] as object), eventId: 'not-a-uuid' });
    const body = Buffer.from(JSON.stringify(wire));
    const messageId = `${good.eventId}+2`;
    // The same bytes and id twice: what the consumer sees when a delivery comes back after its first
    // consumer stopped before the ack (and what a relay that published twice sends). Then a message
    // bad as a whole, twice with an id and twice without.
    const channel = await ns.amqp.createConfirmChannel();
    try {
      for (let copy = 0; copy < 2; copy++) {
        channel.publish(ns.topology.accountingExchange, 'events', body, { persistent: true, messageId });
        channel.publish(ns.topology.accountingExchange, 'events', Buffer.from('{"version":1}'), {
          persistent: true,
          messageId: 'whole-bad',
        });
        channel.publish(ns.topology.accountingExchange, 'events', Buffer.from('{"version":1}'), { persistent: true });
      }
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    await waitFor(async () => (await queueState(ns.amqp, ns.topology.accountingQueue)).messageCount === 0, 20_000, 'all six acked');
    await waitFor(
      async () => Number((await ns.db('accounting_invalid_events').count({ n: '*' }))[0]!.n) >= 4,
      10_000,
      'the records written',
    );
    const rows: { message_id: string | null; element_position: number; detail: string }[] = await ns
      .db('accounting_invalid_events')
      .orderBy('id')
      .select('message_id', 'element_position', 'detail');
    const byKey = (id: string | null, position: number) => rows.filter((r) => r.message_id === id && r.element_position === position);
    expect(byKey(messageId, 2)).toHaveLength(1);
    expect(byKey(messageId, 2)[0]!.detail).toBe('event 2 of 2: eventId must be a lowercase UUID');
    expect(byKey('whole-bad', 0)).toHaveLength(1);
    expect(byKey(null, 0)).toHaveLength(2);
    expect(rows).toHaveLength(4);
    expect(Number((await ns.db('accounting_statements').where('account_id', 900_002).count({ n: '*' }))[0]!.n)).toBe(1);
    await ns.db('accounting_statements').where('account_id', 900_002).del();
  });
});
