import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIdForSeed } from '../../src/domain/ids.js';
import { zipfProbabilities } from '../../src/gen/account-choice.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { runTxsim, spawnTxsim, startWorker, type WorkerProcess } from '../helpers/txsim.js';

// gen's load shapes against the real broker and database, with real worker processes: a profile's
// per-second counts, late and dropped messages of a publisher that cannot keep up, a run split over
// two gen processes, and Zipf account choice as the database records it.

interface Second {
  second: number;
  due: number;
  published: number;
  late: number;
  dropped: number;
}
interface GenJson {
  runId: string;
  requested: number;
  published: number;
  confirmed: number;
  late: number;
  dropped: number;
  latenessMs: { count: number; p50: number; p99: number; max: number };
  confirmLatencyMs: { p50: number; max: number };
  seconds: Second[];
  completed: boolean;
}
interface VerifyJson {
  status: string;
  pending: { missingInstances: string[] };
  run: {
    expected: number;
    applied: number;
    rejected: number;
    dropped: number;
    lost: number;
    duplicated: number;
    notPublished: number;
    instances: { count: number; reported: number[]; missing: number[] } | null;
  };
}

describe('gen load-shape flags outside their syntax', () => {
  it.each([
    [['--profile', '500@10s,abc@5s'], /--profile: rate "abc" must be a number of messages per second/],
    [['--profile', 'ramp:5@1s'], /--profile: "ramp:" is not a profile kind/],
    [['10', '--profile', '5@1s'], /<count>: 10 is more than the profile sends \(3 messages in 1 s\)/],
    [['--rate', '5'], /<count> is required unless --profile gives it/],
    [['10', '--accounts-dist', 'zipf:-1'], /--accounts-dist: exponent "-1"/],
    [['10', '--accounts-dist', 'uniform', '--hot-accounts', '0.5'], /--accounts-dist and --hot-accounts\/--hot-set exclude each other/],
    [['10', '--instance', '3/2'], /--instance: "3\/2" must look like k\/n/],
    [['10', '--drop-late', '100'], /--drop-late needs a paced run/],
    [['10', '--linger', '5'], /--linger needs a paced run/],
    [['10', '--rate', '5', '--linger', '5000'], /--linger: 5000 must be between 0 and 1000/],
    [['10', '--rate', '5', '--linger', '5', '--via', 'http://127.0.0.1:1'], /--linger: not with --via/],
    [
      ['10', '--rate', '5', '--linger', '600', '--mix', 'card_authorization=1', '--expire-after', '1s'],
      /--linger 600 ms is more than half of --expire-after 1000 ms/,
    ],
  ])('gen %j is a usage error naming the bad part (exit 2)', async (args, message) => {
    const r = await runTxsim(['gen', ...args], process.env, 30_000);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

describe('gen load shapes', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  const ACCOUNTS = 20;

  beforeAll(async () => {
    ns = await createTestNamespace('genload');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(ACCOUNTS, { openingBalanceMinor: 100_000_000n });
    worker = startWorker('w1', ns.env, ['--batch-size', '50', '--prefetch', '200']);
  });

  afterAll(async () => {
    await worker?.stop();
    await ns.cleanup();
  });

  const verifyRun = async (runId: string, waitS = 60) => {
    const r = await runTxsim(['verify', '--run', runId, '--wait', String(waitS), '--json'], ns.env);
    return { code: r.code, stderr: r.stderr, report: JSON.parse(r.stdout) as VerifyJson };
  };

  /** `gen <args> --json`, which must exit 0: its summary. */
  const genJson = async (args: string[]) => {
    const r = await runTxsim(['gen', ...args, '--json'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as GenJson;
  };

  it('a profiled run publishes each second what its stages ask, within a few percent', async () => {
    // 0 → 200/s over 2 s, then 200 → 400/s over 2 s: 50, 150, 250 and 350 messages in seconds 0..3 (800 in all).
    const r = await runTxsim(['gen', '--profile', '200@2s,400@2s', '--seed', 'load-profile', '--json', '--per-second'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as GenJson;
    expect(s).toMatchObject({ requested: 800, published: 800, confirmed: 800, dropped: 0 });
    const expected = [50, 150, 250, 350];
    expect(s.seconds.slice(0, 4).map((x) => x.due)).toEqual(expected);
    for (const [i, want] of expected.entries()) {
      // A message due right at a second's edge may go out a few ms into the next, more on a loaded machine: 10 % plus 10 messages of slack.
      expect(Math.abs(s.seconds[i]!.published - want), `second ${i}: ${JSON.stringify(s.seconds)}`).toBeLessThanOrEqual(want * 0.1 + 10);
    }
    // The per-second lines on stderr say the same.
    expect(r.stderr).toMatch(/gen\s+1 s {2}due 150 {2}sent \d+ {2}late \d+/);
    const verify = await verifyRun(s.runId);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.report.run.applied + verify.report.run.rejected).toBe(800);
  });

  it('a quiet step sends nothing: the message due where it begins is due where the next step begins', async () => {
    // 300/s for 1 s, 0/s for 1 s, 300/s for 1 s: messages 0..299 in second 0, none in second 1, 300..599 in second 2.
    const r = await runTxsim(['gen', '--profile', 'steps:300,0,300@1s', '--seed', 'load-quiet', '--json', '--per-second'], ns.env);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as GenJson;
    expect(s).toMatchObject({ requested: 600, published: 600, dropped: 0 });
    expect(s.seconds.slice(0, 3).map((x) => x.due)).toEqual([300, 0, 300]);
    expect((await verifyRun(s.runId)).code).toBe(0);
    // A paced message is created at its due time: no created_at of the run falls in the quiet second. Message
    // 299 is due at 996.7 ms and message 300 at 2,000 ms (at 1,000 ms, inside the quiet step, before the fix);
    // both ends are cut to whole ms, hence the 2 ms margins.
    const rows = await ns.db('transactions').where('run_id', s.runId).select<{ created_at: Date }[]>('created_at');
    expect(rows).toHaveLength(600);
    const times = rows.map((row) => new Date(row.created_at).getTime());
    const first = Math.min(...times);
    const offsets = times.map((t) => t - first);
    expect(offsets.filter((ms) => ms >= 998 && ms <= 1_998)).toEqual([]);
    expect(offsets.filter((ms) => ms < 998)).toHaveLength(300);
  });

  it('a rate the publisher cannot keep up with reports late messages and how late; --drop-late drops and records them', async () => {
    // One message in flight at a time: every message waits for the previous confirm, far behind 100,000/s.
    const s = await genJson(['800', '--rate', '100000', '--window', '1', '--seed', 'load-late']);
    expect(s.published).toBe(800);
    expect(s.late).toBeGreaterThan(600);
    expect(s.latenessMs.count).toBe(s.late);
    expect(s.latenessMs.max).toBeGreaterThan(100);
    expect(s.seconds.reduce((a, x) => a + x.late, 0)).toBe(s.late);
    const text = await runTxsim(['gen', '800', '--rate', '100000', '--window', '1', '--seed', 'load-late'], ns.env);
    expect(text.stdout).toMatch(/late: \d+ of 800 sent more than 10 ms after they were due \(p50 \d+ ms, p99 \d+ ms, max \d+ ms\)/);

    const d = await genJson(['800', '--rate', '100000', '--window', '1', '--drop-late', '50', '--seed', 'load-drop']);
    expect(d.dropped).toBeGreaterThan(0);
    expect(d.published + d.dropped).toBe(800);
    expect(d.completed).toBe(true);
    const runId = runIdForSeed('load-drop');
    expect(Number((await ns.db('run_drops').where('run_id', runId).count<{ n: number }[]>({ n: '*' }))[0]!.n)).toBe(d.dropped);
    // verify counts the dropped ids as dropped, not lost.
    const verify = await verifyRun(runId);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.report.run).toMatchObject({ dropped: d.dropped, lost: 0, duplicated: 0, expected: 800, notPublished: 0 });
    expect(verify.report.run.applied + verify.report.run.rejected).toBe(d.published);
  });

  it('--linger: a paced run sends in groups; latency counts from each due time, lateness from when its group goes out', async () => {
    // 400/s with a 100 ms linger: a message waits 0–100 ms for its group (about 50 at the median),
    // where a message at its own time is confirmed in a few ms. Counted from each due time instead,
    // about half the messages (about 200) would be more than 50 ms late.
    const s = await genJson(['400', '--rate', '400', '--linger', '100', '--late-threshold', '50', '--seed', 'load-linger']);
    expect(s).toMatchObject({ published: 400, confirmed: 400, dropped: 0, completed: true });
    expect(s.confirmLatencyMs.p50).toBeGreaterThanOrEqual(25);
    expect(s.confirmLatencyMs.max).toBeGreaterThanOrEqual(90);
    expect(s.late).toBeLessThan(80);
    const verify = await verifyRun(s.runId);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.report.run).toMatchObject({ lost: 0, duplicated: 0 });
    // --drop-late counts from the group's send time too: with 100 ms groups, none is 40 ms late — where
    // counting from each due time would drop more than half of them.
    const d = await genJson(['400', '--rate', '400', '--linger', '100', '--drop-late', '40', '--seed', 'load-linger-drop']);
    expect(d.dropped).toBeLessThan(40);
    expect(d.published + d.dropped).toBe(400);
    expect((await verifyRun(d.runId)).code).toBe(0);
  });

  it('two gen --instance halves verify as one run; with one half only, verify says which instance is missing', async () => {
    const runId = runIdForSeed('load-halves');
    const first = await runTxsim(['gen', '601', '--seed', 'load-halves', '--instance', '1/2', '--json'], ns.env);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ runId, requested: 601, published: 301 });

    const half = await runTxsim(['verify', '--run', runId, '--wait', '5', '--json'], ns.env);
    expect(half.code, half.stderr).toBe(7);
    const halfReport = JSON.parse(half.stdout) as VerifyJson;
    expect(halfReport.status).toBe('pending');
    expect(halfReport.pending.missingInstances).toEqual(['2/2']);
    expect(halfReport.run).toMatchObject({ expected: 301, lost: 0, instances: { count: 2, reported: [1], missing: [2] } });
    expect(half.stderr).toContain('instance 2/2 of the run has not reported');

    // Another count for the same seed is refused, like any other re-use; --new-run cannot split a run.
    const other = await runTxsim(['gen', '600', '--seed', 'load-halves', '--instance', '2/2'], ns.env);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('count 601 → 600');

    const second = await runTxsim(['gen', '601', '--seed', 'load-halves', '--instance', '2/2', '--json'], ns.env);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ runId, published: 300 });
    const whole = await verifyRun(runId);
    expect(whole.code, whole.stderr).toBe(0);
    expect(whole.report.run).toMatchObject({
      expected: 601,
      lost: 0,
      duplicated: 0,
      instances: { count: 2, reported: [1, 2], missing: [] },
    });
    expect(whole.report.run.applied + whole.report.run.rejected).toBe(601);
    // The union of the halves is exactly the single-instance run's ids: 601 distinct ids of this run, nothing else.
    const ids = await ns.db('transactions').where('run_id', runId).countDistinct<{ n: number }[]>({ n: 'id' });
    expect(Number(ids[0]!.n)).toBe(601);
    const row = await ns.db('runs').where('id', runId).first<{ published: number; status: string }>('published', 'status');
    expect(row).toMatchObject({ published: 601, status: 'completed' });
  });

  it('two instances started together join one run', async () => {
    const runId = runIdForSeed('load-together');
    const gens = ['1/2', '2/2'].map((k) =>
      spawnTxsim(['gen', '400', '--seed', 'load-together', '--instance', k, '--rate', '400', '--json'], ns.env),
    );
    for (const g of gens) {
      const r = await g.done;
      expect(r.code, r.stderr).toBe(0);
    }
    const verify = await verifyRun(runId);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.report.run).toMatchObject({ expected: 400, lost: 0, instances: { missing: [] } });
  });

  it('a Zipf run: per-account counts in the database follow the distribution', async () => {
    const draws = 4000;
    const r = await runTxsim(
      ['gen', String(draws), '--seed', 'load-zipf', '--accounts-dist', 'zipf:1.2', '--mix', 'deposit=1', '--json'],
      ns.env,
    );
    expect(r.code, r.stderr).toBe(0);
    const runId = runIdForSeed('load-zipf');
    expect((await verifyRun(runId)).code).toBe(0);
    const rows = await ns
      .db('transactions')
      .where('run_id', runId)
      .groupBy('account_id')
      .select<{ account_id: number; n: number }[]>('account_id', ns.db.raw('COUNT(*) AS n'));
    const counts = new Array<number>(ACCOUNTS).fill(0);
    for (const row of rows) counts[Number(row.account_id) - 1] = Number(row.n);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(draws);
    // Pearson's chi-square against Zipf(1.2) over 20 ranks (account 1 is rank 1): below 43.8, the p = 0.001
    // critical value for 19 degrees of freedom. A uniform choice of the same accounts scores in the thousands.
    const p = zipfProbabilities(ACCOUNTS, 1.2);
    const chi = counts.reduce((sum, o, i) => sum + (o - p[i]! * draws) ** 2 / (p[i]! * draws), 0);
    expect(chi, JSON.stringify(counts)).toBeLessThan(43.8);
    expect(counts[0]).toBeGreaterThan(counts[ACCOUNTS - 1]! * 10);
  });
});
