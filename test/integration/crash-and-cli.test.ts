import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli.js';
import { loadConfig } from '../../src/config/config.js';
import { dropDatabase } from '../../src/db/schema.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

describe('kill -9 of a worker mid-run', () => {
  let ns: TestNamespace;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    ns = await createTestNamespace('crash');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(50);
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await ns.cleanup();
  });

  it('loses nothing once another worker drains the queue', async () => {
    // Slow the victim down (one commit per message) so it certainly holds deliveries when killed.
    const victim = startWorker('victim', ns.env, ['--batch-size', '1', '--prefetch', '50']);
    workers.push(victim);
    const gen = await runTxsim(['gen', '1500', '--seed', 'crash', '--json'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const { runId } = JSON.parse(gen.stdout);
    await waitFor(
      async () => Number((await ns.db('transactions').where('worker_id', 'victim').count({ n: '*' }))[0]!.n) > 100,
      30_000,
      'the victim to make progress',
    );
    await victim.kill();
    const done = Number((await ns.db('transactions').where('run_id', runId).count({ n: '*' }))[0]!.n);
    expect(done).toBeLessThan(1500);

    workers.push(startWorker('rescuer', ns.env));
    const verify = await runTxsim(['verify', '--run', runId, '--wait', '60', '--json'], ns.env);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout);
    expect(report.run).toMatchObject({ expected: 1500, lost: 0, duplicated: 0 });
    expect(report.run.applied + report.run.rejected).toBe(1500);
    const rescued = Number((await ns.db('transactions').where({ run_id: runId, worker_id: 'rescuer' }).count({ n: '*' }))[0]!.n);
    expect(rescued).toBeGreaterThan(0);
  });
});

describe('bad input and unreachable services', () => {
  // `setup` creates its database before it reaches for the broker; remove what it made.
  afterAll(async () => {
    const config = loadConfig(process.env, {});
    await dropDatabase(config.databaseUrl, 'unreach');
  });

  it('--version prints the version of package.json, exit 0', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await runTxsim(['--version'], process.env);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('a wrong flag gets a usage message and exit code 2', async () => {
    const r = await runTxsim(['gen', '10', '--rate', 'fast'], process.env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--rate: "fast" must be a number/);
    const unknown = await runTxsim(['gen', '10', '--bogus'], process.env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--bogus'/);
    for (const command of ['worker', 'bench']) {
      const outOfRange = await runTxsim([command, '--relay-events-per-message', '501'], process.env);
      expect(outOfRange.code, command).toBe(2);
      expect(outOfRange.stderr).toMatch(/--relay-events-per-message: 501 must be between 1 and 500/);
    }
    const notNodeFlag = await runTxsim(['bench', '--worker-node-option', 'max-old-space-size=64'], process.env);
    expect(notNodeFlag.code).toBe(2);
    expect(notNodeFlag.stderr).toMatch(/--worker-node-option: "max-old-space-size=64" is not a Node.js flag/);
    const unpacedLinger = await runTxsim(['bench', '--linger', '10'], process.env);
    expect(unpacedLinger.code).toBe(2);
    expect(unpacedLinger.stderr).toMatch(/--linger needs --rate/);
    // A mistyped subcommand of a command that has its own action (accounting consumes, bench runs).
    const statment = await runTxsim(['accounting', 'statment', '7'], process.env);
    expect(statment.code).toBe(2);
    expect(statment.stderr.trim()).toBe(
      "txsim: unknown command 'accounting statment' (did you mean statement?); the commands of accounting: statement, redeliver, receive",
    );
    const compre = await runTxsim(['bench', 'compre', 'a.json', 'b.json'], process.env);
    expect(compre.code).toBe(2);
    expect(compre.stderr).toContain("unknown command 'bench compre' (did you mean compare?)");
    // A bad setting is named as the user gave it: the flag when written on the command line, else the variable.
    const fromEnv = await runTxsim(['worker'], { ...process.env, AMQP_URL: 'http://guest:pw@127.0.0.1:5672' });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr.trim()).toBe('txsim: AMQP_URL: "http://guest:***@127.0.0.1:5672" must start with amqp:// or amqps://');
    const fromFlag = await runTxsim(['--amqp-url', 'http://guest:pw@127.0.0.1:5672', 'worker'], { ...process.env, AMQP_URL: 'http://x' });
    expect(fromFlag.code).toBe(2);
    expect(fromFlag.stderr.trim()).toBe('txsim: --amqp-url: "http://guest:***@127.0.0.1:5672" must start with amqp:// or amqps://');
  });

  it('an unreachable broker is one line naming it and where, exit 3 within seconds, no password', async () => {
    const started = Date.now();
    const r = await runTxsim(
      ['setup'],
      { ...process.env, TXSIM_NAMESPACE: 'unreach', AMQP_URL: 'amqp://guest:hunter22@127.0.0.1:5999' },
      30_000,
    );
    expect(r.code).toBe(3);
    expect(Date.now() - started).toBeLessThan(15_000);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/rabbitmq unreachable at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5999/);
    expect(r.stderr).not.toContain('hunter22');
  });

  it('an unreachable database is one line naming it, exit 3', async () => {
    const r = await runTxsim(['verify'], { ...process.env, DATABASE_URL: 'mysql://root:pw123456@127.0.0.1:3999/x' }, 30_000);
    expect(r.code).toBe(3);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/database unreachable at mysql:\/\/root:\*\*\*@127\.0\.0\.1:3999/);
    expect(r.stderr).not.toContain('pw123456');
  });

  it('--help of every command, nested ones too, has an example and points to the global flags', async () => {
    // Every command the program registers (groups like `accounts` and their sub-commands), so a new one cannot be missed.
    const paths: string[][] = [];
    const walk = (command: Command, path: string[]) => {
      for (const sub of command.commands) {
        paths.push([...path, sub.name()]);
        walk(sub, [...path, sub.name()]);
      }
    };
    walk(buildProgram(), []);
    expect(paths.map((p) => p.join(' '))).toEqual(
      expect.arrayContaining(['accounts seed', 'accounting statement', 'tokens create', 'tx show']),
    );
    // Rendered in-process (a node process per command takes seconds on a loaded machine); the built CLI prints the same.
    const helpOf = (path: string[]) => {
      let command = buildProgram();
      for (const name of path) command = command.commands.find((c) => c.name() === name)!;
      let text = '';
      command.configureOutput({ writeOut: (s) => (text += s) });
      command.outputHelp();
      return text;
    };
    const missing: string[] = [];
    for (const cmd of paths) {
      const text = helpOf(cmd);
      if (!/Example:\n\s+\$ (?:\S+=\S+ )?txsim/.test(text)) missing.push(`${cmd.join(' ')}: no example`);
      if (!/Global flags \(--amqp-url, --database-url, --namespace\b.*\): see txsim --help/.test(text))
        missing.push(`${cmd.join(' ')}: no pointer to the global flags`);
    }
    const real = await runTxsim(['accounts', 'seed', '--help'], process.env);
    expect(real.code).toBe(0);
    expect(real.stdout).toBe(helpOf(['accounts', 'seed']));
    expect(missing).toEqual([]);
  });
});
