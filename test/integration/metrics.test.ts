import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { scrape, sumOf, type Sample } from '../helpers/prometheus-text.js';
import { runTxsim, spawnTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { freePort, jsonLines, startTxsim, type TxsimProcess } from './accounting-helpers.js';

/**
 * `--metrics-port` end to end: two workers (each with its relay), accounting and gen run as real
 * processes with Prometheus endpoints; what they report must equal what the database holds.
 */
describe('Prometheus metrics of real processes', () => {
  let ns: TestNamespace;
  let workers: WorkerProcess[] = [];
  let accounting: TxsimProcess;
  const ports: Record<string, number> = {};
  const url = (name: string) => `http://127.0.0.1:${ports[name]}/metrics`;

  beforeAll(async () => {
    ns = await createTestNamespace('prom');
    const setup = await runTxsim(['setup'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(10, { openingBalanceMinor: 20_000n });
    for (const name of ['w1', 'w2', 'accounting', 'gen']) ports[name] = await freePort();
    workers = ['w1', 'w2'].map((id) => startWorker(id, ns.env, ['--batch-size', '20', '--metrics-port', String(ports[id])]));
    accounting = startTxsim(['accounting', '--json', '--metrics-port', String(ports.accounting)], ns.env);
    // Serving before consuming: the endpoints answer as soon as the processes are up.
    await waitFor(
      async () =>
        (
          await Promise.all(
            ['w1', 'w2', 'accounting'].map((n) =>
              scrape(url(n)).then(
                () => true,
                () => false,
              ),
            ),
          )
        ).every(Boolean),
      20_000,
      'the metrics endpoints',
    );
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await accounting?.stop();
    await ns.cleanup();
  });

  it('counts outcomes, relayed events, statement lines and hops exactly as the database has them', async () => {
    // Paced, so gen is still publishing when it is scraped.
    const gen = spawnTxsim(
      ['gen', '400', '--seed', 'prom-1', '--invalid', '0.1', '--rate', '200', '--json', '--metrics-port', String(ports.gen)],
      ns.env,
    );
    let genSeen: Sample[] = [];
    await waitFor(
      async () => {
        genSeen = await scrape(url('gen')).catch(() => []);
        return sumOf(genSeen, 'txsim_publish_confirms_total') > 0;
      },
      20_000,
      "gen's metrics mid-run",
      100,
    );
    expect(sumOf(genSeen, 'txsim_published_total')).toBeGreaterThanOrEqual(sumOf(genSeen, 'txsim_publish_confirms_total'));
    expect(sumOf(genSeen, 'txsim_published_total')).toBeLessThanOrEqual(400);
    expect(genSeen.find((s) => s.name === 'txsim_publish_confirms_total')?.labels).toMatchObject({ process: 'gen' });
    const genResult = await gen.done;
    expect(genResult.code, genResult.stderr).toBe(0);
    const { runId } = JSON.parse(genResult.stdout) as { runId: string };

    const verify = await runTxsim(['verify', '--run', runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);

    const db = async () => {
      const byStatus: { status: string; reason: string | null; n: number | string }[] = await ns
        .db('transactions')
        .where('run_id', runId)
        .select('status', 'reason')
        .count('* as n')
        .groupBy('status', 'reason');
      const [{ sent }] = (await ns.db('outbox_events').whereNotNull('sent_at').count('* as sent')) as [{ sent: number | string }];
      const [{ lines }] = (await ns.db('accounting_statements').count('* as lines')) as [{ lines: number | string }];
      return { byStatus, sent: Number(sent), lines: Number(lines) };
    };
    // The relay and accounting finish a moment after verify settles the run's outcomes.
    let expected = await db();
    await waitFor(
      async () => {
        expected = await db();
        return expected.sent === 400 && expected.lines === 400;
      },
      60_000,
      'every outbox event relayed and written as a statement line',
    ).catch((err: Error) => {
      // What the processes said, to tell a stalled relay from a stalled accounting consumer.
      const complaints = (text: string) =>
        text
          .split('\n')
          .filter((l) => /"level":(40|50|60)/.test(l))
          .slice(-20)
          .join('\n');
      throw new Error(
        `${err.message}: ${expected.sent} sent, ${expected.lines} statement lines\n` +
          `workers:\n${workers.map((w) => complaints(w.output())).join('\n')}\naccounting:\n${complaints(accounting.stderr() + accounting.stdout())}`,
      );
    });
    // Each process counts after its commit returns: the rows can be there a moment before the counters.
    // Scraped until they agree with the database (or 10 s), then asserted exactly.
    let w: Sample[] = [];
    let a: Sample[] = [];
    await waitFor(
      async () => {
        w = [...(await scrape(url('w1'))), ...(await scrape(url('w2')))];
        a = await scrape(url('accounting'));
        return (
          sumOf(w, 'txsim_transactions_total') === 400 &&
          sumOf(w, 'txsim_relay_events_total') === expected.sent &&
          sumOf(a, 'txsim_statement_lines_total') === expected.lines &&
          sumOf(a, 'txsim_hop_latency_seconds_count', { hop: 'statement' }) === expected.lines
        );
      },
      10_000,
      'the counters caught up with the database',
    ).catch(() => {});

    const applied = expected.byStatus.filter((r) => r.status === 'applied').reduce((n, r) => n + Number(r.n), 0);
    expect(applied).toBeGreaterThan(0);
    expect(sumOf(w, 'txsim_transactions_total', { outcome: 'applied' })).toBe(applied);
    const rejected = expected.byStatus.filter((r) => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected)
      expect(sumOf(w, 'txsim_transactions_total', { outcome: 'rejected', reason: r.reason! }), r.reason!).toBe(Number(r.n));
    expect(sumOf(w, 'txsim_transactions_total')).toBe(400);
    // Both workers took part, each labelled with its id.
    expect(sumOf(w, 'txsim_transactions_total', { worker_id: 'w1' })).toBeGreaterThan(0);
    expect(sumOf(w, 'txsim_transactions_total', { worker_id: 'w2' })).toBeGreaterThan(0);
    expect(sumOf(w, 'txsim_batch_size_count')).toBe(sumOf(w, 'txsim_batches_total'));
    expect(sumOf(w, 'txsim_batch_size_sum')).toBeGreaterThanOrEqual(400);

    expect(sumOf(w, 'txsim_relay_events_total')).toBe(expected.sent);
    expect(sumOf(a, 'txsim_statement_lines_total')).toBe(expected.lines);
    expect(sumOf(w, 'txsim_amqp_connected')).toBe(2);
    expect(sumOf(a, 'txsim_amqp_connected')).toBe(1);
    expect(sumOf(w, 'txsim_amqp_blocked')).toBe(0);

    // Hops: one value per message for each hop its process measures.
    for (const hop of ['queue_wait', 'processing', 'ack', 'end_to_end'])
      expect(sumOf(w, 'txsim_hop_latency_seconds_count', { hop }), hop).toBeGreaterThanOrEqual(hop === 'end_to_end' ? 360 : 400);
    expect(sumOf(w, 'txsim_hop_latency_seconds_count', { hop: 'commit' })).toBe(sumOf(w, 'txsim_batch_size_sum'));
    expect(sumOf(w, 'txsim_hop_latency_seconds_count', { hop: 'relay' })).toBe(expected.sent);
    expect(sumOf(a, 'txsim_hop_latency_seconds_count', { hop: 'statement' })).toBe(expected.lines);
    // Default Node metrics are there too, once.
    expect(a.filter((s) => s.name === 'process_cpu_user_seconds_total')).toHaveLength(1);
  });

  it('--metrics-port 0: the port chosen is in the "metrics served" log line, and it serves there', async () => {
    // --log-level info: test namespaces log at warn.
    const second = startTxsim(['accounting', '--metrics-port', '0', '--log-level', 'info'], ns.env);
    try {
      let served: Record<string, unknown> | undefined;
      await waitFor(
        () => (served = jsonLines(second.stderr()).find((l) => l.msg === 'metrics served')) !== undefined,
        20_000,
        'the "metrics served" line',
        100,
      );
      // Not redacted like a field named `url` (it holds no password): the URL and port as served.
      expect(JSON.stringify(served)).not.toContain('***');
      const port = served!.port as number;
      expect(port).toBeGreaterThan(0);
      expect(served!.metricsUrl).toBe(`http://127.0.0.1:${port}/metrics`);
      const samples = await scrape(served!.metricsUrl as string);
      expect(samples.find((s) => s.name === 'txsim_statement_lines_total')?.labels).toMatchObject({ process: 'accounting' });
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});
