import { execFile } from 'node:child_process';
import { readFile, rename, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/txsim.js';
import { canControlServices } from './fault-kit.js';

// The cluster scripts' own safety, on nodes of their own (own data folders; the ports of scripts/galera.sh
// and scripts/cluster.sh, so not beside galera.test.ts or cluster.test.ts — the fault project runs one file
// at a time). The default RabbitMQ node and MariaDB server are never touched.
//   - galera.sh starts a new cluster from the node with the latest commits, and refuses when it cannot tell;
//   - cluster.sh never resets a member that does not answer cluster_status (it would drop its replicas).

const exec = promisify(execFile);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a script to its end, whatever its exit code. */
async function run(script: string, args: string[], env: Record<string, string>, timeoutMs = 300_000): Promise<Run> {
  try {
    const { stdout, stderr } = await exec('bash', [script, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

function expectOk(r: Run): void {
  expect(r.code, `exit ${r.code}\n${r.stdout}\n${r.stderr}`).toBe(0);
}

const GALERA_DIR = '/var/tmp/txsim-galera-scripts-test';
const galera = (args: string[], env: Record<string, string> = {}) =>
  run('scripts/galera.sh', args, { TXSIM_GALERA_DIR: GALERA_DIR, ...env });
const sql = async (n: number, query: string) =>
  (
    await exec('mariadb', ['--protocol=socket', '-S', `${GALERA_DIR}/node${n}/mysqld.sock`, '-uroot', '-N', '-B', '-e', query])
  ).stdout.trim();
const rowsOnEveryNode = () => Promise.all([1, 2, 3].map((n) => sql(n, 'SELECT GROUP_CONCAT(id ORDER BY id) FROM t.r')));

describe.skipIf(!canControlServices)('scripts/galera.sh: a new cluster starts from the latest commits', () => {
  afterAll(async () => {
    await galera(['down', '--purge']);
  }, 300_000);

  it('bootstraps the node with the highest seqno (not node 1) after node 1 crashed and the others went on', async () => {
    expectOk(await galera(['up']));
    await sql(1, 'CREATE DATABASE t; CREATE TABLE t.r (id INT PRIMARY KEY); INSERT INTO t.r VALUES (1)');
    expectOk(await galera(['kill', '1']));
    await waitFor(async () => (await sql(2, "SHOW STATUS LIKE 'wsrep_cluster_size'")).endsWith('\t2'), 30_000, 'nodes 2 and 3 alone');
    await sql(2, 'INSERT INTO t.r VALUES (2)');
    await sql(3, 'INSERT INTO t.r VALUES (3)');
    expectOk(await galera(['down']));

    const up = await galera(['up']);
    expectOk(up);
    expect(up.stdout).toContain('starting txsim-galera2 on 127.0.0.1:3312 (bootstrapping a new cluster)');
    expect(await rowsOnEveryNode()).toEqual(['1,2,3', '1,2,3', '1,2,3']);
  });

  it("refuses to bootstrap when a crashed node's position cannot be recovered, and names it", async () => {
    for (const n of ['1', '2', '3']) expectOk(await galera(['kill', n]));
    // Every grastate.dat now says seqno -1; hide node 3's system tablespace so that --wsrep-recover fails there.
    const ibdata = `${GALERA_DIR}/node3/data/ibdata1`;
    await rename(ibdata, `${GALERA_DIR}/node3/ibdata1.hidden`);
    let refused: Run;
    try {
      refused = await galera(['up']);
    } finally {
      await rename(`${GALERA_DIR}/node3/ibdata1.hidden`, ibdata);
    }
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toContain('cannot tell which node holds the latest commits: no position for txsim-galera3');
    expect(refused.stderr).toContain('TXSIM_GALERA_BOOTSTRAP');
    expect((await galera(['status'])).stdout.match(/ stopped$/gm)).toHaveLength(3); // nothing was started

    const up = await galera(['up']);
    expectOk(up);
    expect(up.stdout).toContain('latest committed state:');
    expect(await rowsOnEveryNode()).toEqual(['1,2,3', '1,2,3', '1,2,3']);
  });
});

const CLUSTER_DIR = '/var/tmp/txsim-rmq-scripts-test';
const cluster = (args: string[], env: Record<string, string> = {}) =>
  run('scripts/cluster.sh', args, { TXSIM_CLUSTER_DIR: CLUSTER_DIR, ...env });
const AUTH = `Basic ${Buffer.from('guest:guest').toString('base64')}`;

describe.skipIf(!canControlServices)('scripts/cluster.sh: a member that does not answer is left alone', () => {
  let stopped = 0;

  afterAll(async () => {
    if (stopped) process.kill(stopped, 'SIGCONT');
    await cluster(['down', '--purge']);
  }, 240_000);

  it('fails with a clear message instead of resetting it, and keeps its quorum-queue replica', async () => {
    expectOk(await cluster(['up']));
    const joinLog = `${CLUSTER_DIR}/node2/log/join.log`;
    const joinedAt = (await stat(joinLog)).mtimeMs;
    const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5681');
    try {
      const ch = await conn.createChannel();
      await ch.assertQueue('scripts-test-qq', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      ch.sendToQueue('scripts-test-qq', Buffer.from('kept'), { persistent: true });
      await ch.close();
    } finally {
      await conn.close();
    }

    // Node 2 hangs: its cluster_status times out (5 s a try here), as on an overloaded host.
    stopped = Number((await readFile(`${CLUSTER_DIR}/node2/rabbitmq.pid`, 'utf8')).trim());
    process.kill(stopped, 'SIGSTOP');
    let hung: Run;
    try {
      hung = await cluster(['up'], { TXSIM_CLUSTER_CTL_TIMEOUT_S: '5' });
    } finally {
      process.kill(stopped, 'SIGCONT');
      stopped = 0;
    }
    expect(hung.code, hung.stderr).toBe(3);
    expect(hung.stderr).toContain('txsim2@localhost did not answer cluster_status');
    expect(hung.stderr).toContain('not reset');
    expect(hung.stdout).not.toContain('joining');

    const again = await cluster(['up']);
    expectOk(again);
    expect(again.stdout).not.toContain('joining');
    expect(again.stdout).toMatch(/^txsim2@localhost .* running in-cluster\(3 running\)$/m);
    expect((await stat(joinLog)).mtimeMs).toBe(joinedAt); // never stopped, reset and joined again

    await waitFor(
      async () => {
        const res = await fetch('http://127.0.0.1:15681/api/queues/%2F/scripts-test-qq', { headers: { authorization: AUTH } });
        const q = (await res.json()) as { members?: string[]; online?: string[] };
        return (q.members ?? []).length === 3 && (q.online ?? []).length === 3;
      },
      60_000,
      'the quorum queue on all three nodes',
      1_000,
    );
    const conn2 = await amqp.connect('amqp://guest:guest@127.0.0.1:5682');
    try {
      const ch = await conn2.createChannel();
      const msg = await ch.get('scripts-test-qq', { noAck: true });
      expect(msg && msg.content.toString()).toBe('kept');
      await ch.close();
    } finally {
      await conn2.close();
    }
  });
});
