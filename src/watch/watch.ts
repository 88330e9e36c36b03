import type { ChannelModel } from 'amqplib';
import { connectOnce } from '../amqp/connect.js';
import { ManagedConnection } from '../amqp/managed-channel.js';
import { topologyOf } from '../amqp/topology.js';
import { describeEndpoints, type Config } from '../config/config.js';
import { createDatabase } from '../db/knex.js';
import { readPartitionCount } from '../db/partition-leases.js';
import { NotFoundError } from '../errors.js';
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
  type QueueDepth,
  type QueueReading,
  type QueueState,
} from './queue-depths.js';
import type { Logger } from '../log.js';
import {
  emptyStats,
  receiveInvalid,
  receiveSnapshot,
  resumeHearing,
  stopHearing,
  tick,
  viewOf,
  type StalenessOptions,
  type StatsState,
  type WorkerRow,
} from './stats-aggregator.js';
import type { WorkerSnapshot } from '../stats/snapshot.js';
import { rebindingStatsQueue, snapshotHandler, subscribeStats, type StatsListener } from './stats-subscriber.js';
import type { WatchData, WatchFeed } from '../ui/watch-state.js';
import { hopLatencyText, stagesText } from '../ui/text.js';
import type { CommandContext } from '../commands/context.js';
import { table, toJson } from '../commands/format.js';

export interface WatchOptions {
  /** Print one snapshot (plain text) and exit. */
  readonly once: boolean;
  /** Print one snapshot as a JSON document and exit. */
  readonly json: boolean;
  /** Refresh period of the screen, the plain lines and the queue depths. */
  readonly intervalMs: number;
  /** With --once/--json: how long to listen for snapshots first (workers send one per second). */
  readonly listenMs: number;
  readonly staleness: StalenessOptions;
}

export interface WatchIo {
  /** stdout is a terminal: draw the TUI (unless --once/--json). */
  readonly tty: boolean;
  /** Aborts a running watch (SIGINT/SIGTERM). */
  readonly signal: AbortSignal;
}

/**
 * The state behind the screen: snapshots and queue readings go in, one `WatchData` comes out per
 * refresh. It re-renders once per interval rather than once per snapshot, so ten workers cost the
 * same redraw rate as one.
 */
export class WatchFeedStore implements WatchFeed {
  private stats: StatsState = emptyStats();
  private queues: QueueState = NO_QUEUE_STATE;
  private broker: WatchData['broker'] = { state: 'connecting', detail: null };
  private data: WatchData;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly staleness: StalenessOptions,
    private readonly now: () => number = Date.now,
    /** A queue reading not renewed for this long is shown stale even without an error (a hung read). */
    private readonly queueStaleAfterMs: number = QUEUE_STALE_AFTER_MS_MIN,
  ) {
    this.data = this.build();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  getData(): WatchData {
    return this.data;
  }

  onSnapshot = (snapshot: WorkerSnapshot, receivedAtMs: number): void => {
    this.stats = receiveSnapshot(this.stats, snapshot, receivedAtMs, this.staleness);
  };

  onInvalid = (): void => {
    this.stats = receiveInvalid(this.stats);
  };

  /**
   * The outcome of one queue read: a reading, or the error of a failed read. A failed read keeps the
   * last reading, shown stale with its age and this error, never as current.
   */
  setQueues(reading: QueueReading | null, error: string | null): void {
    if (reading) this.queues = queueRead(reading, this.now());
    else this.queues = queueReadFailed(this.queues, error ?? 'no reading');
  }

  setBroker(state: WatchData['broker']['state'], detail: string | null = null): void {
    this.broker = { state, detail };
    this.publish();
  }

  /**
   * The stats subscription is down (connection lost, channel failed): snapshots cannot arrive, so
   * workers stop ageing and show as unheard until `hearing()`.
   */
  deaf(): void {
    this.stats = stopHearing(this.stats, this.now());
  }

  /** Subscribed again: workers age again, the time deaf not counted against them. */
  hearing(): void {
    this.stats = resumeHearing(this.stats, this.now());
  }

  /** One refresh: samples the throughput history and publishes a new frame. */
  refresh(): WatchData {
    this.stats = tick(this.stats, this.now(), this.staleness);
    return this.publish();
  }

  private publish(): WatchData {
    this.data = this.build();
    for (const listener of this.listeners) listener();
    return this.data;
  }

  private build(): WatchData {
    const nowMs = this.now();
    return {
      stats: viewOf(this.stats, nowMs, 'id', this.staleness),
      ...queueView(this.queues, nowMs, this.queueStaleAfterMs),
      broker: this.broker,
    };
  }
}

/**
 * `txsim watch`: the TUI on a terminal; plain logfmt lines every interval when stdout is not a
 * terminal; one snapshot with --once (text) or --json. Never logs to stdout: the TUI silences the
 * logger entirely (stderr on the same terminal would tear frames) and shows problems on screen.
 */
export async function handleWatch(ctx: CommandContext, options: WatchOptions, io: WatchIo): Promise<WatchData | void> {
  if (options.once || options.json) return watchOnce(ctx, options);
  const tui = io.tty;
  const log = tui ? ctx.log.child({}, { level: 'silent' }) : ctx.log;
  const { config } = ctx;
  const topology = topologyOf(config, await partitionCountForWatch(config, log));
  const store = new WatchFeedStore(options.staleness, Date.now, Math.max(QUEUE_STALE_AFTER_MS_MIN, 3 * options.intervalMs));
  const api = new ManagementApiClient(config.rabbitmqApiUrl, vhostOf(config.amqpUrl));
  const { connection, stopChecking } = followStats(config.amqpUrl, topology.statsExchange, store, log);
  await connection.start();
  const passive = new PassiveDeclareReader(connection);
  const reader = new QueueDepthReader(watchedQueues(topology), api, passive);
  const stopReading = readQueuesEvery(reader, store, options.intervalMs, log);
  const refresher = setInterval(() => {
    const data = store.refresh();
    if (!tui) ctx.out(plainLines(data, new Date(data.stats.atMs)).join('\n'));
  }, options.intervalMs);
  try {
    if (tui) {
      // Ink and React load only here: every other command starts half a second faster without them.
      const [{ render }, { createElement }, { WatchApp }] = await Promise.all([
        import('ink'),
        import('react'),
        import('../ui/WatchApp.js'),
      ]);
      const endpoints = describeEndpoints(config);
      const app = render(
        createElement(WatchApp, {
          feed: store,
          namespace: config.namespace,
          endpoints: { amqp: endpoints.amqp, database: endpoints.database },
          startedAtMs: Date.now(),
        }),
        {
          patchConsole: false,
          exitOnCtrlC: true,
          maxFps: 10,
        },
      );
      const aborted = new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }));
      await Promise.race([app.waitUntilExit(), aborted]);
      app.unmount();
    } else if (!io.signal.aborted) {
      await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
  } finally {
    clearInterval(refresher);
    stopReading();
    stopChecking();
    await passive.close();
    await api.close();
    await connection.close();
  }
}

/**
 * The stats subscription of the live watch: a managed connection (it comes back by itself) with
 * one channel whose consumer re-declares its private queue on every subscribe. `stopChecking` ends
 * the periodic bind (`rebindingStatsQueue`); call it before closing the connection.
 */
function followStats(
  amqpUrl: string,
  exchange: string,
  store: WatchFeedStore,
  log: Logger,
): { connection: ManagedConnection; stopChecking: () => void } {
  const connection = new ManagedConnection({
    url: amqpUrl,
    log,
    clientName: 'txsim watch',
    initialMaxRetries: 3,
    onConnect: () => store.setBroker('connected'),
    onDisconnect: (err) => {
      // Nothing can arrive until the stats consumer is subscribed again: workers must not age meanwhile.
      store.deaf();
      store.setBroker('reconnecting', err.message.slice(0, 60));
    },
  });
  // A private queue is declared for every subscribe (its channel takes it along when it goes). A
  // namespace not set up yet has no stats exchange: the 404 closes the channel; say so on screen
  // and look again every 2 s on a new one.
  const stats = connection.channel({
    name: 'stats channel',
    retryDelay: { initialMs: 2_000, maxMs: 2_000 },
    onFailure: (err) => {
      // The channel (and its consumer) is gone; it is set up again and `onSubscribed` says when.
      store.deaf();
      if (!isNotFound(err)) return 'unexpected';
      store.setBroker('connected', `no ${exchange} yet: txsim setup?`);
      return 'expected';
    },
  });
  const onSnapshot = snapshotHandler(statsListener(store, log));
  // The queue is bound again every 2 s: a reset of the namespace must not leave watch listening to nothing.
  const subscription = rebindingStatsQueue(stats, exchange, log);
  stats.consume(subscription.queue, ({ msg }) => onSnapshot(msg), {
    noAck: true,
    label: 'stats subscriber',
    onSubscribed: () => {
      store.hearing();
      store.setBroker('connected');
    },
  });
  return { connection, stopChecking: subscription.stop };
}

/** The broker's 404 on a passive declare: the exchange or queue does not exist. */
function isNotFound(err: unknown): boolean {
  return (err as { code?: unknown }).code === 404;
}

/** Where snapshots go: into the store; invalid ones are counted and logged at debug. */
function statsListener(store: WatchFeedStore, log: Logger): StatsListener {
  return {
    onSnapshot: store.onSnapshot,
    onInvalid: (error) => {
      store.onInvalid();
      log.debug({ error }, 'invalid stats snapshot ignored');
    },
  };
}

/**
 * --once: one plain subscription for the short listen. A cancel (the private queue deleted under
 * us) is not worth a new subscription in that second; the snapshot then shows what arrived.
 */
async function subscribeOnce(model: ChannelModel, exchange: string, store: WatchFeedStore, log: Logger): Promise<void> {
  const channel = await model.createChannel();
  channel.on('error', (err: Error) => {
    if (!isNotFound(err)) log.warn({ err: err.message }, 'stats channel error');
  });
  await subscribeStats(channel, exchange, statsListener(store, log));
}

/** How long watch waits for the database's answer on the partition count before showing the namespace as unordered. */
const PARTITIONS_READ_TIMEOUT_MS = 3_000;

/**
 * The partition count `setup --partitions` recorded (0: unordered), so an ordered namespace's
 * backlog shows in its partition queues, not as an empty process queue. Watch needs nothing else
 * from the database: one that does not answer costs the partition rows and a warning, not the view.
 */
async function partitionCountForWatch(config: Config, log: Logger): Promise<number> {
  const db = createDatabase({ databaseUrl: config.databaseUrl, databaseName: config.databaseName, poolMax: 1 });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PARTITIONS_READ_TIMEOUT_MS} ms`)), PARTITIONS_READ_TIMEOUT_MS);
    });
    return await Promise.race([readPartitionCount(db, config.namespace), timeout]);
  } catch (err) {
    // No database for the namespace: it was never set up, so it is not ordered (the missing exchange says the rest).
    if ((err as { code?: string }).code === 'ER_BAD_DB_ERROR') return 0;
    log.warn({ err: (err as Error).message }, 'could not read the partition count from the database; partition queues are not shown');
    return 0;
  } finally {
    clearTimeout(timer);
    void db.destroy().catch(() => {});
  }
}

/** Reads queue depths every interval, one read at a time (a slow API must not pile requests up). */
function readQueuesEvery(reader: QueueDepthReader, store: WatchFeedStore, intervalMs: number, log: Logger): () => void {
  let busy = false;
  const read = () => {
    if (busy) return;
    busy = true;
    reader
      .read()
      .then((reading) => store.setQueues(reading, null))
      .catch((err: unknown) => {
        store.setQueues(null, (err as Error).message);
        log.debug({ err: (err as Error).message }, 'queue depths unavailable');
      })
      .finally(() => (busy = false));
  };
  read();
  const timer = setInterval(read, intervalMs);
  return () => clearInterval(timer);
}

/** --once / --json: listen a little longer than one snapshot interval, read the queues once, print. */
async function watchOnce(ctx: CommandContext, options: WatchOptions): Promise<WatchData> {
  const { config, log } = ctx;
  const topology = topologyOf(config, await partitionCountForWatch(config, log));
  const store = new WatchFeedStore(options.staleness);
  const connection = await connectOnce(config.amqpUrl, log, 'txsim watch --once');
  const api = new ManagementApiClient(config.rabbitmqApiUrl, vhostOf(config.amqpUrl));
  const passive = new PassiveDeclareReader(connection);
  try {
    store.setBroker('connected');
    try {
      await subscribeOnce(connection, topology.statsExchange, store, log);
    } catch (err) {
      if (isNotFound(err))
        throw new NotFoundError(`exchange ${topology.statsExchange} does not exist (wrong --namespace, or run txsim setup)`);
      throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, options.listenMs));
    try {
      store.setQueues(await new QueueDepthReader(watchedQueues(topology), api, passive).read(), null);
    } catch (err) {
      store.setQueues(null, (err as Error).message);
    }
  } finally {
    await passive.close();
    await api.close();
    await connection.close().catch(() => {});
  }
  const data = store.refresh();
  if (options.json) ctx.out(toJson(jsonDocument(config, data)));
  else printOnce(ctx, config, data);
  return data;
}

/** The `--json` document: the same numbers as the screen, histograms left out. */
export function jsonDocument(config: Config, data: WatchData) {
  const endpoints = describeEndpoints(config);
  // An empty latency window has no percentiles: null, not 0 (the JSON convention for "no data").
  const latency = <L extends { count: number; p50: number; p99: number; max: number; p90?: number; histogram?: string }>(l: L) => {
    const { histogram: _histogram, ...rest } = l;
    if (l.count > 0) return rest;
    return { ...rest, p50: null, p99: null, max: null, ...(l.p90 === undefined ? {} : { p90: null }) };
  };
  const hops = <L extends Parameters<typeof latency>[0]>(byHop: Readonly<Partial<Record<string, L>>>) =>
    Object.fromEntries(Object.entries(byHop).map(([hop, l]) => [hop, latency(l!)]));
  const stripHistograms = (r: WorkerRow) => ({
    ...r,
    endToEndMs: latency(r.endToEndMs),
    processingMs: latency(r.processingMs),
    hopsMs: hops(r.hopsMs),
  });
  return {
    at: new Date(data.stats.atMs).toISOString(),
    namespace: config.namespace,
    endpoints,
    workers: data.stats.rows.map(stripHistograms),
    totals: {
      ...data.stats.totals,
      endToEndMs: latency(data.stats.totals.endToEndMs),
      processingMs: latency(data.stats.totals.processingMs),
      hopsMs: hops(data.stats.totals.hopsMs),
    },
    rejectReasons: data.stats.rejectReasons,
    stages: data.stats.stages,
    invalidSnapshots: data.stats.invalidCount,
    queues: data.queues,
    queueError: data.queueError,
    queuesStale: data.queuesStale ?? false,
    queuesAgeMs: data.queuesAgeMs ?? null,
  };
}

function printOnce(ctx: CommandContext, config: Config, data: WatchData): void {
  const endpoints = describeEndpoints(config);
  const { rows, totals } = data.stats;
  const ms = (l: { p50: number; p99: number; count: number }) => (l.count === 0 ? ['-', '-'] : [l.p50, l.p99]);
  ctx.out(`txsim watch ${new Date(data.stats.atMs).toISOString()}  namespace ${config.namespace}`);
  ctx.out(`amqp ${endpoints.amqp}  db ${endpoints.database}`);
  ctx.out(
    `workers: ${totals.workers} (${totals.byStatus.active} active, ${totals.byStatus.idle} idle, ${totals.byStatus.stale} stale, ${totals.byStatus.gone} gone)`,
  );
  ctx.out('');
  ctx.out(
    table(
      [
        'worker',
        'status',
        'tx/s',
        '10s tx/s',
        'applied',
        'rejected',
        'retried',
        'parked',
        'dup',
        'in-flight',
        'p50 ms',
        'p99 ms',
        'seen s',
      ],
      [
        ...rows.map((r) => [
          r.workerId,
          r.unheard ? `? (${r.status})` : r.status,
          r.ratePerS ?? '-',
          r.rate10sPerS ?? '-',
          r.applied,
          r.rejected,
          r.retried,
          r.parked,
          r.duplicates,
          r.inFlight === null ? '-' : `${r.inFlight}/${r.prefetchCount}`,
          ...ms(r.endToEndMs),
          (r.lastSeenAgoMs / 1000).toFixed(1),
        ]),
        [
          'total',
          `${totals.byStatus.active + totals.byStatus.idle}/${totals.workers}`,
          totals.ratePerS,
          totals.rate10sPerS,
          totals.applied,
          totals.rejected,
          totals.retried,
          totals.parked,
          totals.duplicates,
          totals.inFlight,
          ...ms(totals.endToEndMs),
          '',
        ],
      ],
    ),
  );
  ctx.out('');
  if (data.queues) {
    const q = data.queues;
    const source =
      q.source === 'management-api'
        ? 'source: management API'
        : `source: AMQP passive declare; management API unavailable: ${q.apiError ?? 'unknown'}`;
    ctx.out(
      data.queuesStale
        ? `queues (last read ${((data.queuesAgeMs ?? 0) / 1000).toFixed(0)} s ago${data.queueError ? `: ${data.queueError}` : ''}; ${source})`
        : `queues (${source})`,
    );
    ctx.out(
      table(
        ['queue', 'ready', 'unacked', 'in/s', 'out/s', 'consumers'],
        q.queues.map((d) => [
          d.exists ? d.name : `${d.name} (missing)`,
          d.ready ?? '-',
          d.unacked ?? '-',
          d.inPerS ?? '-',
          d.outPerS ?? '-',
          d.consumers ?? '-',
        ]),
      ),
    );
  } else {
    ctx.out(`queues: unavailable (${data.queueError ?? 'unknown'})`);
  }
  ctx.out('');
  ctx.out(`top rejects: ${data.stats.rejectReasons.map((r) => `${r.reason} ${r.count}`).join(', ') || 'none'}`);
  ctx.out(`hops p50/p99 ms: ${hopLatencyText(totals.hopsMs) || 'no messages'}`);
  if (data.stats.stages.length > 0) ctx.out(`stages (in · p50/p99 · ✗declined !failed): ${stagesText(data.stats.stages)}`);
}

/**
 * Plain output for pipes and logs: one logfmt line for the totals and queues, one per worker.
 * Stable keys, so `grep kind=total | …` scripts keep working.
 */
export function plainLines(data: WatchData, at: Date): string[] {
  const ts = at.toISOString();
  const t = data.stats.totals;
  const lat = (l: { count: number; p50: number; p99: number }) => (l.count === 0 ? 'p50_ms=- p99_ms=-' : `p50_ms=${l.p50} p99_ms=${l.p99}`);
  const hopFields = Object.entries(t.hopsMs)
    .filter(([, l]) => l.count > 0)
    .map(([hop, l]) => ` ${hop}_p50_ms=${l.p50} ${hop}_p99_ms=${l.p99}`)
    .join('');
  // A retry step by its delay (retry_250ms), a partition by its number (partition_p3): stable keys.
  const keyOf = (q: QueueDepth) =>
    q.role === 'retry' || q.role === 'partition' ? `${q.role}_${q.name.slice(q.name.lastIndexOf('.') + 1)}` : q.role;
  // A stale reading's depths are left out: a script reading `process=` must not take then for now.
  const queueError = data.queueError ? ` queue_error=${JSON.stringify(data.queueError)}` : '';
  const queues = !data.queues
    ? `queues=unavailable${queueError}`
    : data.queuesStale
      ? `queues=stale queue_age_ms=${data.queuesAgeMs ?? '-'}${queueError}`
      : `queues=${data.queues.source} ${data.queues.queues.map((q) => `${keyOf(q)}=${q.ready ?? '-'}/${q.unacked ?? '-'}`).join(' ')}`;
  const lines = [
    `ts=${ts} kind=total workers=${t.workers} active=${t.byStatus.active} idle=${t.byStatus.idle} stale=${t.byStatus.stale} gone=${t.byStatus.gone} tx_per_s=${t.unheard ? '-' : t.ratePerS} applied=${t.applied} rejected=${t.rejected} retried=${t.retried} parked=${t.parked} ${lat(t.endToEndMs)}${hopFields} broker=${data.broker.state}${data.broker.detail ? ` broker_detail=${JSON.stringify(data.broker.detail)}` : ''} ${queues}`,
  ];
  for (const r of data.stats.rows) {
    lines.push(
      // While watch cannot hear the workers the status is unknown; last_status says what it was.
      `ts=${ts} kind=worker id=${JSON.stringify(r.workerId)} status=${r.unheard ? `unknown last_status=${r.status}` : r.status} tx_per_s=${r.ratePerS ?? '-'} applied=${r.applied} rejected=${r.rejected} retried=${r.retried} parked=${r.parked} duplicates=${r.duplicates} in_flight=${r.inFlight === null ? '-' : `${r.inFlight}/${r.prefetchCount}`} ${lat(r.endToEndMs)} seen_ms=${r.lastSeenAgoMs}${r.paused ? ' paused=true' : ''}${r.blocked ? ' blocked=true' : ''}`,
    );
  }
  return lines;
}
