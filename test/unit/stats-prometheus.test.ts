import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { emptyAccountingMetrics } from '../../src/accounting/statements-consumer.js';
import { HopTimings } from '../../src/stats/hops.js';
import {
  createMetricsRegistry,
  exportAccountingMetrics,
  exportGenMetrics,
  exportHttpMetrics,
  exportWorkerMetrics,
} from '../../src/stats/prometheus.js';
import { startMetricsServer } from '../../src/stats/metrics-server.js';
import { metricsOptionsFrom } from '../../src/commands/metrics-flags.js';
import { UsageError } from '../../src/errors.js';
import { WorkerMetrics } from '../../src/stats/worker-metrics.js';
import { createLogger } from '../../src/log.js';
import { parsePrometheusText, sumOf } from '../helpers/prometheus-text.js';

const log = createLogger('silent');

/** Name and type of every txsim_ metric a registry exposes (Node's default metrics left out). */
async function txsimMetrics(text: Promise<string>): Promise<Record<string, string>> {
  const types: Record<string, string> = {};
  for (const line of (await text).split('\n')) {
    const m = /^# TYPE (txsim_\S+) (\S+)$/.exec(line);
    if (m) types[m[1]!] = m[2]!;
  }
  return types;
}

describe('Prometheus export', () => {
  it('a worker: conventional names, types and units, counters read from WorkerMetrics at scrape time', async () => {
    const metrics = new WorkerMetrics();
    const expiryCounts = { expired: 0, busy: 0, failures: 0 };
    const registry = createMetricsRegistry('worker', { worker_id: 'w1' });
    exportWorkerMetrics(registry, {
      metrics,
      connected: () => true,
      relay: () => ({ relayed: 7, batches: 2, failures: 1, pruned: 0, leaseHeld: true }),
      holdExpiry: () => expiryCounts,
    });
    expect(await txsimMetrics(registry.metrics())).toEqual({
      txsim_transactions_total: 'counter',
      txsim_retries_total: 'counter',
      txsim_parked_total: 'counter',
      txsim_duplicates_total: 'counter',
      txsim_batches_total: 'counter',
      txsim_in_flight_messages: 'gauge',
      txsim_amqp_connected: 'gauge',
      txsim_amqp_blocked: 'gauge',
      txsim_worker_paused: 'gauge',
      txsim_batch_size: 'histogram',
      txsim_hop_latency_seconds: 'histogram',
      txsim_relay_events_total: 'counter',
      txsim_relay_batches_total: 'counter',
      txsim_relay_failures_total: 'counter',
      txsim_outbox_pruned_total: 'counter',
      txsim_relay_lease_held: 'gauge',
      txsim_holds_expired_total: 'counter',
      txsim_hold_expiry_deferred_total: 'counter',
      txsim_hold_expiry_failures_total: 'counter',
    });

    // Counted after the exporter was attached: the scrape reads the live counters.
    metrics.recordOutcome('applied', 'deposit');
    metrics.recordOutcome('applied', 'deposit');
    metrics.recordOutcome('insufficient_funds', 'withdrawal');
    metrics.recordOutcome('invalid_message', undefined);
    metrics.retried = 3;
    metrics.blocked = true;
    metrics.recordBatch(4, 1_000, 1_020);
    metrics.recordCommitted(900, 950, 1_000, 1_020);
    metrics.hops.record('queue_wait', 250);
    Object.assign(expiryCounts, { expired: 5, busy: 2, failures: 1 });
    const samples = parsePrometheusText(await registry.metrics());
    expect(sumOf(samples, 'txsim_holds_expired_total', { process: 'worker', worker_id: 'w1' })).toBe(5);
    expect(sumOf(samples, 'txsim_hold_expiry_deferred_total')).toBe(2);
    expect(sumOf(samples, 'txsim_hold_expiry_failures_total')).toBe(1);
    expect(sumOf(samples, 'txsim_transactions_total', { outcome: 'applied', reason: '', type: 'deposit', worker_id: 'w1' })).toBe(2);
    expect(sumOf(samples, 'txsim_transactions_total', { outcome: 'rejected', reason: 'insufficient_funds', type: 'withdrawal' })).toBe(1);
    expect(sumOf(samples, 'txsim_transactions_total', { outcome: 'rejected', reason: 'invalid_message', type: 'unknown' })).toBe(1);
    expect(sumOf(samples, 'txsim_transactions_total')).toBe(4);
    expect(sumOf(samples, 'txsim_retries_total')).toBe(3);
    expect(sumOf(samples, 'txsim_amqp_blocked')).toBe(1);
    expect(sumOf(samples, 'txsim_relay_events_total', { process: 'worker' })).toBe(7);
    expect(sumOf(samples, 'txsim_relay_lease_held', { process: 'worker' })).toBe(1);
    expect(sumOf(samples, 'txsim_batch_size_count')).toBe(1);
    expect(sumOf(samples, 'txsim_batch_size_sum')).toBe(4);
    // Hops in seconds: a batch's commit counts once per message of it.
    expect(sumOf(samples, 'txsim_hop_latency_seconds_count', { hop: 'commit' })).toBe(4);
    expect(sumOf(samples, 'txsim_hop_latency_seconds_sum', { hop: 'commit' })).toBeCloseTo(0.08);
    expect(sumOf(samples, 'txsim_hop_latency_seconds_sum', { hop: 'queue_wait' })).toBeCloseTo(0.25);
    expect(sumOf(samples, 'txsim_hop_latency_seconds_bucket', { hop: 'queue_wait', le: '0.25' })).toBe(1);
    expect(sumOf(samples, 'txsim_hop_latency_seconds_bucket', { hop: 'queue_wait', le: '0.1' })).toBe(0);
    expect(sumOf(samples, 'txsim_hop_latency_seconds_count', { hop: 'end_to_end' })).toBe(1);
    expect(sumOf(samples, 'txsim_hop_latency_seconds_count', { hop: 'processing' })).toBe(1);
    // Scraping twice does not add up twice.
    expect(sumOf(parsePrometheusText(await registry.metrics()), 'txsim_transactions_total')).toBe(4);
  });

  it('one registry per process: two exporters in one process do not collide, Node metrics registered once each', async () => {
    const a = createMetricsRegistry('worker');
    const b = createMetricsRegistry('worker');
    exportWorkerMetrics(a, { metrics: new WorkerMetrics(), connected: () => false });
    exportWorkerMetrics(b, { metrics: new WorkerMetrics(), connected: () => true });
    const samples = parsePrometheusText(await b.metrics());
    expect(samples.filter((s) => s.name === 'process_cpu_user_seconds_total')).toHaveLength(1);
    expect(sumOf(samples, 'txsim_amqp_connected')).toBe(1);
    expect(sumOf(parsePrometheusText(await a.metrics()), 'txsim_amqp_connected')).toBe(0);
  });

  it('gen, accounting and serve', async () => {
    const gen = createMetricsRegistry('gen');
    let progress: { published: number; confirmed: number; returned: number; failed: number } | null = null;
    exportGenMetrics(gen, () => progress);
    expect(await txsimMetrics(gen.metrics())).toEqual({
      txsim_published_total: 'counter',
      txsim_publish_confirms_total: 'counter',
      txsim_publish_returns_total: 'counter',
      txsim_publish_unconfirmed_failed: 'gauge',
    });
    expect(sumOf(parsePrometheusText(await gen.metrics()), 'txsim_published_total')).toBe(0);
    progress = { published: 10, confirmed: 8, returned: 1, failed: 0 };
    const g = parsePrometheusText(await gen.metrics());
    expect([sumOf(g, 'txsim_published_total'), sumOf(g, 'txsim_publish_confirms_total'), sumOf(g, 'txsim_publish_returns_total')]).toEqual([
      10, 8, 1,
    ]);

    const accounting = createMetricsRegistry('accounting');
    const hops = new HopTimings();
    const counters = {
      statements: 5,
      duplicates: 1,
      invalid: 0,
      webhooksDelivered: 4,
      webhooksFailed: 1,
      webhookAttempts: 9,
      webhooksTakenOver: 2,
    };
    exportAccountingMetrics(accounting, { metrics: counters, hops, inFlight: () => 2, connected: () => true });
    hops.record('statement', 30);
    const a = parsePrometheusText(await accounting.metrics());
    expect(sumOf(a, 'txsim_statement_lines_total')).toBe(5);
    expect(sumOf(a, 'txsim_webhooks_total', { result: 'failed' })).toBe(1);
    expect([sumOf(a, 'txsim_webhook_attempts_total'), sumOf(a, 'txsim_webhooks_taken_over_total')]).toEqual([9, 2]);
    expect(sumOf(a, 'txsim_in_flight_messages')).toBe(2);
    expect(sumOf(a, 'txsim_hop_latency_seconds_count', { hop: 'statement', process: 'accounting' })).toBe(1);

    const serve = createMetricsRegistry('serve');
    const observe = exportHttpMetrics(serve);
    observe('GET', '/v1/accounts/:id', 200, 12);
    observe('GET', '/v1/accounts/:id', 200, 8);
    observe('POST', '/v1/transactions', 503, 3);
    const s = parsePrometheusText(await serve.metrics());
    expect(sumOf(s, 'txsim_http_requests_total', { method: 'GET', route: '/v1/accounts/:id', status: '200' })).toBe(2);
    expect(sumOf(s, 'txsim_http_requests_total', { status: '503' })).toBe(1);
    expect(sumOf(s, 'txsim_http_request_duration_seconds_count', { route: '/v1/accounts/:id' })).toBe(2);
  });

  it('serves GET /metrics (Prometheus text) and 404 elsewhere; port 0 picks a free port', async () => {
    const registry = createMetricsRegistry('gen');
    exportGenMetrics(registry, () => ({ published: 3, confirmed: 3, returned: 0, failed: 0 }));
    const server = await startMetricsServer(registry, { host: '127.0.0.1', port: 0 }, log);
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const response = await fetch(server.url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(sumOf(parsePrometheusText(await response.text()), 'txsim_published_total')).toBe(3);
      expect((await fetch(server.url.replace('/metrics', '/'))).status).toBe(404);
    } finally {
      await server.close();
      await server.close();
    }
  });

  it('the Grafana dashboard only queries metrics the processes export', async () => {
    const exported = new Set<string>();
    const worker = createMetricsRegistry('worker');
    exportWorkerMetrics(worker, { metrics: new WorkerMetrics(), connected: () => true, relay: () => null });
    const gen = createMetricsRegistry('gen');
    exportGenMetrics(gen, () => null);
    const accounting = createMetricsRegistry('accounting');
    exportAccountingMetrics(accounting, {
      metrics: emptyAccountingMetrics(),
      hops: new HopTimings(),
      inFlight: () => 0,
      connected: () => true,
    });
    const serve = createMetricsRegistry('serve');
    exportHttpMetrics(serve)('GET', '/', 200, 1);
    for (const registry of [worker, gen, accounting, serve])
      for (const [name, type] of Object.entries(await txsimMetrics(registry.metrics())))
        for (const suffix of type === 'histogram' ? ['_bucket', '_sum', '_count'] : ['']) exported.add(name + suffix);
    const dashboard = JSON.parse(readFileSync(new URL('../../docs/grafana/txsim.json', import.meta.url), 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const queried = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/\btxsim_[a-z_]+/g) ?? []));
    expect(queried.length).toBeGreaterThan(20);
    expect(queried.filter((name) => !exported.has(name))).toEqual([]);
  });

  it('--metrics-port and --metrics-host: off by default, a bad value is a usage error naming the flag', () => {
    expect(metricsOptionsFrom({})).toBeNull();
    expect(metricsOptionsFrom({ metricsPort: '9401', metricsHost: '127.0.0.1' })).toEqual({ host: '127.0.0.1', port: 9401 });
    expect(metricsOptionsFrom({ metricsPort: '0' })).toEqual({ host: '127.0.0.1', port: 0 });
    expect(() => metricsOptionsFrom({ metricsPort: 'abc' })).toThrow(UsageError);
    expect(() => metricsOptionsFrom({ metricsPort: '70000' })).toThrow(/--metrics-port/);
    expect(() => metricsOptionsFrom({ metricsPort: '9401', metricsHost: ' ' })).toThrow(/--metrics-host/);
  });
});
