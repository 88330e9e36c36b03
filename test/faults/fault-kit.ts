import { execFile } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, startWorker, waitForConsumers as waitForNamespaceConsumers, type WorkerProcess } from '../helpers/txsim.js';

const exec = promisify(execFile);

/**
 * Service control for the fault suite. It drives the local RabbitMQ and MariaDB the way an operator
 * would (rabbitmqctl, mariadb-admin, start-stop-daemon), so it needs root and those tools: CI has both.
 */
export const canControlServices = process.getuid?.() === 0 && (await which('rabbitmqctl')) && (await which('mariadb-admin'));

async function which(cmd: string): Promise<boolean> {
  try {
    await exec('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

export async function sh(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await exec(cmd, args, { timeout: timeoutMs });
  return stdout;
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
}

export const rabbit = {
  async stopApp() {
    await sh('rabbitmqctl', ['stop_app']);
  },
  async startApp() {
    await sh('rabbitmqctl', ['start_app'], 120_000);
    await sh('rabbitmqctl', ['await_startup'], 120_000);
    await waitForPort(5672, 60_000);
  },
  /** Closes every AMQP connection whose client-provided name contains `marker`. Returns how many. */
  async closeConnections(marker: string): Promise<number> {
    const out = await sh('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q']);
    const pids = out
      .split('\n')
      .filter((line) => line.includes(marker))
      .map((line) => line.split('\t')[0]!.trim())
      .filter(Boolean);
    for (const pid of pids) await sh('rabbitmqctl', ['close_connection', pid, 'fault suite']);
    return pids.length;
  },
  async raiseDiskAlarm() {
    // A free-disk limit far above what any disk has raises the alarm at once.
    await sh('rabbitmqctl', ['set_disk_free_limit', '100000GB']);
  },
  async clearDiskAlarm() {
    await sh('rabbitmqctl', ['set_disk_free_limit', '50MB']);
  },
  /** The OS pid of the default node's Erlang VM. */
  async pid(): Promise<number> {
    return Number((await sh('rabbitmqctl', ['eval', 'list_to_integer(os:getpid()).'])).trim());
  },
  /** kill -9 of the server process: no shutdown at all, like a crash or the OOM killer. */
  async killServer(): Promise<number> {
    const pid = await rabbit.pid();
    process.kill(pid, 'SIGKILL');
    return pid;
  },
  /** Starts the whole node again (after killServer), as its package's service would. */
  async startServer() {
    await sh('rabbitmq-server', ['-detached']);
    const deadline = Date.now() + 120_000;
    // await_startup fails at once while the new VM has not registered with epmd yet.
    for (;;) {
      try {
        await sh('rabbitmqctl', ['await_startup', '--timeout', '10'], 20_000);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
    await waitForPort(5672, 60_000);
  },
  /** The memory high watermark as a fraction of RAM (0.4 unless someone changed it). */
  async memoryWatermark(): Promise<number> {
    return Number((await sh('rabbitmqctl', ['eval', 'vm_memory_monitor:get_vm_memory_high_watermark().'])).trim());
  },
  async setMemoryWatermark(fraction: number) {
    await sh('rabbitmqctl', ['set_vm_memory_high_watermark', String(fraction)]);
  },
  /** A watermark far below what the node uses raises the memory alarm at once. */
  async raiseMemoryAlarm() {
    await rabbit.setMemoryWatermark(0.000_01);
  },
  /** Back to `fraction` (RabbitMQ's default unless a scenario read another before raising the alarm). */
  async clearMemoryAlarm(fraction = DEFAULT_MEMORY_WATERMARK) {
    await rabbit.setMemoryWatermark(fraction);
  },
  /**
   * Shortens the consumer timeout for channels opened from now on (they read it when they open) and
   * makes every channel check it each second (RabbitMQ checks on its channel tick, 60 s by default, so
   * a 5 s timeout would otherwise act after up to a minute). Returns what puts both back.
   */
  async shortenConsumerTimeout(timeoutMs: number, tickMs = 1_000): Promise<() => Promise<void>> {
    const read = async (key: string) => (await sh('rabbitmqctl', ['eval', `application:get_env(rabbit, ${key}).`])).trim();
    const set = (key: string, value: string) => sh('rabbitmqctl', ['eval', `application:set_env(rabbit, ${key}, ${value}).`]);
    const before = { timeout: await read('consumer_timeout'), tick: await read('channel_tick_interval') };
    await set('consumer_timeout', String(timeoutMs));
    await set('channel_tick_interval', String(tickMs));
    const restoreOne = async (key: string, was: string) => {
      const value = /^\{ok,(\d+)\}$/.exec(was)?.[1];
      if (value) await set(key, value);
      else await sh('rabbitmqctl', ['eval', `application:unset_env(rabbit, ${key}).`]);
    };
    return async () => {
      await restoreOne('consumer_timeout', before.timeout);
      await restoreOne('channel_tick_interval', before.tick);
    };
  },
  async blockedConnections(): Promise<number> {
    const out = await sh('rabbitmqctl', ['list_connections', 'state', '-q']);
    return out.split('\n').filter((s) => /blocked/.test(s)).length;
  },
};

/** RabbitMQ's default memory high watermark, restored after a scenario lowered it. */
export const DEFAULT_MEMORY_WATERMARK = 0.4;

export const database = {
  /** kill -9 of mariadbd: InnoDB recovers from its redo log at the next start. */
  async kill(): Promise<number> {
    const pid = Number((await sh('pidof', ['mariadbd'])).trim().split(/\s+/)[0]);
    process.kill(pid, 'SIGKILL');
    return pid;
  },
  async stop() {
    await sh('mariadb-admin', ['-uroot', 'shutdown']);
  },
  async start() {
    await sh('start-stop-daemon', ['--start', '--oknodo', '--background', '--exec', '/usr/sbin/mariadbd']);
    await waitForPort(3306, 60_000);
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await sh('mariadb', ['-uroot', '-e', 'SELECT 1']);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  },
};

/** Makes sure both services run again whatever a scenario did (called after each one). */
export async function restoreServices(): Promise<void> {
  try {
    await sh('rabbitmqctl', ['await_startup'], 5_000);
    await waitForPort(5672, 2_000);
  } catch {
    // The app stopped (stop_app) or the whole node is gone (kill -9): start what is missing.
    await rabbit.startApp().catch(() => rabbit.startServer());
  }
  await rabbit.clearDiskAlarm().catch(() => {});
  await rabbit.clearMemoryAlarm().catch(() => {});
  try {
    await sh('mariadb', ['-uroot', '-e', 'SELECT 1'], 5_000);
  } catch {
    await database.start();
  }
}

/** A namespace with accounts and three running workers, ready for a scenario. */
export interface Stage {
  readonly ns: TestNamespace;
  workers: WorkerProcess[];
  /** (Re)starts a worker with the given id, replacing a dead one in `workers`. */
  startWorker(id: string, args?: string[]): WorkerProcess;
  teardown(): Promise<void>;
}

export async function stage(
  name: string,
  options: { accounts?: number; workerArgs?: string[]; workerIds?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<Stage> {
  const ns = await createTestNamespace(`f${name}`, options.env);
  const setup = await runTxsim(['setup'], ns.env);
  expect(setup.code, setup.stderr).toBe(0);
  await ns.seed(options.accounts ?? 50, { openingBalanceMinor: 500_000n });
  const s: Stage = {
    ns,
    workers: [],
    startWorker(id, args = options.workerArgs ?? []) {
      const w = startWorker(`${ns.name}-${id}`, ns.env, args);
      s.workers = [...s.workers.filter((x) => x.id !== w.id), w];
      return w;
    },
    async teardown() {
      await Promise.all(s.workers.map((w) => w.stop()));
      await ns.cleanup();
    },
  };
  const workerIds = options.workerIds ?? ['w1', 'w2', 'w3'];
  for (const id of workerIds) s.startWorker(id);
  // Every worker consumes before a scenario breaks anything: one that has not connected yet when the broker
  // goes away gives up after --connect-timeout (exit 3), as a worker started with no broker should.
  await waitForConsumers(s, workerIds.length, 'every worker to consume');
  return s;
}

/**
 * The stage's worker with the given id (as passed to `startWorker`: 'w2'), wherever it is in `workers`
 * (`startWorker` moves a restarted worker to the end, so an index names a different worker after a restart).
 */
export function stageWorker(s: Pick<Stage, 'ns' | 'workers'>, id: string): WorkerProcess {
  const w = s.workers.find((x) => x.id === `${s.ns.name}-${id}`);
  if (!w) throw new Error(`no worker ${id} on stage ${s.ns.name} (workers: ${s.workers.map((x) => x.id).join(', ') || 'none'})`);
  return w;
}

/** Waits (up to 30 s) until the stage's process queue has at least `count` consumers. */
export async function waitForConsumers(s: Pick<Stage, 'ns'>, count: number, what: string): Promise<void> {
  await waitForNamespaceConsumers(s.ns, count, what);
}

/** What a scenario's own verify run reported: the numbers that go into the README's failure table. */
export interface ScenarioResult {
  readonly scenario: string;
  readonly published: number;
  readonly applied: number;
  readonly rejected: number;
  readonly parked: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly invariantViolations: number;
  readonly note?: string;
}

/** The part of `txsim verify --run <id> --json` a scenario reads; `run` is missing when verify failed before it. */
interface VerifyJson {
  readonly run?: {
    readonly expected: number;
    readonly published: number;
    readonly applied: number;
    readonly rejected: number;
    readonly parked: number;
    readonly returned: number;
    /** Ids of a run sent over HTTP (`gen --via`) that the API refused and that have no outcome. */
    readonly refused?: number;
    readonly lost: number;
    readonly duplicated: number;
  };
  readonly checks?: readonly { readonly violations: number }[];
}

/**
 * Ends a scenario the same way every time: `txsim verify --run` (waiting for the queues to drain),
 * asserting nothing lost, nothing applied twice, the invariant holding and the workers alive; the
 * numbers are appended to .txsim/faults/results.jsonl.
 */
export async function verifyScenario(s: Stage, scenario: string, runId: string, note?: string): Promise<ScenarioResult> {
  const verify = await runTxsim(['verify', '--run', runId, '--wait', '90', '--json'], s.ns.env, 180_000);
  const report = JSON.parse(verify.stdout || '{}') as VerifyJson;
  const result: ScenarioResult = {
    scenario,
    published: report.run?.published ?? 0,
    applied: report.run?.applied ?? 0,
    rejected: report.run?.rejected ?? 0,
    parked: report.run?.parked ?? 0,
    lost: report.run?.lost ?? -1,
    duplicated: report.run?.duplicated ?? -1,
    invariantViolations: (report.checks ?? []).reduce((n, c) => n + c.violations, 0),
    ...(note ? { note } : {}),
  };
  mkdirSync('.txsim/faults', { recursive: true });
  appendFileSync('.txsim/faults/results.jsonl', `${JSON.stringify({ ...result, at: new Date().toISOString() })}\n`);
  expect(verify.code, `${verify.stdout}\n${verify.stderr}`).toBe(0);
  expect(result).toMatchObject({ lost: 0, duplicated: 0, invariantViolations: 0 });
  const run = report.run;
  if (!run) throw new Error(`verify --json printed no run:\n${verify.stdout}`);
  expect(run.applied + run.rejected + run.parked + run.returned + (run.refused ?? 0)).toBe(run.expected);
  for (const w of s.workers) expect(w.child.exitCode, `worker ${w.id} died:\n${w.output().slice(-2000)}`).toBeNull();
  return result;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
