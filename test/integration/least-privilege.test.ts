import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, startWorker, type WorkerProcess } from '../helpers/txsim.js';

const exec = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const hasRabbitmqctl = await exec('sh', ['-c', 'command -v rabbitmqctl']).then(
  () => true,
  () => false,
);

// The documented least-privilege setup, for real: scripts/rabbitmq-users.sh creates one user per
// role, and the programs do their jobs under them — and nothing more.
describe.skipIf(!isRoot || !hasRabbitmqctl)('least-privilege RabbitMQ users', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess | null = null;
  const passwords = { gen: 'gen-pw-7f3a', worker: 'worker-pw-91c2', watch: 'watch-pw-55d0' };
  const url = (role: keyof typeof passwords) => `amqp://${ns.name}-${role}:${passwords[role]}@127.0.0.1:5672`;

  beforeAll(async () => {
    ns = await createTestNamespace('lp');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0); // setup runs as an administrator
    await ns.seed(10);
    const out = await exec('bash', ['scripts/rabbitmq-users.sh', ns.name], {
      env: {
        ...process.env,
        TXSIM_USER_PREFIX: ns.name,
        TXSIM_GEN_PASSWORD: passwords.gen,
        TXSIM_WORKER_PASSWORD: passwords.worker,
        TXSIM_WATCH_PASSWORD: passwords.watch,
      },
    });
    expect(out.stdout).toContain('ready');
    expect(out.stdout + out.stderr).not.toMatch(/pw-/);
  });

  afterAll(async () => {
    await worker?.stop();
    for (const role of ['gen', 'worker', 'watch']) await exec('rabbitmqctl', ['-q', 'delete_user', `${ns.name}-${role}`]).catch(() => {});
    await ns.cleanup();
  });

  it('gen publishes and a worker applies under their own users; verify agrees', async () => {
    worker = startWorker('lp-w1', { ...ns.env, AMQP_URL: url('worker') });
    const gen = await runTxsim(['gen', '200', '--seed', 'least-privilege', '--json'], { ...ns.env, AMQP_URL: url('gen') });
    expect(gen.code, gen.stderr).toBe(0);
    const { runId } = JSON.parse(gen.stdout);
    const verify = await runTxsim(['verify', '--run', runId, '--wait', '30', '--json'], ns.env);
    expect(verify.code, verify.stdout).toBe(0);
    expect(JSON.parse(verify.stdout).run).toMatchObject({ lost: 0, duplicated: 0, expected: 200 });
    expect(worker.output()).not.toContain(passwords.worker);
  });

  it('the gen user can write to the transactions exchange and do nothing else', async () => {
    const connection = await amqp.connect(url('gen'));
    connection.on('error', () => {});
    try {
      const read = await connection.createChannel();
      read.on('error', () => {});
      await expect(read.consume(ns.topology.processQueue, () => {})).rejects.toThrow(/ACCESS_REFUSED/);
      const declare = await connection.createChannel();
      declare.on('error', () => {});
      await expect(declare.assertQueue(`${ns.name}.sneaky`)).rejects.toThrow(/ACCESS_REFUSED/);
      const purge = await connection.createChannel();
      purge.on('error', () => {});
      await expect(purge.purgeQueue(ns.topology.processQueue)).rejects.toThrow(/ACCESS_REFUSED/);
    } finally {
      await connection.close().catch(() => {});
    }
  });

  it('the watch user can follow the stats exchange but not touch the transactions', async () => {
    const connection = await amqp.connect(url('watch'));
    connection.on('error', () => {});
    try {
      const channel = await connection.createChannel();
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, ns.topology.statsExchange, '');
      const denied = await connection.createChannel();
      denied.on('error', () => {});
      await expect(denied.consume(ns.topology.processQueue, () => {})).rejects.toThrow(/ACCESS_REFUSED/);
    } finally {
      await connection.close().catch(() => {});
    }
  });
});
