import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topologyOf } from '../../src/amqp/topology.js';
import type { BenchReport } from '../../src/bench/bench.js';
import { benchConfig } from '../../src/commands/bench.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim } from '../helpers/txsim.js';
import { removeBenchNamespace } from './bench-helpers.js';

/**
 * `txsim bench` end to end against the real services, at sizes that take seconds: the report's
 * numbers must add up to what happened, and a bench that could not drain must fail, not report.
 */
describe('txsim bench', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('bench');
  });

  afterAll(async () => {
    await removeBenchNamespace(ns);
  });

  const bench = async (args: string[]) => runTxsim(['bench', '--seed', 'it', ...args], ns.env, 180_000);

  it('flat out: every published message has one outcome, the books verify, the figures are consistent', async () => {
    const result = await bench(['--workers', '2', '--count', '1500', '--accounts', '200', '--mix', 'v1', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as BenchReport;
    expect(report).toMatchObject({
      published: 1500,
      confirmed: 1500,
      outcomes: 1500,
      drained: true,
      verifyOk: true,
      lost: 0,
      duplicated: 0,
    });
    expect(report.options).toMatchObject({ workers: 2, batchSizeMax: 100, accounts: 200 });
    for (const p of [report.confirmLatencyMs, report.endToEndLatencyMs]) {
      expect(p.count).toBe(1500);
      expect(p.p50).toBeLessThanOrEqual(p.p90);
      expect(p.p90).toBeLessThanOrEqual(p.p99);
      expect(p.p99).toBeLessThanOrEqual(p.p999);
      expect(p.p999).toBeLessThanOrEqual(p.max);
    }
    expect(report.endToEndRatePerS).toBeGreaterThan(0);
    expect(report.publishRatePerS).toBeGreaterThan(0);
    expect(report.seconds.length).toBeGreaterThan(0);
    expect(report.workerRssMbMax).toBeGreaterThan(0);
    // One worker's RSS, not the sum: each sample's largest worker is a real part of that sample's sum of two.
    expect(report.workerRssMbPerWorker.max).toBeGreaterThan(0);
    for (const s of report.seconds) {
      expect(s.workerRssMbLargest!).toBeLessThan(s.workerRssMb);
      expect(s.workerRssMbLargest! * 2).toBeGreaterThanOrEqual(s.workerRssMb - 1);
    }
    // Where the time went: each hop the workers measure, from both workers' final snapshots, merged exactly.
    expect(report.hopLatencyMs).toMatchObject({ workersFinal: 2, workersReporting: 2, exact: true });
    // The relay runs in the workers by default, as in a deployment: its hop is measured too.
    expect(Object.keys(report.hopLatencyMs.hops).sort()).toEqual(['ack', 'commit', 'end_to_end', 'processing', 'queue_wait', 'relay']);
    expect(report.relayDrained).toBe(true);
    expect(report).toMatchObject({ applied: 1500, rejected: 0 });
    for (const [hop, p] of Object.entries(report.hopLatencyMs.hops)) {
      // Every message passes every hop once (end to end: the poison-free run has a createdAt on each;
      // relay: one accounting event per outcome of the v1 mix).
      expect(p.count, hop).toBe(1500);
      expect(p.p50, hop).toBeLessThanOrEqual(p.p99);
      expect(p.p99, hop).toBeLessThanOrEqual(p.max);
    }

    // Per second: the hops of the values the workers recorded that second, and the seconds' outcomes
    // (from the workers' snapshots) add up to the run's.
    const withHops = report.seconds.filter((s) => s.hopsMs !== undefined);
    expect(withHops.length).toBeGreaterThan(0);
    for (const hop of ['queue_wait', 'processing', 'commit', 'relay', 'end_to_end'] as const) {
      const seconds = withHops.filter((s) => s.hopsMs![hop]);
      expect(seconds.length, hop).toBeGreaterThan(0);
      for (const s of seconds) expect(s.hopsMs![hop]!.p50, hop).toBeLessThanOrEqual(s.hopsMs![hop]!.p99);
      // Every value a worker recorded is in exactly one second (no snapshot lost on an idle broker).
      expect(
        seconds.reduce((n, s) => n + s.hopsMs![hop]!.count, 0),
        hop,
      ).toBe(1500);
    }
    // The disk probe ran beside it (default: the current directory), a flush every 50 ms.
    expect(report.diskSync).toMatchObject({ dir: '.', intervalMs: 50 });
    expect(report.diskSync!.samples).toBeGreaterThan(0);
    expect(report.diskSync!.p50Ms).toBeLessThanOrEqual(report.diskSync!.p99Ms);
    expect(report.diskSync!.p99Ms).toBeLessThanOrEqual(report.diskSync!.maxMs);
    const diskSeconds = report.seconds.filter((s) => s.diskSyncMaxMs !== undefined);
    expect(diskSeconds.length).toBeGreaterThan(0);
    for (const s of diskSeconds) expect(s.diskSyncMaxMs!).toBeLessThanOrEqual(report.diskSync!.maxMs);
    // (The seconds' applied/rejected are rates over intervals of about a second, not counts: no exact sum.)
    expect(report.seconds.some((s) => s.applied > 0)).toBe(true);
    // Nothing consumes the accounting queue in a bench: it is purged, not left holding the events.
    const connection = await amqp.connect(ns.config.amqpUrl);
    try {
      const channel = await connection.createChannel();
      const q = await channel.checkQueue(topologyOf(benchConfig(ns.config)).accountingQueue);
      expect(q.messageCount).toBe(0);
    } finally {
      await connection.close();
    }

    // What the report says is what the bench database holds.
    const config = benchConfig(ns.config);
    const db = (await import('../../src/db/knex.js')).createDatabase({
      databaseUrl: config.databaseUrl,
      databaseName: config.databaseName,
      poolMax: 1,
    });
    try {
      const [[row]] = (await db.raw('SELECT COUNT(*) AS n, COUNT(DISTINCT worker_id) AS w FROM transactions WHERE run_id = ?', [
        report.runId,
      ])) as [[{ n: number; w: number }]];
      expect(Number(row.n)).toBe(1500);
      expect(Number(row.w)).toBe(2);
    } finally {
      await db.destroy();
    }
  });

  it('paced: publishes rate × duration messages, and --csv prints one line per interval', async () => {
    // Poison at 20 %: rejects must show in the lines, though the 1,000 seeded accounts' opening
    // entries outnumber them in the ledger.
    const result = await bench(['--workers', '1', '--rate', '400', '--duration', '2', '--accounts', '1000', '--invalid', '0.2', '--csv']);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toBe(
      't,sent,confirmed,applied,rejected,worker_cpu_pct,worker_rss_mb,queue_wait_p50_ms,queue_wait_p99_ms,processing_p50_ms,processing_p99_ms,commit_p50_ms,commit_p99_ms,relay_p50_ms,relay_p99_ms,end_to_end_p50_ms,end_to_end_p99_ms,disk_sync_max_ms',
    );
    expect(lines.length).toBeGreaterThan(2);
    // Hop cells are empty in a second without values; the last cell is the disk probe's slowest flush (ms).
    for (const line of lines.slice(1)) expect(line).toMatch(/^\d+(\.\d)?(,\d+){6}(,\d*){10},(\d+(\.\d+)?)?$/);
    expect(lines.slice(1).some((l) => /,\d+,\d+,[\d.]*$/.test(l))).toBe(true);
    expect(lines.slice(1).some((l) => /,\d+(\.\d+)?$/.test(l))).toBe(true);
    // Paced at 400/s, no one-second line can claim much more than that was sent.
    const sent = lines.slice(1).map((l) => Number(l.split(',')[1]));
    expect(Math.max(...sent)).toBeLessThan(700);
    const rejected = lines.slice(1).map((l) => Number(l.split(',')[4]));
    expect(Math.max(...rejected)).toBeGreaterThan(0);
  });

  it('the publish rate is the primary messages over their own span: paced with card flows (the default mix), it reads as the rate asked, not diluted by the wait for the last follow-ups', async () => {
    const result = await bench([
      '--workers',
      '1',
      '--count',
      '1200',
      '--rate',
      '400',
      '--accounts',
      '200',
      '--disk-probe',
      'off',
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as BenchReport;
    // The default mix has card flows: their follow-ups go out up to 2 s after the last primary message.
    expect(report.followUps).toBeGreaterThan(0);
    expect(report.confirmed).toBe(1200);
    // Counted over the whole run (3 s of publishing, then the follow-ups' wait) it read about 240/s. The
    // rate asked is the reference, not the busiest second's `sent`: that one comes from gen's progress
    // reports every 200 ms, so at a steady 400/s its seconds read 318–412.
    expect(Math.abs(report.publishRatePerS - 400) / 400).toBeLessThanOrEqual(0.1);
  });

  it('--mix with transfers and card authorizations: every published message is counted applied or rejected, the books verify; --no-relay measures no relay hop', async () => {
    const result = await bench([
      '--workers',
      '2',
      '--count',
      '1200',
      '--accounts',
      '100',
      '--mix',
      'deposit=20,withdrawal=20,card_payment=20,transfer=25,card_authorization=15',
      '--invalid',
      '0.05',
      '--no-relay',
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as BenchReport;
    // The authorizations are card flows: their captures, voids and refunds follow, and count like the run's own.
    expect(report.followUps).toBeGreaterThan(0);
    expect(report).toMatchObject({
      published: 1200,
      confirmed: 1200,
      outcomes: 1200 + report.followUps,
      verifyOk: true,
      lost: 0,
      duplicated: 0,
    });
    expect(report.options.mix).toMatchObject({ transfer: 25, card_authorization: 15 });
    // Transfers post two entries and two events, authorizations none and one: counted per outcome all the same.
    expect(report.applied + report.rejected).toBe(1200 + report.followUps);
    expect(report.rejected).toBeGreaterThan(0); // the poison
    expect(report.seconds.some((s) => s.rejected > 0)).toBe(true);
    expect(report.relayDrained).toBeNull();
    expect(report.hopLatencyMs.hops.relay).toBeUndefined();

    const config = benchConfig(ns.config);
    const db = (await import('../../src/db/knex.js')).createDatabase({
      databaseUrl: config.databaseUrl,
      databaseName: config.databaseName,
      poolMax: 1,
    });
    try {
      const [rows] = (await db.raw('SELECT type, status, COUNT(*) AS n FROM transactions WHERE run_id = ? GROUP BY type, status', [
        report.runId,
      ])) as [{ type: string | null; status: string; n: number }[]];
      const count = (type: string, status: string) => Number(rows.find((r) => r.type === type && r.status === status)?.n ?? 0);
      expect(count('transfer', 'applied')).toBeGreaterThan(0);
      expect(count('card_authorization', 'applied')).toBeGreaterThan(0);
      expect(rows.filter((r) => r.status === 'applied').reduce((n, r) => n + Number(r.n), 0)).toBe(report.applied);
    } finally {
      await db.destroy();
    }
  });

  it("--relay-process: the relay runs in a process of its own, its hop still measured and its CPU per transaction apart from the workers'", async () => {
    const result = await bench(['--workers', '1', '--count', '600', '--accounts', '100', '--relay-process', '--mix', 'v1', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as BenchReport;
    expect(report).toMatchObject({ outcomes: 600, applied: 600, verifyOk: true, relayDrained: true });
    expect(report.hopLatencyMs.hops.relay?.count).toBe(600);
    // The worker and the relay process both reported (the relay's snapshots carry its hop).
    expect(report.hopLatencyMs.workersReporting).toBe(2);
    expect(report.cpuUsPerAppliedTx.components.relay).toBeGreaterThan(0);
    expect(report.seconds.some((s) => typeof s.relayCpuPct === 'number')).toBe(true);
  });

  it('fails with exit 4 when the workers cannot drain the run in time, instead of reporting wrong figures', async () => {
    const result = await bench([
      '--workers',
      '1',
      '--batch-size',
      '1',
      '--transactions',
      '1',
      '--prefetch',
      '1',
      '--count',
      '3000',
      '--accounts',
      '100',
      '--drain-timeout',
      '1',
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(4);
    expect(result.stderr).toMatch(/not drained within --drain-timeout 1 s/);
    const report = JSON.parse(result.stdout) as BenchReport;
    expect(report.drained).toBe(false);
    expect(report.outcomes).toBeLessThan(3000);
    expect(report.lost).toBe(0); // still queued, not lost
  });

  it('a wrong flag is a usage error (exit 2) before anything is reset', async () => {
    for (const args of [
      ['--workers', '0'],
      ['--hot-accounts', '2'],
      ['--batch-size', 'many'],
      ['--relay-process', '--no-relay'],
      ['--mix', 'deposit=1,bogus=2'],
      ['--disk-probe', '/nonexistent-txsim-dir'],
      // Any --linger with --via http, as gen refuses it, 0 included.
      ['--linger', '0', '--rate', '100', '--via', 'http'],
    ]) {
      const result = await bench(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(new RegExp(args[0]!));
    }
  });
});
