import { hostname } from 'node:os';
import { Option, type Command } from 'commander';
import { topologyOf } from '../amqp/topology.js';
import { DEFAULT_RELAY_OPTIONS, OutboxRelay } from '../accounting/outbox-relay.js';
import { Worker, workerDepsFor, type WorkerOptions } from '../worker/worker.js';
import { parseDurationFlag, parseIntFlag } from '../config/parse.js';
import { EXPIRY_INTERVAL_DEFAULT_MS, HoldExpiry } from '../worker/hold-expiry.js';
import { stagesOptionsFrom } from '../worker/stages.js';
import { checkDatabase, createDatabase } from '../db/knex.js';
import { readPartitionCount } from '../db/partition-leases.js';
import { flushLogger } from '../log.js';
import { StatsPublisher } from '../stats/stats-publisher.js';
import { startMetricsServer, type MetricsServerOptions, type RunningMetricsServer } from '../stats/metrics-server.js';
import { RELAY_EVENTS_OPTION, relayEventsPerMessageFrom } from './relay-flags.js';
import { contextFor, shutdownSignal, type CommandContext } from './context.js';
import { METRICS_HOST_OPTION, METRICS_PORT_OPTION, metricsOptionsFrom } from './metrics-flags.js';

export interface WorkerCommandOptions extends Omit<WorkerOptions, 'amqpUrl' | 'topology'> {
  readonly lockWaitTimeoutS: number;
  /** Run the outbox relay in this process (publishes committed accounting events; safe in every replica). Default true. */
  readonly relay?: boolean;
  /** Most accounting events in one message the relay publishes (`--relay-events-per-message`; 1 = one per event). Default 100. */
  readonly relayEventsPerMessageMax?: number;
  /** Serve Prometheus metrics there (`--metrics-port`); null/absent = off. */
  readonly metrics?: MetricsServerOptions | null;
  /** How often this worker expires due card holds (`--expire-every`); null = not here (`--no-expiry`). Default 1 s. */
  readonly expiryIntervalMs?: number | null;
}

/**
 * Runs one worker until `signal` aborts: first abort shuts down gracefully (stop consuming, finish
 * in-flight within the deadline, close). Resolves when everything is closed.
 */
export async function handleWorker(ctx: CommandContext, options: WorkerCommandOptions, signal: AbortSignal): Promise<void> {
  const { config } = ctx;
  const log = ctx.log.child({ workerId: options.workerId });
  const db = createDatabase(
    {
      databaseUrl: config.databaseUrl,
      databaseName: config.databaseName,
      // + the relay's connection, + one for the hold sweeper, + one spare.
      poolMax: options.transactionsMax + 3,
      lockWaitTimeoutS: options.lockWaitTimeoutS,
      readCommitted: true,
      multipleStatements: true,
    },
    { onNodeChange: ({ from, to, fault, detail }) => log.warn({ from, to, detail }, `database node ${fault}; moved to the next`) },
  );
  // The namespace's mode (setup --partitions) decides the topology: read before anything declares it.
  let partitions: number;
  try {
    await checkDatabase(db, config.databaseUrl, config.databaseName);
    partitions = await readPartitionCount(db, config.namespace);
  } catch (err) {
    await db.destroy().catch(() => {});
    await flushLogger(log);
    throw err;
  }
  const topology = topologyOf(config, partitions);
  if (partitions > 0) log.info({ partitions }, 'ordered namespace: consuming leased partitions, one batch at a time');
  const worker = new Worker(
    {
      ...options,
      // Two batches at once could commit one account's messages out of order.
      ...(partitions > 0 ? { transactionsMax: 1 } : {}),
      amqpUrl: config.amqpUrl,
      topology,
      connectTimeoutMs: config.connectTimeoutMs,
    },
    workerDepsFor(db, config.namespace),
    log,
  );
  let relay: OutboxRelay | null = null;
  let expiry: HoldExpiry | null = null;
  let stats: StatsPublisher | null = null;
  let metricsServer: RunningMetricsServer | null = null;
  try {
    if (options.metrics) {
      // prom-client is loaded only when asked for: every other run of the CLI starts without it.
      const { createMetricsRegistry, exportWorkerMetrics } = await import('../stats/prometheus.js');
      const registry = createMetricsRegistry('worker', { worker_id: options.workerId });
      exportWorkerMetrics(registry, {
        metrics: worker.metrics,
        connected: () => worker.connected,
        relay: options.relay === false ? null : () => relay?.metrics ?? null,
        holdExpiry: options.expiryIntervalMs === null ? null : () => expiry?.counts ?? null,
      });
      metricsServer = await startMetricsServer(registry, options.metrics, log);
    }
    // A SIGINT while waiting for the broker ends the wait at once (start resolves false).
    if (!signal.aborted) await worker.start(signal);
    if (!signal.aborted) {
      // One snapshot a second on <ns>.stats for `txsim watch`; never fails the worker.
      stats = new StatsPublisher(
        {
          amqpUrl: config.amqpUrl,
          exchange: topology.statsExchange,
          identity: { workerId: options.workerId, pid: process.pid, host: hostname(), prefetchCount: options.prefetchCount },
        },
        worker.metrics,
        log,
      );
      await stats.start(signal);
    }
    if (!signal.aborted && options.relay !== false) {
      // No time limit: the worker is connected, so the broker was there a moment ago; a blink now
      // is an outage of a running worker (reconnect), not a broker missing at start. SIGINT ends the wait.
      relay = new OutboxRelay(
        {
          db,
          amqpUrl: config.amqpUrl,
          topology,
          log,
          relayId: options.workerId,
          connectTimeoutMs: Number.POSITIVE_INFINITY,
          hops: worker.metrics.hops,
        },
        { ...DEFAULT_RELAY_OPTIONS, eventsPerMessageMax: options.relayEventsPerMessageMax ?? DEFAULT_RELAY_OPTIONS.eventsPerMessageMax },
      );
      await relay.start(signal);
    }
    const expiryIntervalMs = options.expiryIntervalMs === undefined ? EXPIRY_INTERVAL_DEFAULT_MS : options.expiryIntervalMs;
    if (!signal.aborted && expiryIntervalMs !== null) {
      expiry = new HoldExpiry(db, { intervalMs: expiryIntervalMs }, log);
      expiry.start();
    }
    if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    log.info('shutting down');
  } finally {
    await expiry?.close();
    await worker.close();
    // After the worker, so the last snapshot (marked stopping) carries the final counts.
    await stats?.close();
    // After the worker: events of its last commits are still relayed (or left for another replica).
    await relay?.close();
    await metricsServer?.close();
    await db.destroy().catch(() => {});
    await flushLogger(log);
  }
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run one worker replica: authorize and apply transactions to the ledger (run as many as you like)')
    .option('--id <id>', 'worker id (default: <host>-<pid>)')
    .option('--prefetch <n>', 'unacknowledged messages this worker may hold', '200')
    .option('--batch-size <n>', 'most messages per DB transaction (1 = one commit per message)', '100')
    .option('--batch-wait <ms>', 'how long a partial batch waits for more messages', '5')
    .option('--transactions <n>', 'batches applied at once, each in its own DB transaction', '2')
    .option('--max-attempts <n>', 'attempts at a message failing with system errors before it is parked', '5')
    .option('--lock-wait-timeout <s>', 'innodb_lock_wait_timeout of the worker sessions', '10')
    .option('--shutdown-deadline <ms>', 'how long shutdown waits for in-flight messages', '15000')
    .option(
      '--connect-timeout <s>',
      'how long to wait for RabbitMQ at start before giving up with exit 3 (env TXSIM_CONNECT_TIMEOUT; default 15)',
    )
    .option(
      '--stage <spec>',
      'a simulated processing stage each message walks before it is applied, in order (repeatable): name:min..max(ms|s)[:decline=share][:fail=share], e.g. fraud:5..50ms:decline=0.01',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--stages-file <path>', 'the stages, one spec a line (# comments), instead of --stage')
    .option('--stage-seed <seed>', 'seed of the stage times and decisions (default: txsim)')
    .option(
      '--emit-stage-events',
      "publish each stage start and end to the feed exchange (transient; serve's live feed shows them); off by default",
    )
    .option('--no-relay', 'do not run the outbox relay here (accounting events then wait for a replica that does)')
    .option(...RELAY_EVENTS_OPTION)
    .option('--expire-every <duration>', 'how often this worker expires card holds past their expiresAt (e.g. 500ms, 1s)', '1s')
    .option('--no-expiry', 'do not expire card holds here (another replica must, or holds stay open past expiry)')
    .option(...METRICS_PORT_OPTION)
    .option(...METRICS_HOST_OPTION)
    .addOption(
      new Option('--fault-crash-after-commits <n>', 'fault injection: SIGKILL itself after the n-th commit, before acking').hideHelp(),
    )
    .addHelpText(
      'after',
      '\nExample:\n  $ txsim worker --id w1\n  $ txsim worker --id slow --prefetch 1 --batch-size 1 --log-level debug\n  $ txsim worker --stage fraud:5..50ms:decline=0.01:fail=0.001 --stage issuer:20..200ms --emit-stage-events\n\nGlobal flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help',
    )
    .action(async (opts: Record<string, string | undefined>, command: Command) => {
      const flags = opts as Record<string, unknown>;
      const stages = await stagesOptionsFrom({
        stage: flags.stage as string[] | undefined,
        stagesFile: opts.stagesFile,
        stageSeed: opts.stageSeed,
        emitStageEvents: flags.emitStageEvents === true,
      });
      const options: WorkerCommandOptions = {
        workerId: opts.id ?? `${hostname()}-${process.pid}`,
        prefetchCount: parseIntFlag('--prefetch', opts.prefetch, 200, 1, 65_535),
        batchSizeMax: parseIntFlag('--batch-size', opts.batchSize, 100, 1, 5_000),
        batchWaitMs: parseIntFlag('--batch-wait', opts.batchWait, 5, 0, 10_000),
        transactionsMax: parseIntFlag('--transactions', opts.transactions, 2, 1, 16),
        attemptsMax: parseIntFlag('--max-attempts', opts.maxAttempts, 5, 1, 100),
        lockWaitTimeoutS: parseIntFlag('--lock-wait-timeout', opts.lockWaitTimeout, 10, 1, 3_600),
        shutdownDeadlineMs: parseIntFlag('--shutdown-deadline', opts.shutdownDeadline, 15_000, 0, 600_000),
        relay: (opts as Record<string, unknown>).relay !== false,
        relayEventsPerMessageMax: relayEventsPerMessageFrom(opts),
        metrics: metricsOptionsFrom(opts),
        expiryIntervalMs:
          (opts as Record<string, unknown>).expiry === false
            ? null
            : parseDurationFlag('--expire-every', opts.expireEvery, EXPIRY_INTERVAL_DEFAULT_MS, 50, 3_600_000),
        ...(stages.specs.length > 0 ? { stages } : {}),
        ...(opts.faultCrashAfterCommits
          ? { crashAfterCommits: parseIntFlag('--fault-crash-after-commits', opts.faultCrashAfterCommits, 1, 1) }
          : {}),
      };
      const ctx = contextFor(command);
      await handleWorker(ctx, options, shutdownSignal(ctx));
    });
}
