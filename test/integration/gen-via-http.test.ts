import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { createAdminToken, startServe, type ServeProcess } from '../helpers/serve.js';
import { runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';
import { expectValidOutput } from '../helpers/output-schema.js';
import type { RunSummary } from '../../src/gen/publish-run.js';
import { CARD_FLOW_GEN_ARGS } from './card-helpers.js';

/**
 * `txsim gen --via <url>`: a seeded run through a real `txsim serve` to real workers, recorded so
 * `verify --run` accounts for it, poison refused at the door (400) included.
 */

interface GenJson {
  runId: string;
  via: string;
  requested: number;
  published: number;
  confirmed: number;
  failed: number;
  invalid: number;
  refused: number;
  completed: boolean;
  http: {
    byStatus: Record<string, number>;
    noAnswer: number;
    requestsPerS: number;
    requestLatencyMs: { count: number; p50: number };
  } | null;
}

interface VerifyJson {
  status: string;
  run: { expected: number; applied: number; rejected: number; refused: number; lost: number; duplicated: number; parked: number };
}

describe('gen --via http', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess;
  let serve: ServeProcess;
  let token = '';
  const txsim = (args: string[], env: NodeJS.ProcessEnv = {}) => runTxsim(args, { ...ns.env, ...env }, 180_000);

  beforeAll(async () => {
    ns = await createTestNamespace('genhttp');
    expect((await txsim(['setup'])).code).toBe(0);
    await ns.seed(20, { openingBalanceMinor: 10_000_000n });
    token = await createAdminToken(ns.env);
    worker = startWorker('w-genhttp', ns.env);
    serve = await startServe(ns.env);
  });

  afterAll(async () => {
    await serve?.stop();
    await worker?.stop();
    await ns?.cleanup();
  });

  it('a run with poison: 400s refused and recorded, the rest applied or rejected, verify --run clean', async () => {
    const gen = await txsim(['gen', '400', '--via', serve.url, '--seed', 'via-1', '--invalid', '0.1', '--concurrency', '20', '--json'], {
      TXSIM_TOKEN: token,
    });
    expect(gen.code, gen.stderr).toBe(0);
    const summary = JSON.parse(gen.stdout) as GenJson;
    expectValidOutput('gen', summary);
    expect(summary).toMatchObject({ via: 'http', requested: 400, published: 400, failed: 0, completed: true });
    expect(summary.invalid).toBeGreaterThan(0);
    // Bad JSON, a string amount and a negative amount are refused by the API; unknown accounts and
    // currency mismatches are accepted and rejected by the worker, as over AMQP.
    expect(summary.refused).toBeGreaterThan(0);
    expect(summary.refused).toBeLessThan(summary.invalid);
    expect(summary.http!.byStatus['400']).toBe(summary.refused);
    expect(summary.confirmed + summary.refused).toBe(400);
    expect(summary.http!.requestLatencyMs.count).toBe(400);
    expect(summary.http!.noAnswer).toBe(0);

    const verify = await txsim(['verify', '--run', summary.runId, '--wait', '60', '--json']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const report = JSON.parse(verify.stdout) as VerifyJson;
    expect(report.status).toBe('ok');
    expect(report.run).toMatchObject({ expected: 400, refused: summary.refused, lost: 0, duplicated: 0, parked: 0 });
    expect(report.run.applied + report.run.rejected).toBe(summary.confirmed);
    const [rows] = (await ns.db.raw('SELECT COUNT(*) AS n FROM run_refusals WHERE run_id = ? AND http_status = 400', [summary.runId])) as [
      { n: number }[],
    ];
    expect(Number(rows[0]!.n)).toBe(summary.refused);

    // The text summary says the same in words, and never prints the token.
    const text = await txsim(['gen', '400', '--via', serve.url, '--seed', 'via-1', '--invalid', '0.1'], { TXSIM_TOKEN: token });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`run ${summary.runId} (seed via-1) via ${serve.url}`);
    expect(text.stdout).toMatch(/refused \d+ \(invalid, 400\), failed 0/);
    expect(text.stdout).toMatch(/request latency p50 \d+ ms/);
    expect(text.stdout + text.stderr).not.toContain(token);
  });

  it('the same seeded stream as over AMQP: a run published first is resumed through the API without a single conflict', async () => {
    const amqp = await txsim(['gen', '200', '--seed', 'via-same', '--invalid', '0.05', '--json']);
    expect(amqp.code, amqp.stderr).toBe(0);
    const first = JSON.parse(amqp.stdout) as GenJson;
    expect(first.via).toBe('amqp');
    const verified = await txsim(['verify', '--run', first.runId, '--wait', '60']);
    expect(verified.code, verified.stdout).toBe(0);
    const http = await txsim(['gen', '200', '--via', serve.url, '--seed', 'via-same', '--invalid', '0.05', '--json'], {
      TXSIM_TOKEN: token,
    });
    expect(http.code, http.stderr).toBe(0);
    const second = JSON.parse(http.stdout) as GenJson;
    // Same run id, so the same transaction ids; a different body for any of them would be a 409.
    expect(second.runId).toBe(first.runId);
    expect(second.http!.byStatus['409']).toBeUndefined();
    // Every id the API could read already had its outcome: answered 200 (final), nothing re-applied.
    expect(second.http!.byStatus['200']).toBe(second.confirmed);
    const verify = await txsim(['verify', '--run', first.runId, '--wait', '60', '--json']);
    expect(verify.code, verify.stdout).toBe(0);
    const report = JSON.parse(verify.stdout) as VerifyJson;
    expect(report.run).toMatchObject({ expected: 200, lost: 0, duplicated: 0 });
    const [rows] = (await ns.db.raw('SELECT COUNT(*) AS n FROM transactions WHERE run_id = ?', [first.runId])) as [{ n: number }[]];
    expect(Number(rows[0]!.n)).toBe(200);
  });

  it('card flows: the follow-ups go as requests at their times, the holds end as planned, verify --run accounts for them', async () => {
    const gen = await txsim(['gen', '200', '--via', serve.url, '--seed', 'via-flows', '--rate', '200', ...CARD_FLOW_GEN_ARGS, '--json'], {
      TXSIM_TOKEN: token,
    });
    expect(gen.code, gen.stderr).toBe(0);
    const summary = JSON.parse(gen.stdout) as GenJson & { flows: NonNullable<RunSummary['flows']> };
    expectValidOutput('gen', summary);
    const { planned } = summary.flows;
    expect(planned.authorizations).toBeGreaterThan(100);
    expect(summary.flows.published).toBe(planned.captures + planned.voids + planned.refunds);
    expect(summary.flows.confirmed).toBe(summary.flows.published);
    expect(summary).toMatchObject({ via: 'http', published: 200, confirmed: 200, completed: true });
    // Every request a POST: the run's own and the follow-ups, each answered 202.
    expect(summary.http!.byStatus['202']).toBe(200 + summary.flows.published);

    // The run's holds (by authorization id) end as planned, once those left open expired (3 s) and were swept.
    const holdStates = async () => {
      const [rows] = (await ns.db.raw(
        'SELECT h.state, COUNT(*) AS n FROM holds h JOIN transactions t ON t.id = h.id WHERE t.run_id = ? GROUP BY h.state',
        [summary.runId],
      )) as [{ state: string; n: number | string }[]];
      return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    };
    const expected = { captured: planned.captured, voided: planned.voided, expired: planned.expired };
    let states: Record<string, number> = {};
    await waitFor(
      async () => {
        states = await holdStates();
        return JSON.stringify(states) === JSON.stringify(Object.fromEntries(Object.entries(expected).filter(([, n]) => n > 0)));
      },
      30_000,
      `the holds to end as planned ${JSON.stringify(expected)}`,
    ).catch(() => expect(states).toEqual(expected));
    const verify = await txsim(['verify', '--run', summary.runId, '--wait', '60', '--json']);
    expect(verify.code, verify.stdout).toBe(0);
    const report = JSON.parse(verify.stdout) as VerifyJson & { run: { followUps: number; flows: unknown } };
    expect(report.run).toMatchObject({
      expected: 200 + summary.flows.published,
      followUps: summary.flows.published,
      lost: 0,
      duplicated: 0,
    });
    expect(report.run.flows).toMatchObject({ planned, holds: expected });
  });

  it('--rate paces the requests', async () => {
    const started = Date.now();
    const gen = await txsim(['gen', '60', '--via', serve.url, '--seed', 'via-rate', '--rate', '40', '--json'], { TXSIM_TOKEN: token });
    expect(gen.code, gen.stderr).toBe(0);
    // 60 requests at 40/s: the last is due at 1.475 s.
    expect(Date.now() - started).toBeGreaterThan(1_400);
    expect((JSON.parse(gen.stdout) as GenJson).confirmed).toBe(60);
  });

  it("the server's rate limit (429) is waited out and the request sent again, not counted as a failure", async () => {
    const limited = await startServe(ns.env, ['--rate-limit', '20', '--rate-burst', '5']);
    try {
      const gen = await txsim(['gen', '40', '--via', limited.url, '--seed', 'via-429', '--concurrency', '10', '--json'], {
        TXSIM_TOKEN: token,
      });
      expect(gen.code, gen.stderr).toBe(0);
      const summary = JSON.parse(gen.stdout) as GenJson & { http: { throttled: number } };
      expect(summary.confirmed).toBe(40);
      expect(summary.http.throttled).toBeGreaterThan(0);
      expect(summary.http.byStatus['429']).toBeUndefined();
    } finally {
      await limited.stop();
    }
  });

  it('a server that is not there: one line naming it, exit 3, no run recorded', async () => {
    const before = await ns.db('runs').count<{ n: number }[]>({ n: '*' });
    const gen = await txsim(['gen', '10', '--via', 'http://127.0.0.1:1', '--seed', 'via-down'], { TXSIM_TOKEN: token });
    expect(gen.code).toBe(3);
    expect(gen.stderr.trim().split('\n')).toHaveLength(1);
    expect(gen.stderr).toContain('txsim-serve unreachable at http://127.0.0.1:1');
    expect(gen.stderr).toContain('ECONNREFUSED');
    const after = await ns.db('runs').count<{ n: number }[]>({ n: '*' });
    expect(Number(after[0]!.n)).toBe(Number(before[0]!.n));
  });

  it('a token the server refuses (or none): exit 2 before a run is recorded, the token never printed', async () => {
    const runs = async () => Number((await ns.db('runs').count<{ n: number }[]>({ n: '*' }))[0]!.n);
    const before = await runs();
    const bogus = 'txsim_0123456789abcdef_notarealsecretnotarealsecret';
    const gen = await txsim(['gen', '50', '--via', serve.url, '--seed', 'via-badtoken'], { TXSIM_TOKEN: bogus });
    expect(gen.code).toBe(2);
    expect(gen.stderr.trim()).toMatch(
      new RegExp(
        `^txsim: TXSIM_TOKEN: ${serve.url.replace(/[.]/g, '\\.')} answered 401 \\(.*\\); gen --via needs an admin token .*; no run was recorded$`,
      ),
    );
    expect(gen.stdout + gen.stderr).not.toContain('notarealsecret');
    const empty = await txsim(['gen', '50', '--via', serve.url, '--seed', 'via-notoken'], { TXSIM_TOKEN: '' });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('answered 401');
    expect(empty.stderr).toContain('and TXSIM_TOKEN is empty');
    expect(await runs()).toBe(before);
    // Never taken as a flag (argv shows in ps): refused before anything is sent, and not echoed.
    const asFlag = await txsim(['gen', '50', '--via', serve.url, '--seed', 'via-badtoken', '--token', bogus]);
    expect(asFlag.code).toBe(2);
    expect(asFlag.stderr).toContain('--token: a token is never taken on the command line');
    expect(asFlag.stderr).toContain('export TXSIM_TOKEN instead');
    expect(asFlag.stdout + asFlag.stderr).not.toContain('notarealsecret');
  });

  it('usage errors: bad --via URLs, --concurrency, --token', async () => {
    for (const args of [
      ['--via', 'not a url'],
      ['--via', 'ftp://127.0.0.1:8080'],
      ['--via', 'http://127.0.0.1:8080/v1/transactions'],
      ['--via', 'http://admin:pw@127.0.0.1:8080'],
      ['--via', serve.url, '--concurrency', '0'],
      ['--via', serve.url, '--concurrency', 'many'],
      ['--token', 'abc'],
    ]) {
      const r = await txsim(['gen', '10', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).not.toContain(':pw@');
    }
  });
});
