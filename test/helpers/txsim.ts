import { spawn, type ChildProcess } from 'node:child_process';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { peekQueue as peekQueueInPlace } from '../../src/amqp/queue-walk.js';
import { WORKER_NODE_OPTIONS } from '../../src/worker/node-options.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `txsim <args>` to completion (the real built CLI, as a user would). */
export function runTxsim(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<RunResult> {
  return spawnTxsim(args, env, timeoutMs).done;
}

/** Starts `txsim <args>` and hands back the child (to kill it mid-run) and its result. */
export function spawnTxsim(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): { child: ChildProcess; done: Promise<RunResult> } {
  return spawnProcess(process.execPath, [CLI, ...args], { env, timeoutMs, label: `txsim ${args.join(' ')}` });
}

/** Starts any command with piped output, killed after `timeoutMs`; `done` settles with its exit and output. */
export function spawnProcess(
  command: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; timeoutMs: number; cwd?: string; label?: string },
): { child: ChildProcess; done: Promise<RunResult> } {
  const child = spawn(command, args, { env: options.env, ...(options.cwd ? { cwd: options.cwd } : {}), stdio: ['ignore', 'pipe', 'pipe'] });
  const done = new Promise<RunResult>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${options.label ?? command} timed out after ${options.timeoutMs} ms\n${stdout}${stderr}`));
    }, options.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return { child, done };
}

/** A long-running `txsim worker` child process. */
export interface WorkerProcess {
  readonly id: string;
  readonly child: ChildProcess;
  readonly output: () => string;
  /** SIGTERM and wait for a clean exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no cleanup at all, like a crash. */
  kill(): Promise<void>;
}

/** A `txsim worker` process started as the README, demo and compose file start one: with the worker's heap cap. */
export function startWorker(id: string, env: NodeJS.ProcessEnv, extraArgs: readonly string[] = []): WorkerProcess {
  const child = spawn(process.execPath, [...WORKER_NODE_OPTIONS, CLI, 'worker', '--id', id, ...extraArgs], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    id,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Polls `check` until it returns true or the timeout passes. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Ready messages in a queue (a passive declare). */
export async function queueDepth(connection: ChannelModel, queue: string): Promise<number> {
  const channel = await connection.createChannel();
  try {
    return (await channel.checkQueue(queue)).messageCount;
  } finally {
    await channel.close();
  }
}

/**
 * Reads every message of a queue without removing any, leaving them in their order and uncounted: a
 * confirm channel of the caller's own (src/amqp/queue-walk.ts copies each message back once confirmed).
 */
export async function peekQueue(channel: ConfirmChannel, queue: string, limit = 10_000) {
  return peekQueueInPlace(channel, queue, limit);
}

/** Waits until at least `count` consumers are on the namespace's process queue: the workers have subscribed. */
export async function waitForConsumers(
  ns: { readonly amqp: ChannelModel; readonly topology: { readonly processQueue: string } },
  count: number,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  await waitFor(async () => (await queueState(ns.amqp, ns.topology.processQueue)).consumerCount >= count, timeoutMs, what);
}

/** Ready messages and consumers of a queue. */
export async function queueState(connection: ChannelModel, queue: string): Promise<{ messageCount: number; consumerCount: number }> {
  const channel = await connection.createChannel();
  try {
    return await channel.checkQueue(queue);
  } finally {
    await channel.close().catch(() => {});
  }
}
