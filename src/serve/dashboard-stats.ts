import { ManagedConnection } from '../amqp/managed-channel.js';
import type { Topology } from '../amqp/topology.js';
import type { Logger } from '../log.js';
import { round1 } from '../stats/rates.js';
import type { WorkerSnapshot } from '../stats/snapshot.js';
import {
  ManagementApiClient,
  NO_QUEUE_STATE,
  PassiveDeclareReader,
  QUEUE_STALE_AFTER_MS_MIN,
  QueueDepthReader,
  queueRead,
  queueReadFailed,
  queueView,
  vhostOf,
  watchedQueues,
  type QueueReading,
  type QueueState,
} from '../watch/queue-depths.js';
import {
  DEFAULT_STALENESS,
  emptyStats,
  processKeyOf,
  receiveInvalid,
  receiveSnapshot,
  resumeHearing,
  stopHearing,
  tick,
  viewOf,
  type StalenessOptions,
  type StatsState,
  type StatsView,
  type WorkerEntry,
} from '../watch/stats-aggregator.js';
import { rebindingStatsQueue, snapshotHandler } from '../watch/stats-subscriber.js';

/**
 * What the dashboard (`GET /`) shows of the workers and queues: the `<ns>.stats` snapshots added up
 * by the same aggregator as `watch`, sampled once per tick into a few minutes of history, and the
 * queue depths, read only while a dashboard is open. One instance per server, shared by every
 * dashboard connection, so ten open browsers cost one stats subscription.
 */

/** One throughput and latency sample (one per tick). Rates from counter deltas between two ticks. */
export interface DashboardPoint {
  readonly atMs: number;
  readonly appliedPerS: number;
  readonly rejectedPerS: number;
  readonly retriedPerS: number;
  /** Sum of the live workers' own last-second rates (the table's total). */
  readonly processedPerS: number;
  /** End-to-end latency over the live workers' windows (merged histograms), null without traffic. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
}

/** The frame pushed to every dashboard once per tick. */
export interface DashboardFrame {
  readonly atMs: number;
  readonly point: DashboardPoint;
  readonly workers: readonly Record<string, unknown>[];
  readonly totals: StatsView['totals'];
  readonly rejectReasons: StatsView['rejectReasons'];
  readonly invalidSnapshots: number;
  /** The last reading; its rates are null while it is stale. */
  readonly queues: QueueReading | null;
  /** Why the latest read failed; null when it succeeded. */
  readonly queueError: string | null;
  /** The reading is old (the latest read failed, or none succeeded for a while): not current. */
  readonly queuesStale: boolean;
  /** How old the reading is, in ms; null without one. */
  readonly queuesAgeMs: number | null;
  readonly broker: { readonly state: 'connecting' | 'connected' | 'reconnecting'; readonly detail: string | null };
}

export interface DashboardStatsOptions {
  readonly amqpUrl: string;
  readonly rabbitmqApiUrl: string;
  readonly topology: Topology;
  readonly clientName: string;
  readonly tickMs: number;
  readonly historyLength: number;
  readonly staleness: StalenessOptions;
}

export const DASHBOARD_DEFAULTS = { tickMs: 1_000, historyLength: 300, staleness: DEFAULT_STALENESS } as const;

/** Applied, rejected and retried counts of one worker process, for deltas between ticks. */
interface Counters {
  readonly key: string;
  readonly applied: number;
  readonly rejected: number;
  readonly retried: number;
}

function countersOf(entry: WorkerEntry): Counters {
  const s = entry.snapshot;
  return {
    key: processKeyOf(s),
    applied: s.counts.applied,
    rejected: Object.values(s.counts.rejected).reduce((a, b) => a + b, 0),
    retried: s.counts.retried,
  };
}

/**
 * Per-second rates between two readings of every worker's counters. A worker seen for the first
 * time (or restarted: another pid or start time) contributes nothing to this tick, rather than its
 * whole lifetime's count in one second.
 */
export function ratesBetween(
  before: ReadonlyMap<string, Counters>,
  after: ReadonlyMap<string, Counters>,
  elapsedMs: number,
): { appliedPerS: number; rejectedPerS: number; retriedPerS: number } {
  let applied = 0;
  let rejected = 0;
  let retried = 0;
  for (const [id, now] of after) {
    const then = before.get(id);
    if (!then || then.key !== now.key) continue;
    applied += Math.max(0, now.applied - then.applied);
    rejected += Math.max(0, now.rejected - then.rejected);
    retried += Math.max(0, now.retried - then.retried);
  }
  const perS = (n: number) => (elapsedMs > 0 ? round1((n * 1000) / elapsedMs) : 0);
  return { appliedPerS: perS(applied), rejectedPerS: perS(rejected), retriedPerS: perS(retried) };
}

/** A worker row as sent to the browser: histograms (base64 blobs) and the sparkline history left out. */
function rowJson(row: StatsView['rows'][number]): Record<string, unknown> {
  const { histogram: _e2e, ...endToEndMs } = row.endToEndMs;
  const { histogram: _proc, ...processingMs } = row.processingMs;
  const { history: _history, ...rest } = row;
  return { ...rest, endToEndMs, processingMs };
}

export class DashboardStats {
  private stats: StatsState = emptyStats();
  private readonly connection: ManagedConnection;
  private readonly api: ManagementApiClient;
  private reader: QueueDepthReader;
  private readonly passive: PassiveDeclareReader;
  /** The stats queue, bound again every 2 s (see rebindingStatsQueue). */
  private readonly subscription: ReturnType<typeof rebindingStatsQueue>;
  private readonly history: DashboardPoint[] = [];
  private readonly listeners = new Set<(frame: DashboardFrame) => void>();
  private counters = new Map<string, Counters>();
  private lastTickMs: number | null = null;
  private queues: QueueState = NO_QUEUE_STATE;
  private reading = false;
  private broker: DashboardFrame['broker'] = { state: 'connecting', detail: null };
  private timer: NodeJS.Timeout | null = null;
  private latest: DashboardFrame | null = null;

  constructor(
    private readonly options: DashboardStatsOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    const exchange = options.topology.statsExchange;
    this.connection = new ManagedConnection({
      url: options.amqpUrl,
      clientName: options.clientName,
      log,
      onConnect: () => (this.broker = { state: 'connected', detail: null }),
      onDisconnect: (err) => {
        // No snapshot can arrive until the consumer is subscribed again: workers must not age meanwhile.
        this.stats = stopHearing(this.stats, this.now());
        this.broker = { state: 'reconnecting', detail: err.message.slice(0, 80) };
      },
    });
    // As in `watch`: a namespace not set up yet has no stats exchange (404); look again every 2 s.
    const channel = this.connection.channel({
      name: 'dashboard stats channel',
      retryDelay: { initialMs: 2_000, maxMs: 2_000 },
      onFailure: (err) => {
        this.stats = stopHearing(this.stats, this.now());
        if ((err as { code?: unknown }).code !== 404) return 'unexpected';
        this.broker = { state: 'connected', detail: `no ${exchange} yet: txsim setup?` };
        return 'expected';
      },
    });
    const onSnapshot = snapshotHandler({
      onSnapshot: (snapshot: WorkerSnapshot, receivedAtMs: number) =>
        (this.stats = receiveSnapshot(this.stats, snapshot, receivedAtMs, this.options.staleness)),
      onInvalid: () => (this.stats = receiveInvalid(this.stats)),
    });
    // The queue is bound again every 2 s, as in `watch`: a reset of the namespace must not leave the dashboard deaf.
    this.subscription = rebindingStatsQueue(channel, exchange, log);
    channel.consume(this.subscription.queue, ({ msg }) => onSnapshot(msg), {
      noAck: true,
      label: 'dashboard stats subscriber',
      onSubscribed: () => (this.stats = resumeHearing(this.stats, this.now())),
    });
    this.api = new ManagementApiClient(options.rabbitmqApiUrl, vhostOf(options.amqpUrl));
    this.passive = new PassiveDeclareReader(this.connection);
    this.reader = new QueueDepthReader(watchedQueues(options.topology), this.api, this.passive);
  }

  /**
   * The namespace's topology once its partition count is read (serve reads it from the database
   * after this object exists): an ordered namespace's backlog is in its partition queues.
   */
  useTopology(topology: Topology): void {
    this.reader = new QueueDepthReader(watchedQueues(topology), this.api, this.passive);
  }

  /** Connects (throws ServiceUnavailableError when the broker is unreachable) and starts ticking. */
  async start(): Promise<void> {
    await this.connection.start();
    this.timer = setInterval(() => this.tick(), this.options.tickMs);
    this.timer.unref();
  }

  /** The samples kept so far, oldest first (sent to a dashboard when it connects). */
  points(): readonly DashboardPoint[] {
    return this.history;
  }

  /** The last frame (null before the first tick). */
  current(): DashboardFrame | null {
    return this.latest;
  }

  /** Calls `listener` with every new frame; returns the unsubscribe. */
  subscribe(listener: (frame: DashboardFrame) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One tick: samples the aggregator, derives the rates, reads the queues (while someone looks). */
  tick(): DashboardFrame {
    const nowMs = this.now();
    this.stats = tick(this.stats, nowMs, this.options.staleness);
    const view = viewOf(this.stats, nowMs, 'id', this.options.staleness);
    const counters = new Map(Object.entries(this.stats.workers).map(([id, entry]) => [id, countersOf(entry)]));
    const rates = ratesBetween(this.counters, counters, this.lastTickMs === null ? 0 : nowMs - this.lastTickMs);
    this.counters = counters;
    this.lastTickMs = nowMs;
    const latency = view.totals.endToEndMs;
    const point: DashboardPoint = {
      atMs: nowMs,
      ...rates,
      processedPerS: view.totals.ratePerS,
      p50Ms: latency.count > 0 ? latency.p50 : null,
      p99Ms: latency.count > 0 ? latency.p99 : null,
      maxMs: latency.count > 0 ? latency.max : null,
    };
    this.history.push(point);
    if (this.history.length > this.options.historyLength) this.history.splice(0, this.history.length - this.options.historyLength);
    if (this.listeners.size > 0) this.readQueues();
    const frame: DashboardFrame = {
      atMs: nowMs,
      point,
      workers: view.rows.map(rowJson),
      totals: view.totals,
      rejectReasons: view.rejectReasons,
      invalidSnapshots: view.invalidCount,
      // Read every tick while someone looks: three ticks without a new reading is stale too.
      ...queueView(this.queues, nowMs, Math.max(QUEUE_STALE_AFTER_MS_MIN, 3 * this.options.tickMs)),
      broker: this.broker,
    };
    this.latest = frame;
    for (const listener of this.listeners) listener(frame);
    return frame;
  }

  /** One read at a time: a slow management API must not pile requests up. */
  private readQueues(): void {
    if (this.reading) return;
    this.reading = true;
    this.reader
      .read()
      .then((reading) => {
        this.queues = queueRead(reading, this.now());
      })
      .catch((err: unknown) => {
        // The last reading stays, shown stale with its age and this error, never as current.
        this.queues = queueReadFailed(this.queues, (err as Error).message);
        this.log.debug({ err: (err as Error).message }, 'dashboard: queue depths unavailable');
      })
      .finally(() => (this.reading = false));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.subscription.stop();
    this.listeners.clear();
    await this.passive.close();
    await this.api.close();
    await this.connection.close();
  }
}
