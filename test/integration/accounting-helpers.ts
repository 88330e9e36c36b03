import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { ChannelModel } from 'amqplib';
import { decodeAccountingMessage } from '../../src/domain/accounting-event.js';
import { peekQueue } from '../helpers/txsim.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

/** A long-running `txsim <args>` child (accounting consumer, webhook receiver) with its output so far. */
export interface TxsimProcess {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** SIGTERM and wait for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no cleanup at all, like a crash. */
  kill(): Promise<void>;
}

export function startTxsim(args: readonly string[], env: NodeJS.ProcessEnv): TxsimProcess {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    async stop() {
      if (running()) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (running()) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** JSON lines of a process's stdout (lines that are not JSON are skipped). */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').flatMap((line) => {
    try {
      return line.trim() ? [JSON.parse(line) as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * The ids of the events ready in an accounting queue, in queue order, however many each message
 * carries (the relay puts several in one by default). Throws on a message that is not accounting events.
 */
export async function queuedEventIds(connection: ChannelModel, queue: string): Promise<string[]> {
  const channel = await connection.createConfirmChannel();
  try {
    return (await peekQueue(channel, queue)).flatMap((m) => {
      const decoded = decodeAccountingMessage(m.content);
      if (!decoded.ok) throw new Error(`not accounting events in ${queue}: ${decoded.detail}`);
      return decoded.elements.map((e) => {
        if (!e.ok) throw new Error(`not an accounting event in ${queue}: ${e.detail}`);
        return e.event.eventId;
      });
    });
  } finally {
    await channel.close().catch(() => {});
  }
}
