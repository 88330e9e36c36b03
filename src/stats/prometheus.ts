import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { REJECT_REASONS, TRANSACTION_TYPES } from '../domain/transaction.js';
import type { StageDeclineReason } from '../domain/stage-spec.js';
import type { HopTimings } from './hops.js';
import type { StageMetrics } from './stage-metrics.js';
import type { WorkerMetrics } from './worker-metrics.js';

/**
 * Prometheus metrics of txsim's processes (`--metrics-port`), with prom-client.
 *
 * One registry per process, never prom-client's global default: tests start several exporters in
 * one process, and the default registry would register every metric twice. Counters are not
 * counted a second time: each is read at scrape time (`collect`) from the counters the process
 * already keeps for its logs, snapshots and summaries. Only the histograms (hop latency, batch
 * size) are observed as values happen, through the listeners of HopTimings and WorkerMetrics —
 * nothing is observed unless an exporter is attached.
 *
 * It lives in stats/ beside the snapshots because it is another view of the same counters; the
 * processes' own types are described structurally here, so stats/ imports nothing from gen/,
 * accounting/ or serve/ (data flows into stats, never back).
 */

/** Which process a registry belongs to: the `process` label of every series. */
export type ProcessKind = 'gen' | 'worker' | 'accounting' | 'serve';

/**
 * Bucket bounds of the hop latency histograms, in seconds: 1 ms (HdrHistogram's resolution in the
 * snapshots) to 60 s, about three per decade, so p50/p99 from `histogram_quantile` are usable.
 */
export const HOP_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

/** Bucket bounds of the batch-size histogram (messages per DB transaction, up to --batch-size 5000). */
export const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] as const;

/** Bucket bounds of HTTP request durations (serve), in seconds. */
export const HTTP_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** A registry for one process, with Node's default metrics (CPU, memory, event loop lag, GC) registered once. */
export function createMetricsRegistry(kind: ProcessKind, labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ process: kind, ...labels });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** A counter whose value is read from elsewhere at scrape time (one series per entry `read` returns). */
function readCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => readonly (readonly [Partial<Record<L, string>>, number])[],
): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}

/** A gauge read at scrape time. */
function readGauge(registry: Registry, name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** `txsim_hop_latency_seconds{hop}`, observed from now on as the process records hops. */
export function exportHopLatency(registry: Registry, hops: HopTimings): Histogram<'hop'> {
  const histogram = new Histogram<'hop'>({
    name: 'txsim_hop_latency_seconds',
    help: 'Latency of each hop a transaction passes (queue_wait, processing, commit, ack, relay, statement, end_to_end); see README "Where the time goes"',
    labelNames: ['hop'],
    buckets: [...HOP_BUCKETS_S],
    registers: [registry],
  });
  // Children bound once: an observation is then a bucket search and an increment, no label hashing.
  const children = new Map<string, Histogram.Internal<'hop'>>();
  hops.listener = (hop, ms, count) => {
    let child = children.get(hop);
    if (!child) {
      child = histogram.labels({ hop });
      children.set(hop, child);
    }
    const seconds = ms / 1000;
    for (let i = 0; i < count; i++) child.observe(seconds);
  };
  return histogram;
}

/** What a worker process exposes besides its WorkerMetrics (structural: the worker and relay classes). */
export interface WorkerExportSources {
  readonly metrics: WorkerMetrics;
  /** The worker's consume channel is open. */
  readonly connected: () => boolean;
  /** The outbox relay's counters when it runs in this process (null from the getter until it started). */
  readonly relay?:
    | (() => {
        readonly relayed: number;
        readonly batches: number;
        readonly failures: number;
        readonly pruned: number;
        readonly leaseHeld: boolean;
      } | null)
    | null;
  /** The hold-expiry sweep's counters when it runs in this process (null from the getter until it started). */
  readonly holdExpiry?: (() => { readonly expired: number; readonly busy: number; readonly failures: number } | null) | null;
}

/** A worker's metrics: outcomes by reason and type, retries, parks, batches, in-flight, broker state, hops. */
export function exportWorkerMetrics(registry: Registry, sources: WorkerExportSources): void {
  const m = sources.metrics;
  readCounter(
    registry,
    'txsim_transactions_total',
    'Transactions with a final outcome, by outcome (applied, rejected), reject reason and transaction type ("unknown" for unreadable messages)',
    ['outcome', 'reason', 'type'],
    () =>
      // The contract's reasons, then any `declined_by_<stage>` a processing stage produced so far.
      [
        ...new Set<keyof WorkerMetrics['outcomesByType']>([
          'applied',
          ...REJECT_REASONS,
          ...(Object.keys(m.outcomesByType) as StageDeclineReason[]),
        ]),
      ].flatMap((key) =>
        [...TRANSACTION_TYPES, 'unknown' as const].map(
          (type) =>
            [
              { outcome: key === 'applied' ? 'applied' : 'rejected', reason: key === 'applied' ? '' : key, type },
              m.outcomesByType[key]?.[type] ?? 0,
            ] as const,
        ),
      ),
  );
  readCounter(registry, 'txsim_retries_total', 'Messages sent through a retry delay queue after a system error', [], () => [
    [{}, m.retried],
  ]);
  readCounter(registry, 'txsim_parked_total', 'Messages parked in the dead queue after their last attempt', [], () => [[{}, m.parked]]);
  readCounter(registry, 'txsim_duplicates_total', 'Redeliveries recognised as already processed and ignored', [], () => [
    [{}, m.duplicates],
  ]);
  readCounter(registry, 'txsim_batches_total', 'Database transactions committed (each applies up to --batch-size messages)', [], () => [
    [{}, m.batches],
  ]);
  readGauge(registry, 'txsim_in_flight_messages', 'Deliveries held and not yet applied', () => m.inFlight);
  readGauge(registry, 'txsim_amqp_connected', '1 while the connection to RabbitMQ is open', () => (sources.connected() ? 1 : 0));
  readGauge(registry, 'txsim_amqp_blocked', '1 while the broker blocks the connection (memory or disk alarm)', () => (m.blocked ? 1 : 0));
  readGauge(registry, 'txsim_worker_paused', '1 while the worker stopped consuming because the database is unreachable', () =>
    m.paused ? 1 : 0,
  );
  const batchSize = new Histogram({
    name: 'txsim_batch_size',
    help: 'Messages per committed database transaction',
    buckets: [...BATCH_SIZE_BUCKETS],
    registers: [registry],
  });
  m.batchListener = (size) => batchSize.observe(size);
  exportHopLatency(registry, m.hops);
  if (m.stages) exportStageMetrics(registry, m.stages);
  const relaySource = sources.relay;
  if (relaySource) {
    const relay = () => relaySource() ?? { relayed: 0, batches: 0, failures: 0, pruned: 0, leaseHeld: false };
    readCounter(registry, 'txsim_relay_events_total', 'Accounting events the outbox relay published (confirmed)', [], () => [
      [{}, relay().relayed],
    ]);
    readCounter(registry, 'txsim_relay_batches_total', 'Outbox claims relayed', [], () => [[{}, relay().batches]]);
    readCounter(registry, 'txsim_relay_failures_total', 'Relay steps that failed (events stay unsent and are claimed again)', [], () => [
      [{}, relay().failures],
    ]);
    readGauge(registry, 'txsim_relay_lease_held', '1 while this relay holds the relay lease (claims); 0 while it stands by', () =>
      relay().leaseHeld ? 1 : 0,
    );
    readCounter(registry, 'txsim_outbox_pruned_total', 'Sent outbox events deleted after the retention', [], () => [[{}, relay().pruned]]);
  }
  const expirySource = sources.holdExpiry;
  if (expirySource) {
    const expiry = () => expirySource() ?? { expired: 0, busy: 0, failures: 0 };
    readCounter(registry, 'txsim_holds_expired_total', 'Card holds this worker released at their expiresAt (the hold sweep)', [], () => [
      [{}, expiry().expired],
    ]);
    readCounter(
      registry,
      'txsim_hold_expiry_deferred_total',
      'Due holds the sweep left for a later tick because a batch held their account',
      [],
      () => [[{}, expiry().busy]],
    );
    readCounter(
      registry,
      'txsim_hold_expiry_failures_total',
      'Sweep ticks that failed (the database away); the next tick tries again',
      [],
      () => [[{}, expiry().failures]],
    );
  }
}

/**
 * The simulated processing stages of a worker (`--stage`): time in each stage by result, results
 * by stage (the declines and fails a user injected, and what passed), walks inside each stage now.
 */
export function exportStageMetrics(registry: Registry, stages: StageMetrics): void {
  const duration = new Histogram<'stage' | 'result'>({
    name: 'txsim_stage_duration_seconds',
    help: 'Time a message spent in a simulated processing stage (--stage), by stage and result (passed, declined, failed)',
    labelNames: ['stage', 'result'],
    buckets: [...HOP_BUCKETS_S],
    registers: [registry],
  });
  stages.listener = (stage, result, durationMs) => duration.observe({ stage, result }, durationMs / 1000);
  readCounter(
    registry,
    'txsim_stage_results_total',
    'Walks through a simulated processing stage by result: passed, declined (business reject declined_by_<stage>), failed (system error, retried)',
    ['stage', 'result'],
    () =>
      [...stages.byStage].flatMap(([stage, c]) =>
        (['passed', 'declined', 'failed'] as const).map((result) => [{ stage, result }, c[result]] as const),
      ),
  );
  new Gauge<'stage'>({
    name: 'txsim_stage_in_flight',
    help: 'Messages inside a simulated processing stage right now',
    labelNames: ['stage'],
    registers: [registry],
    collect() {
      for (const [stage, c] of stages.byStage) this.set({ stage }, c.inFlight);
    },
  });
  readGauge(
    registry,
    'txsim_stage_walks_in_flight_max',
    'Most messages walking their stages at the same time since start',
    () => stages.walksInFlightMax,
  );
}

/** gen's counters, as its publish loop keeps them. */
export interface GenCounts {
  readonly published: number;
  readonly confirmed: number;
  readonly returned: number;
  /** Published and neither confirmed nor returned after a failure (nacked, timed out, or lost with the channel). */
  readonly failed: number;
}

/** gen's metrics; `read` returns null before the run started publishing. */
export function exportGenMetrics(registry: Registry, read: () => GenCounts | null): void {
  const zero: GenCounts = { published: 0, confirmed: 0, returned: 0, failed: 0 };
  const counts = () => read() ?? zero;
  readCounter(registry, 'txsim_published_total', 'Messages handed to the broker (re-sends after a reconnect not counted)', [], () => [
    [{}, counts().published],
  ]);
  readCounter(registry, 'txsim_publish_confirms_total', 'Publishes the broker confirmed (routed to a queue)', [], () => [
    [{}, counts().confirmed],
  ]);
  readCounter(registry, 'txsim_publish_returns_total', 'Publishes returned unroutable (mandatory)', [], () => [[{}, counts().returned]]);
  readGauge(
    registry,
    'txsim_publish_unconfirmed_failed',
    'Publishes currently failed (nacked, timed out or lost with the channel) and waiting to be re-sent',
    () => counts().failed,
  );
}

/** The accounting consumer's counters (structural: AccountingConsumer). */
export interface AccountingExportSources {
  readonly metrics: {
    readonly statements: number;
    readonly duplicates: number;
    readonly invalid: number;
    readonly webhooksDelivered: number;
    readonly webhooksFailed: number;
    readonly webhookAttempts: number;
    readonly webhooksTakenOver: number;
  };
  readonly hops: HopTimings;
  readonly inFlight: () => number;
  readonly connected: () => boolean;
}

export function exportAccountingMetrics(registry: Registry, sources: AccountingExportSources): void {
  const m = sources.metrics;
  readCounter(registry, 'txsim_statement_lines_total', 'Accounting events written as a new statement line', [], () => [[{}, m.statements]]);
  readCounter(registry, 'txsim_accounting_duplicates_total', 'Accounting events received again and ignored (event id)', [], () => [
    [{}, m.duplicates],
  ]);
  readCounter(registry, 'txsim_accounting_invalid_total', 'Messages on the accounting queue that were not accounting events', [], () => [
    [{}, m.invalid],
  ]);
  readCounter(registry, 'txsim_webhooks_total', 'Webhook deliveries by final result', ['result'], () => [
    [{ result: 'delivered' }, m.webhooksDelivered],
    [{ result: 'failed' }, m.webhooksFailed],
  ]);
  readCounter(registry, 'txsim_webhook_attempts_total', 'Webhook POSTs made, each counted once, retries included', [], () => [
    [{}, m.webhookAttempts],
  ]);
  readCounter(
    registry,
    'txsim_webhooks_taken_over_total',
    'Pending webhook deliveries left by another consumer (--webhook-orphan-after) and taken over by this one',
    [],
    () => [[{}, m.webhooksTakenOver]],
  );
  readGauge(registry, 'txsim_in_flight_messages', 'Accounting events in progress (not yet acked)', sources.inFlight);
  readGauge(registry, 'txsim_amqp_connected', '1 while the connection to RabbitMQ is open', () => (sources.connected() ? 1 : 0));
  exportHopLatency(registry, sources.hops);
}

/** Called by serve once per HTTP response. */
export type HttpObserver = (method: string, route: string, status: number, durationMs: number) => void;

/**
 * serve's request metrics. `route` is the route pattern (`/v1/accounts/:id`), never the raw URL:
 * ids in label values would create a series per account.
 */
export function exportHttpMetrics(registry: Registry): HttpObserver {
  const requests = new Counter<'method' | 'route' | 'status'>({
    name: 'txsim_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const duration = new Histogram<'method' | 'route'>({
    name: 'txsim_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by method and route pattern',
    labelNames: ['method', 'route'],
    buckets: [...HTTP_BUCKETS_S],
    registers: [registry],
  });
  return (method, route, status, durationMs) => {
    requests.inc({ method, route, status: String(status) });
    duration.observe({ method, route }, durationMs / 1000);
  };
}
