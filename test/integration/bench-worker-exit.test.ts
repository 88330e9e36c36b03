import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { spawnTxsim } from '../helpers/txsim.js';
import { benchWorkerPid, childPidsOf, removeBenchNamespace } from './bench-helpers.js';

/**
 * A bench worker that dies mid-run voids the run: the bench must stop and fail, naming the worker,
 * how it ended and when — not go on with the worker left and report figures made with fewer workers
 * (and, before the sampler kept an exited process's CPU, a negative worker CPU).
 */
describe('txsim bench: a worker that dies mid-run', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('benchkill');
  });

  afterAll(async () => {
    await removeBenchNamespace(ns);
  });

  it('kill -9 of one worker while publishing: exit 4 at once, one line naming it, the signal and the second; no report; no worker left running', async () => {
    const { child, done } = spawnTxsim(
      [
        'bench',
        '--seed',
        'it-kill',
        '--workers',
        '2',
        '--count',
        '2000',
        '--rate',
        '400',
        '--mix',
        'v1',
        '--accounts',
        '200',
        '--disk-probe',
        'off',
      ],
      ns.env,
      120_000,
    );
    const benchPid = child.pid!;
    // Publishing has started once the first per-second line is out.
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const onData = (d: Buffer) => {
        out += d.toString();
        if (/^t=\s*\d/m.test(out)) {
          child.stdout!.removeListener('data', onData);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`bench exited with ${code} before publishing`)));
    });
    const victim = await benchWorkerPid(benchPid, 'bench-w2');
    const survivor = await benchWorkerPid(benchPid, 'bench-w1');
    process.kill(victim, 'SIGKILL');
    const killedAt = Date.now();

    const result = await done;
    expect(result.code, result.stderr).toBe(4);
    const errorLines = result.stderr.split('\n').filter((l) => l.startsWith('txsim: '));
    expect(errorLines).toHaveLength(1);
    expect(errorLines[0]).toMatch(
      new RegExp(
        `^txsim: bench \\S+: worker bench-w2 \\(pid ${victim}\\) was killed by SIGKILL at t=\\d+\\.\\d s, while publishing, before the bench stopped it; the run is void`,
      ),
    );
    // Stopped at once: not after publishing the remaining ~4 s of the run and draining it.
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    // No figures: no summary, no verify line.
    expect(result.stdout).not.toMatch(/^run bench-|^verify /m);
    // The worker left was stopped with the bench, not orphaned.
    expect(childPidsOf(benchPid)).toEqual([]);
    expect(() => process.kill(survivor, 0)).toThrow();
  });
});
