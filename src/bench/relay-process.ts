import { hostname } from 'node:os';
import { DEFAULT_RELAY_OPTIONS, OutboxRelay } from '../accounting/outbox-relay.js';
import { topologyFor } from '../amqp/topology.js';
import { createDatabase } from '../db/knex.js';
import { createLogger } from '../log.js';
import { StatsPublisher } from '../stats/stats-publisher.js';
import { WorkerMetrics } from '../stats/worker-metrics.js';

/**
 * The outbox relay alone in a process, for `bench --relay-process`: the same OutboxRelay every worker
 * runs by default, with the workers started `--no-relay`, so that the bench can measure the relay's
 * CPU apart from the workers' (a process is the unit /proc measures). It publishes a stats snapshot a
 * second like a worker (its outcome counts stay 0), which carries the relay hop to the bench.
 *
 * Started by src/bench/bench.ts with its settings as JSON in TXSIM_RELAY_PROCESS; tells the parent
 * over IPC when it runs; stops on SIGTERM after relaying what it claimed.
 */
export interface RelayProcessSettings {
  readonly id: string;
  /** Most accounting events in one message (the worker's --relay-events-per-message). */
  readonly eventsPerMessageMax: number;
  readonly amqpUrl: string;
  readonly databaseUrl: string;
  readonly databaseName: string;
  readonly namespace: string;
  readonly retryDelaysMs: readonly number[];
}

async function main(s: RelayProcessSettings): Promise<void> {
  const log = createLogger('warn');
  // READ COMMITTED as the worker's pool: the relay's claim must not take gap locks (see outbox-relay.ts).
  const db = createDatabase({ databaseUrl: s.databaseUrl, databaseName: s.databaseName, poolMax: 2, readCommitted: true });
  const topology = topologyFor(s.namespace, s.retryDelaysMs);
  const metrics = new WorkerMetrics();
  const controller = new AbortController();
  const relay = new OutboxRelay(
    { db, amqpUrl: s.amqpUrl, topology, log, relayId: s.id, connectTimeoutMs: 30_000, hops: metrics.hops },
    { ...DEFAULT_RELAY_OPTIONS, eventsPerMessageMax: s.eventsPerMessageMax },
  );
  const stats = new StatsPublisher(
    {
      amqpUrl: s.amqpUrl,
      exchange: topology.statsExchange,
      identity: { workerId: s.id, pid: process.pid, host: hostname(), prefetchCount: 0 },
    },
    metrics,
    log,
  );
  await stats.start(controller.signal);
  await relay.start(controller.signal);
  process.send?.({ ready: true });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    controller.abort();
    void (async () => {
      await relay.close();
      await stats.close();
      await db.destroy();
      process.exit(0);
    })();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const raw = process.env.TXSIM_RELAY_PROCESS;
if (raw) {
  main(JSON.parse(raw) as RelayProcessSettings).catch((err: unknown) => {
    process.stderr.write(`relay process: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
