import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIdForSeed } from '../../src/domain/ids.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, spawnProcess, spawnTxsim, waitFor } from '../helpers/txsim.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
/** util-linux `script` runs a command on a pseudo-terminal: how a user at a terminal sees the progress bar. */
const hasScript = existsSync('/usr/bin/script');

// gen's contract at the door (flags), its run record when interrupted, and re-used seeds.

interface RunRow {
  count_requested: number;
  published: number;
  confirmed: number;
  status: string;
}
const runRow = async (ns: TestNamespace, runId: string) =>
  (await ns.db<RunRow>('runs').where('id', runId).first('count_requested', 'published', 'confirmed', 'status'))!;

describe('gen flags outside the contract', () => {
  it.each([
    [
      ['--amount', '2000000000000..3000000000000'],
      /--amount: 3000000000000 is above the largest amount of the message contract, 1000000000000/,
    ],
    [['--amount', '0..100'], /--amount: "0\.\.100" needs 1 ≤ min ≤ max/],
    [['--seed', 'x'.repeat(65)], /--seed: .* must be 1 to 64 characters/],
    [['--seed', ''], /--seed: .* must be 1 to 64 characters/],
    [
      ['--accounts', '1-3,99999999999999999999'],
      /--accounts: 99999999999999999999 is above the largest account id of the message contract, 9007199254740991/,
    ],
    [['--invalid', '1.5'], /--invalid: "1\.5" must be a fraction between 0 and 1/],
    [['--window', '0'], /--window: 0 must be between 1 and 100000/],
    [['--mix', 'card_authorization=1', '--capture-share', '0.8', '--void-share', '0.3'], /--void-share 0\.3 is more than 1/],
    [['--capture-share', '0.5'], /card flows follow authorizations; give --mix a card_authorization weight/],
    [['--mix', 'card_authorization=1', '--flow-delay', '2s..50ms'], /--flow-delay: 2s\.\.50ms ends before it starts/],
  ])('gen 10 %j is a usage error naming the limit (exit 2)', async (flags, message) => {
    const r = await runTxsim(['gen', '10', ...flags], process.env, 30_000);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

describe('gen runs and their records', () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('genrun');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(20);
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  it('one SIGINT: exit 130, and the run record (and verify) say how many were never published', async () => {
    const runId = runIdForSeed('gen-sigint');
    const gen = spawnTxsim(['gen', '5000', '--seed', 'gen-sigint', '--rate', '500', '--json'], ns.env);
    await waitFor(async () => ((await runRow(ns, runId))?.published ?? 0) > 0, 15_000, 'gen to record progress');
    gen.child.kill('SIGINT');
    const r = await gen.done;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted: \d+ of 5000 published, \d+ ids never published/);
    const summary = JSON.parse(r.stdout) as { published: number; notPublished: number; interrupted: boolean };
    expect(summary.interrupted).toBe(true);
    expect(summary.published).toBeGreaterThan(0);
    expect(summary.published).toBeLessThan(5000);
    expect(summary.notPublished).toBe(5000 - summary.published);
    const row = await runRow(ns, runId);
    expect(row).toMatchObject({ count_requested: 5000, published: summary.published, status: 'incomplete' });

    // No worker runs: verify cannot settle (exit 7), but it accounts for the unsent tail from the record.
    const verify = await runTxsim(['verify', '--run', runId, '--json'], ns.env);
    expect(verify.code, verify.stderr).toBe(7);
    const report = JSON.parse(verify.stdout) as { run: { notPublished: number; expected: number; lost: number } };
    expect(report.run).toMatchObject({ notPublished: 5000 - summary.published, expected: summary.published, lost: 0 });
    const text = await runTxsim(['verify', '--run', runId], ns.env);
    expect(text.stdout).toMatch(new RegExp(`never published \\(run cut short\\)\\s+${5000 - summary.published}\\b`));
  });

  it.skipIf(!hasScript)('on a terminal the progress bar ends at 100 % with rate and ETA, then a newline', async () => {
    const command = `${process.execPath} ${CLI} gen 600 --seed gen-tty --rate 400`;
    const r = await spawnProcess('/usr/bin/script', ['-qec', command, '/dev/null'], { env: ns.env, timeoutMs: 60_000 }).done;
    expect(r.code, r.stdout).toBe(0);
    // The last frame of the bar, on its own line before the summary.
    expect(r.stdout).toMatch(/\r\[#{30}\] 600\/600 100% \d+ msg\/s ETA 0:00, 0 in flight\r?\nrun /);
  });

  it('a seed re-used with another count is refused (exit 2) naming the earlier run; the same options resume it; --new-run starts a new run', async () => {
    const runId = runIdForSeed('gen-reuse');
    const first = await runTxsim(['gen', '300', '--seed', 'gen-reuse', '--json'], ns.env);
    expect(first.code, first.stderr).toBe(0);

    const other = await runTxsim(['gen', '50', '--seed', 'gen-reuse'], ns.env);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain(`run ${runId} used this seed with other options (count 300 → 50)`);
    expect(other.stderr).toContain('--new-run');
    const otherMix = await runTxsim(['gen', '300', '--seed', 'gen-reuse', '--mix', 'deposit=1'], ns.env);
    expect(otherMix.code).toBe(2);
    expect(otherMix.stderr).toMatch(/\(mix .* → .*\)/);
    expect(await runRow(ns, runId)).toMatchObject({ count_requested: 300, published: 300, status: 'completed' });

    // Same stream options (a different rate only changes the pace): the same run, resumed.
    const again = await runTxsim(['gen', '300', '--seed', 'gen-reuse', '--rate', '2000', '--json'], ns.env);
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { runId: string }).runId).toBe(runId);

    const fresh = await runTxsim(['gen', '50', '--seed', 'gen-reuse', '--new-run', '--json'], ns.env);
    expect(fresh.code, fresh.stderr).toBe(0);
    const freshId = (JSON.parse(fresh.stdout) as { runId: string }).runId;
    expect(freshId).not.toBe(runId);
    expect(await runRow(ns, freshId)).toMatchObject({ count_requested: 50, published: 50, status: 'completed' });
    expect(await runRow(ns, runId)).toMatchObject({ count_requested: 300, published: 300 });
    const second = await runTxsim(['gen', '50', '--seed', 'gen-reuse', '--new-run', '--json'], ns.env);
    expect((JSON.parse(second.stdout) as { runId: string }).runId).not.toBe(freshId);
  });
});
