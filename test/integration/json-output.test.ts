import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemAccountId } from '../../src/domain/ledger.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { queueDepth, runTxsim, startWorker, waitFor, type RunResult, type WorkerProcess } from '../helpers/txsim.js';
import { startTxsim, type TxsimProcess } from './accounting-helpers.js';
import { expectValidOutput } from '../helpers/output-schema.js';

/**
 * One machine interface: every command with `--json`, run against the real services over a
 * namespace with applied, rejected and parked transactions, prints a document valid against its
 * schema in schema/output/ (camelCase, money as strings of minor units, ids as in the contract,
 * null for "no data").
 */

const SECRET = 'json-output-test-secret-0123456789';

/** Parses a command's stdout as one JSON document (the run must have printed one). */
function jsonOf(r: RunResult): unknown {
  expect(r.stdout.trim(), r.stderr).not.toBe('');
  return JSON.parse(r.stdout) as unknown;
}

describe('--json of every command matches its schema', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  let accounting: TxsimProcess;
  const started: TxsimProcess[] = [];
  const txsim = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    runTxsim(args, { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET, ...env }, 180_000);
  const parked = txBody({ accountId: 2, amountMinor: 300 });
  const poor = txBody({ accountId: 3, type: 'withdrawal', amountMinor: 1_000_000_000_000 });
  let runId = '';
  let appliedId = '';
  /** stdout of `bench --json`, compared by the bench compare test. */
  let benchReport = '';

  beforeAll(async () => {
    ns = await createTestNamespace('json');
    const setup = await txsim(['setup', '--json']);
    expect(setup.code, setup.stderr).toBe(0);
    expectValidOutput('setup', jsonOf(setup));
    // A parked message: its account row is locked from outside until every attempt timed out.
    worker = startWorker('w-json', ns.env, ['--batch-size', '1', '--max-attempts', '2', '--lock-wait-timeout', '1']);
    const seed = await txsim(['accounts', 'seed', '--count', '5', '--json']);
    expect(seed.code, seed.stderr).toBe(0);
    expectValidOutput('accounts-seed', jsonOf(seed));
    const holder = await ns.db.transaction();
    try {
      await holder.raw('SELECT id FROM accounts WHERE id = 2 FOR UPDATE');
      await publishRaw(ns.amqp, ns.topology, [{ body: parked }]);
      await waitFor(async () => (await queueDepth(ns.amqp, ns.topology.deadQueue)) === 1, 60_000, 'one parked message');
    } finally {
      await holder.rollback();
    }
    accounting = startTxsim(['accounting', '--json'], { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET });
    started.push(accounting);
    // Applied and rejected: a run with poison messages, an overdraft and an unknown account.
    const gen = await txsim(['gen', '30', '--seed', 'json-output', '--invalid', '0.2', '--json']);
    expect(gen.code, gen.stderr).toBe(0);
    const summary = jsonOf(gen);
    expectValidOutput('gen', summary);
    runId = (summary as { runId: string }).runId;
    await publishRaw(ns.amqp, ns.topology, [{ body: poor }, { body: txBody({ accountId: 424_242 }) }]);
    await waitFor(
      async () =>
        (await ns
          .db('transactions')
          .where('id', poor.id as string)
          .first('id')) !== undefined,
      30_000,
      'the overdraft to be rejected',
    );
    const applied = await ns.db('transactions').where({ run_id: runId, status: 'applied' }).first('id');
    appliedId = (applied as { id: string }).id;
  });

  afterAll(async () => {
    await worker?.stop();
    await Promise.all(started.map((p) => p.stop()));
    await ns?.cleanup();
  });

  it('verify (with a run, and the accounting statements)', async () => {
    const r = await txsim(['verify', '--run', runId, '--wait', '30', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expectValidOutput('verify', jsonOf(r));
  });

  it('accounting (one event per line)', () => {
    // verify --wait above waited for the statements to settle.
    const lines = accounting.stdout().trim().split('\n');
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) expectValidOutput('accounting-consume', JSON.parse(line));
  });

  it('accounts list, list --system, show (customer and system account); seed over other currencies', async () => {
    const list = await txsim(['accounts', 'list', '--limit', '2', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const page = jsonOf(list);
    expectValidOutput('accounts-list', page);
    expect(page).toMatchObject({ kind: 'customer', total: 5, shown: 2 });
    const system = await txsim(['accounts', 'list', '--system', '--json']);
    expectValidOutput('accounts-list', jsonOf(system));
    const show = await txsim(['accounts', 'show', '3', '--json']);
    expect(show.code, show.stderr).toBe(0);
    const shown = jsonOf(show);
    expectValidOutput('accounts-show', shown);
    expect((shown as { recent: { status: string; reason: string | null }[] }).recent).toContainEqual(
      expect.objectContaining({ status: 'rejected', reason: 'insufficient_funds', amountMinor: '1000000000000' }),
    );
    const equity = await txsim(['accounts', 'show', String(systemAccountId('opening_equity', 'EUR')), '--json']);
    const equityDoc = jsonOf(equity) as { account: { balanceMinor: string }; entries: { sumMinor: string } };
    expectValidOutput('accounts-show', equityDoc);
    // A system account's balance is its entry sum (5 opening balances of 1,000.00 went out of it).
    expect(equityDoc.account.balanceMinor).toBe(equityDoc.entries.sumMinor);
    expect(equityDoc.account.balanceMinor).toBe('-500000');
    // What was posted to it: the five openings, each out of it to its customer account.
    const posted = (
      equityDoc as unknown as { recent: { type: string; direction: string; counterpartyAccountId: number; amountMinor: string }[] }
    ).recent;
    expect(posted.map((p) => p.counterpartyAccountId).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(posted.every((p) => p.type === 'opening' && p.direction === 'out' && p.amountMinor === '100000')).toBe(true);
    const usd = await txsim(['accounts', 'seed', '--count', '6', '--currency', 'USD', '--json']);
    expect(usd.code, usd.stderr).toBe(0);
    const seeded = jsonOf(usd);
    expectValidOutput('accounts-seed', seeded);
    expect(seeded).toMatchObject({ created: 1, existing: 5, existingByCurrency: { EUR: 5 }, currency: 'USD' });
  });

  it('tx show: applied, rejected, parked', async () => {
    for (const id of [appliedId, poor.id as string]) {
      const r = await txsim(['tx', 'show', id, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const doc = jsonOf(r);
      expectValidOutput('tx-show', doc);
      expect(doc).toMatchObject({ id, accountId: expect.any(Number) as number, amountMinor: expect.stringMatching(/^\d+$/) as string });
    }
    const p = await txsim(['tx', 'show', parked.id as string, '--json']);
    expect(p.code, p.stderr).toBe(0);
    const doc = jsonOf(p);
    expectValidOutput('tx-show', doc);
    expect(doc).toMatchObject({ id: parked.id, status: 'parked' });
  });

  it('inspect-errors, inspect-errors --dead, replay-dead', async () => {
    const errors = await txsim(['inspect-errors', '--json']);
    expect(errors.code, errors.stderr).toBe(0);
    const report = jsonOf(errors) as { messages: { id: string; amountMinor: string | null }[] };
    expectValidOutput('inspect-errors', report);
    expect(report.messages.find((m) => m.id === poor.id)?.amountMinor).toBe('1000000000000');
    const dead = await txsim(['inspect-errors', '--dead', '--json']);
    expect(dead.code, dead.stderr).toBe(0);
    expectValidOutput('inspect-errors', jsonOf(dead));
    const replay = await txsim(['replay-dead', '--id', parked.id as string, '--json']);
    expect(replay.code, replay.stderr).toBe(0);
    expectValidOutput('replay-dead', jsonOf(replay));
  });

  it('accounting statement, redeliver, receive', async () => {
    const statement = await txsim(['accounting', 'statement', '3', '--json']);
    expect(statement.code, statement.stderr).toBe(0);
    expectValidOutput('accounting-statement', jsonOf(statement));
    const none = await txsim(['accounting', 'redeliver', '--failed', '--json']);
    expect(none.code, none.stderr).toBe(0);
    expectValidOutput('accounting-redeliver', jsonOf(none));
    const unknown = await txsim(['accounting', 'redeliver', '--id', randomUUID(), '--json']);
    expect(unknown.code).toBe(5);
    expectValidOutput('accounting-redeliver', jsonOf(unknown));
    const receiver = startTxsim(['accounting', 'receive', '--port', '0', '--json'], { ...ns.env, TXSIM_WEBHOOK_SECRET: SECRET });
    started.push(receiver);
    await waitFor(() => receiver.stdout().includes('\n'), 10_000, 'the receiver to listen');
    const listening = JSON.parse(receiver.stdout().split('\n')[0]!) as { listening: string };
    expectValidOutput('accounting-receive', listening);
    const refused = await fetch(listening.listening, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(refused.status).toBeGreaterThanOrEqual(400);
    await waitFor(() => receiver.stdout().trim().split('\n').length >= 2, 5_000, 'the refusal to print');
    expectValidOutput('accounting-receive', JSON.parse(receiver.stdout().trim().split('\n')[1]!));
  });

  it('tokens create, tokens list', async () => {
    const created = await txsim(['tokens', 'create', '--account', '1', '--ttl', '1d', '--json']);
    expect(created.code, created.stderr).toBe(0);
    expectValidOutput('tokens-create', jsonOf(created));
    const admin = await txsim(['tokens', 'create', '--admin', '--json']);
    expectValidOutput('tokens-create', jsonOf(admin));
    const list = await txsim(['tokens', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    expectValidOutput('tokens-list', jsonOf(list));
  });

  it('bench, then reset of the bench namespace', async () => {
    const bench = await txsim(['bench', '--workers', '1', '--count', '200', '--accounts', '10', '--seed', 'json', '--json']);
    expect(bench.code, bench.stderr).toBe(0);
    expectValidOutput('bench', jsonOf(bench));
    benchReport = bench.stdout;
    const reset = await txsim(['reset', '--yes', '--json'], { TXSIM_NAMESPACE: `${ns.name}_bench` });
    expect(reset.code, reset.stderr).toBe(0);
    const doc = jsonOf(reset);
    expectValidOutput('reset', doc);
    expect(doc).toMatchObject({ namespace: `${ns.name}_bench`, removed: true });
  });

  it('bench compare: the real report against itself (ok) and against a slower copy (exit 8)', async () => {
    expect(benchReport, 'the bench test above ran').not.toBe('');
    const dir = mkdtempSync(join(tmpdir(), 'txsim-json-compare-'));
    try {
      const before = join(dir, 'before.json');
      const after = join(dir, 'after.json');
      writeFileSync(before, benchReport);
      const slower = JSON.parse(benchReport) as { endToEndRatePerS: number };
      slower.endToEndRatePerS = Math.round(slower.endToEndRatePerS * 0.5);
      writeFileSync(after, JSON.stringify(slower));
      const same = await txsim(['bench', 'compare', before, before, '--json']);
      expect(same.code, same.stderr).toBe(0);
      const ok = jsonOf(same);
      expectValidOutput('bench-compare', ok);
      expect(ok).toMatchObject({ ok: true, failures: [] });
      const worse = await txsim(['bench', 'compare', before, after, '--json']);
      expect(worse.code, worse.stderr).toBe(8);
      const failed = jsonOf(worse);
      expectValidOutput('bench-compare', failed);
      expect((failed as { failures: string[] }).failures).toContain('endToEndRatePerS');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('watch, last: the worker has been idle for longer than its latency window, so its latency is null, not 0', async () => {
    const r = await txsim(['watch', '--json', '--listen', '1500']);
    expect(r.code, r.stderr).toBe(0);
    const doc = jsonOf(r) as { workers: { workerId: string; latencyWindowS: number; endToEndMs: { count: number; p50: number | null } }[] };
    expectValidOutput('watch', doc);
    const row = doc.workers.find((w) => w.workerId === 'w-json');
    expect(row?.endToEndMs).toMatchObject({ count: 0, p50: null });
  });
});
