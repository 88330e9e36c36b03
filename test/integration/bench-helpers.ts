import { readdirSync, readFileSync } from 'node:fs';
import amqp from 'amqplib';
import { deleteTopology, topologyOf } from '../../src/amqp/topology.js';
import { ceilingQueueOf } from '../../src/bench/ceiling.js';
import { benchConfig } from '../../src/commands/bench.js';
import { dropDatabase } from '../../src/db/schema.js';
import type { TestNamespace } from '../helpers/namespace.js';

/**
 * Removes what `txsim bench` made beside a test namespace — its own namespace `<namespace>_bench`
 * (exchanges, queues, the ceiling's queue, the database) — and then the test namespace itself.
 */
export async function removeBenchNamespace(ns: TestNamespace): Promise<void> {
  const config = benchConfig(ns.config);
  const connection = await amqp.connect(config.amqpUrl);
  try {
    const channel = await connection.createChannel();
    await deleteTopology(channel, topologyOf(config)).catch(() => {});
    await channel.deleteQueue(ceilingQueueOf(config.namespace)).catch(() => {});
  } finally {
    await connection.close().catch(() => {});
  }
  await dropDatabase(config.databaseUrl, config.databaseName).catch(() => {});
  await ns.cleanup();
}

/**
 * The pid of the bench worker `id` (`bench-w2`) that the bench process `benchPid` started, from /proc
 * (its children whose command line has `--id <id>`); waits for it up to `timeoutMs`.
 */
export async function benchWorkerPid(benchPid: number, id: string, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = childPidsOf(benchPid).find((child) => {
      try {
        const args = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0');
        return args.includes('worker') && args[args.indexOf('--id') + 1] === id;
      } catch {
        return false; // exited meanwhile
      }
    });
    if (pid !== undefined) return pid;
    if (Date.now() > deadline) throw new Error(`no bench worker ${id} under pid ${benchPid} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Pids whose parent is `parentPid` (field 4 of /proc/<pid>/stat). */
export function childPidsOf(parentPid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]);
      if (ppid === parentPid) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
