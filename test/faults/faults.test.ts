import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { runIdForSeed } from '../../src/domain/ids.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { createAdminToken, httpRunOutcomes, startServe } from '../helpers/serve.js';
import { peekQueue, runTxsim, spawnTxsim, waitFor } from '../helpers/txsim.js';
import {
  canControlServices,
  database,
  rabbit,
  restoreServices,
  sleep,
  stage,
  verifyScenario,
  waitForConsumers,
  type Stage,
} from './fault-kit.js';

// The fault suite: each scenario runs real txsim processes against the real services, breaks
// something on purpose, and ends with `txsim verify --run`: nothing lost, nothing applied twice,
// the invariant holding, the workers still alive. Seeds are fixed so a failure can be replayed.
// Scenarios that stop RabbitMQ or MariaDB need root (CI has it); they restore the services after.

let current: Stage | null = null;
afterEach(async () => {
  await restoreServices();
  await current?.teardown();
  current = null;
});

/** Published counts within a scenario are small and paced, so each one takes seconds, not minutes. */
const gen = (s: Stage, count: number, seed: string, extra: string[] = []) =>
  spawnTxsim(['gen', String(count), '--seed', seed, '--json', '--reconnect-timeout', '120', ...extra], s.ns.env, 300_000);

/** What gen has recorded as published of the run of `seed` (saved every second; a BIGINT, which mysql2 may hand back as a string). */
const publishedOf = async (s: Stage, seed: string) =>
  Number(
    (await s.ns.db<{ id: string; published: number | string }>('runs').where('id', runIdForSeed(seed)).first('published'))?.published ?? 0,
  );

/** Waits until gen is connected and publishing (its first progress saved), rather than for a fixed time that a slow start can outlast. */
const genUnderWay = (s: Stage, seed: string) =>
  waitFor(async () => (await publishedOf(s, seed)) > 0, 15_000, `gen ${seed} to record progress`);

describe('fault suite', () => {
  it('1. kill -9 a worker repeatedly, including right after a commit and before its ack', async () => {
    const s = (current = await stage('kill', { workerIds: ['w2', 'w3'] }));
    // This replica SIGKILLs itself right after its 3rd commit, before acking that batch.
    s.startWorker('w1', ['--fault-crash-after-commits', '3']);
    // It must be consuming when the traffic comes, or w2 and w3 could take it all before its 3rd commit.
    await waitForConsumers(s, 3, 'w1 to consume beside w2 and w3');
    const run = gen(s, 6000, 'fault-kill', ['--rate', '1500']);
    await waitFor(
      () =>
        s.workers.find((w) => w.id.endsWith('-w1'))!.child.exitCode !== null ||
        s.workers.find((w) => w.id.endsWith('-w1'))!.child.signalCode !== null,
      20_000,
      'the self-crash',
    );
    for (const victim of ['w2', 'w3', 'w2']) {
      await sleep(700);
      const w = s.workers.find((x) => x.id.endsWith(`-${victim}`))!;
      await w.kill();
      s.startWorker(victim);
    }
    s.startWorker('w1');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    await verifyScenario(s, 'kill -9 workers (4 kills, one right after commit before ack)', runIdForSeed('fault-kill'));
  });

  it('2. kill -9 gen mid-run, then run it again with the same seed', async () => {
    const s = (current = await stage('gen'));
    const publishedSoFar = () => publishedOf(s, 'fault-gen');
    const first = gen(s, 5000, 'fault-gen', ['--rate', '1000']);
    // gen saves its progress every second; kill it once some has been saved, well before the end.
    await genUnderWay(s, 'fault-gen');
    first.child.kill('SIGKILL');
    await first.done;
    const partial = await publishedSoFar();
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(5000);
    const second = await gen(s, 5000, 'fault-gen').done;
    expect(second.code, second.stderr).toBe(0);
    await verifyScenario(
      s,
      'kill -9 gen, re-run same seed',
      runIdForSeed('fault-gen'),
      `first gen recorded ${partial} published before the kill`,
    );
  });

  it.skipIf(!canControlServices)('3. RabbitMQ stop_app / start_app in the middle of a run', async () => {
    const s = (current = await stage('rmq'));
    const run = gen(s, 6000, 'fault-rmq', ['--rate', '1000']);
    await genUnderWay(s, 'fault-rmq');
    await rabbit.stopApp();
    await sleep(4_000);
    await rabbit.startApp();
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    await verifyScenario(s, 'RabbitMQ stop_app 4 s / start_app', runIdForSeed('fault-rmq'));
  });

  it.skipIf(!canControlServices)("4. rabbitmqctl close_connection on the workers' connections", async () => {
    const s = (current = await stage('close'));
    const run = gen(s, 6000, 'fault-close', ['--rate', '1500']);
    await sleep(1_500);
    expect(await rabbit.closeConnections(`txsim worker ${s.ns.name}`)).toBe(3);
    await sleep(1_500);
    // The broker may take a moment to list the new connections: close whatever is there again.
    await rabbit.closeConnections(`txsim worker ${s.ns.name}`);
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    await verifyScenario(s, 'close_connection on every worker, twice', runIdForSeed('fault-close'));
  });

  it.skipIf(!canControlServices)('5. the database stopped and restarted in the middle of a run', async () => {
    const s = (current = await stage('db'));
    // 10 s of paced publishing, so the outage below lies well inside the run whatever the timing of
    // the shutdown: gen saves its run record every second, so 3 s down while gen runs covers at least
    // two saves, every time (a fixed sleep before the stop sometimes let the run end first, or missed the saves).
    const run = gen(s, 10_000, 'fault-db', ['--rate', '1000']);
    await genUnderWay(s, 'fault-db');
    await database.stop();
    await sleep(3_000);
    expect(run.child.exitCode, 'gen ended before the database came back').toBeNull();
    await database.start();
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    // A save failed during the outage and the record was written once the database was back.
    expect(result.stderr).toMatch(/database unreachable: keeping the run's counts and retrying the save/);
    expect(result.stderr).toMatch(/database back: run record saved/);
    await verifyScenario(s, 'MariaDB shut down 3 s mid-run (after the first progress save), restarted', runIdForSeed('fault-db'));
    // No message spent its attempts on the outage: nothing was parked.
    const channel = await s.ns.amqp.createConfirmChannel();
    expect(await peekQueue(channel, s.ns.topology.deadQueue)).toHaveLength(0);
    await channel.close();
  });

  it('6. forced deadlocks and lock-wait timeouts (two accounts locked in opposite orders from outside)', async () => {
    const s = (current = await stage('lock', { accounts: 2, workerArgs: ['--lock-wait-timeout', '1'] }));
    const counters = async () => {
      const [rows] = (await s.ns.db.raw(`SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_deadlocks', 'Innodb_row_lock_waits')`)) as [
        { Variable_name: string; Value: string }[],
      ];
      return Object.fromEntries(rows.map((r) => [r.Variable_name, Number(r.Value)]));
    };
    const before = await counters();
    // 10 s of traffic: the timeout hold after the six deadlock rounds must still find messages to delay, on a slow machine too.
    const run = gen(s, 6000, 'fault-lock', ['--rate', '600', '--accounts', '1-2']);
    await s.ns.db.raw('CREATE TABLE fault_scratch (n INT NOT NULL) ENGINE = InnoDB');
    await waitFor(
      async () => Number((await s.ns.db('transactions').where('run_id', runIdForSeed('fault-lock')).count({ n: '*' }))[0]!.n) > 50,
      20_000,
      'traffic to flow',
    );
    let outsideDeadlocks = 0;
    const hold = async (phase: 'deadlock' | 'timeout') => {
      const trx = await s.ns.db.transaction();
      try {
        await trx.raw('SET SESSION innodb_lock_wait_timeout = 5');
        if (phase === 'deadlock') {
          // Workers lock in ascending id order. Holding 2 for a moment lets a worker batch take 1 and
          // queue for 2; then asking for 1 closes the cycle: InnoDB detects a deadlock. The scratch
          // rows make this session the heavier one, so InnoDB rolls back the worker, not us.
          await trx.raw('INSERT INTO fault_scratch (n) SELECT seq FROM seq_1_to_300');
          await trx.raw('SELECT id FROM accounts WHERE id = 2 FOR UPDATE');
          await sleep(300);
          await trx.raw('SELECT id FROM accounts WHERE id = 1 FOR UPDATE');
          await sleep(100);
        } else {
          // Holding both longer than two of the workers' 1 s lock waits (the batch's, then the single
          // message's fallback): their statements time out (1205) and the messages are retried.
          await trx.raw('SELECT id FROM accounts WHERE id IN (1, 2) ORDER BY id FOR UPDATE');
          await sleep(2_500);
        }
      } catch (err) {
        if ((err as { errno?: number }).errno !== 1213) throw err;
        outsideDeadlocks++;
      } finally {
        await trx.rollback().catch(() => {});
      }
    };
    // Deadlocks first, while workers still apply whole batches (a batch that timed out falls back to
    // one message per transaction, which locks one account and cannot deadlock).
    for (let round = 0; round < 6; round++) await hold('deadlock');
    expect(run.child.exitCode, 'gen ended before the lock-wait timeouts: nothing left to delay').toBeNull();
    await hold('timeout');
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    const after = await counters();
    const deadlocks = after.Innodb_deadlocks! - before.Innodb_deadlocks!;
    const lockWaits = after.Innodb_row_lock_waits! - before.Innodb_row_lock_waits!;
    const observed = `InnoDB: ${deadlocks} deadlocks (${deadlocks - outsideDeadlocks} rolled back a worker's transaction), ${lockWaits} row lock waits`;
    await verifyScenario(
      s,
      'outside session: 6 rounds locking accounts 2→1 (deadlocks), then holding both 2.5 s (lock-wait timeouts)',
      runIdForSeed('fault-lock'),
      observed,
    );
    // The contention really happened: InnoDB counted deadlocks and lock waits, and messages whose
    // lock wait timed out twice (batch, then alone) went through the delay queue (attempts > 1).
    const retried = Number((await s.ns.db('transactions').where('attempts', '>', 1).count({ n: '*' }))[0]!.n);
    // Deadlocks beyond the outside session's own were suffered, and survived, by the workers.
    expect(deadlocks - outsideDeadlocks, observed).toBeGreaterThan(0);
    expect(lockWaits, observed).toBeGreaterThan(0);
    expect(retried, `${observed}; no message needed a second attempt`).toBeGreaterThan(0);
  });

  it('7. the poison set, sent with a plain AMQP client', async () => {
    const s = (current = await stage('poison', { workerIds: ['w1', 'w2'] }));
    await s.ns.seed(1, { firstId: 900, currency: 'USD' });
    const dup = txBody({ accountId: 3, amountMinor: 700 });
    const conflict = txBody({ accountId: 4, amountMinor: 800 });
    const poison: {
      name: string;
      body: Record<string, unknown> | string | Buffer;
      contentType?: string | null;
      messageId?: string;
      reason: string;
      detail: RegExp;
    }[] = [
      { name: 'malformed JSON', body: '{"id": "x", ', messageId: randomUUID(), reason: 'invalid_message', detail: /not valid JSON/ },
      { name: 'JSON not an object', body: '"just a string"', messageId: randomUUID(), reason: 'invalid_message', detail: /must be object/ },
      { name: 'missing field', body: { ...txBody(), accountId: undefined }, reason: 'invalid_message', detail: /accountId is required/ },
      { name: 'wrong type', body: txBody({ accountId: 'one' }), reason: 'invalid_message', detail: /accountId must be integer/ },
      { name: 'negative amount', body: txBody({ amountMinor: -100 }), reason: 'invalid_message', detail: /amountMinor must be >= 1/ },
      { name: 'zero amount', body: txBody({ amountMinor: 0 }), reason: 'invalid_message', detail: /amountMinor must be >= 1/ },
      { name: 'fractional amount', body: txBody({ amountMinor: 10.5 }), reason: 'invalid_message', detail: /amountMinor must be integer/ },
      { name: 'string amount', body: txBody({ amountMinor: '100' }), reason: 'invalid_message', detail: /amountMinor must be integer/ },
      { name: 'huge amount', body: txBody({ amountMinor: 1e15 }), reason: 'invalid_message', detail: /amountMinor must be <= / },
      { name: 'unknown account', body: txBody({ accountId: 987_654 }), reason: 'unknown_account', detail: /does not exist/ },
      { name: 'currency mismatch', body: txBody({ accountId: 900, currency: 'EUR' }), reason: 'currency_mismatch', detail: /holds USD/ },
      {
        name: 'oversized body',
        body: { ...txBody(), merchant: 'x'.repeat(20_000) },
        reason: 'invalid_message',
        detail: /bytes, more than/,
      },
      {
        name: 'non-JSON content type',
        body: txBody(),
        contentType: 'text/plain',
        reason: 'invalid_message',
        detail: /content_type is "text\/plain"/,
      },
      {
        name: 'refund naming both an authorization and a capture',
        body: txBody({ type: 'card_refund', accountId: 3, amountMinor: 100, authorizationId: randomUUID(), captureId: randomUUID() }),
        reason: 'invalid_message',
        detail: /names authorizationId or captureId, not both/,
      },
      {
        name: 'refund naming neither',
        body: txBody({ type: 'card_refund', accountId: 3, amountMinor: 100 }),
        reason: 'invalid_message',
        detail: /authorizationId or captureId is required/,
      },
      {
        name: 'captureId on a capture',
        body: txBody({ type: 'card_capture', accountId: 3, amountMinor: 100, authorizationId: randomUUID(), captureId: randomUUID() }),
        reason: 'invalid_message',
        detail: /captureId is only allowed on card_refund/,
      },
      {
        name: 'duplicate, different body',
        body: { ...conflict, amountMinor: 801 },
        reason: 'duplicate_conflict',
        detail: /different body/,
      },
    ];
    await publishRaw(s.ns.amqp, s.ns.topology, [{ body: dup }, { body: conflict }]);
    await waitFor(
      async () => (await s.ns.db('transactions').whereIn('id', [dup.id as string, conflict.id as string])).length === 2,
      20_000,
      'the originals',
    );
    await publishRaw(s.ns.amqp, s.ns.topology, [
      { body: dup },
      ...poison.map((p) => ({
        body: p.body,
        ...(p.contentType !== undefined ? { contentType: p.contentType } : {}),
        ...(p.messageId ? { messageId: p.messageId } : {}),
      })),
    ]);
    const idOf = (p: (typeof poison)[number]) => p.messageId ?? String((p.body as Record<string, unknown>).id);
    const errors = async () => {
      const channel = await s.ns.amqp.createConfirmChannel();
      try {
        // The worker's reject envelope; `id` is missing when the body had none to read.
        return (await peekQueue(channel, s.ns.topology.errorsQueue)).map(
          (m) => JSON.parse(m.content.toString()) as { id?: string | null; reason: string; detail: string },
        );
      } finally {
        await channel.close();
      }
    };
    // Asserted on the peek that found them all: a second peek right after can race the first one's put-backs.
    let seen: Awaited<ReturnType<typeof errors>> = [];
    await waitFor(
      async () => {
        seen = await errors();
        return poison.every((p) => seen.some((x) => x.id === idOf(p)));
      },
      30_000,
      'every poison message in the errors queue',
    );
    for (const p of poison) {
      const e = seen.find((x) => x.id === idOf(p));
      expect(e?.reason, p.name).toBe(p.reason);
      expect(e?.detail, p.name).toMatch(p.detail);
    }
    // Nothing else affected: exactly the two valid originals moved money, once each.
    const moved = Number((await s.ns.db('transactions').where('status', 'applied').whereNot('type', 'opening').count({ n: '*' }))[0]!.n);
    expect(moved).toBe(2);
    expect(seen.filter((x) => x.id === dup.id)).toHaveLength(0);
    const verify = await runTxsim(['verify', '--json'], s.ns.env);
    expect(verify.code, verify.stdout).toBe(0);
    for (const w of s.workers) expect(w.child.exitCode).toBeNull();
  });

  it.skipIf(!canControlServices)('8. publishing while the broker is down', async () => {
    const s = (current = await stage('down'));
    await rabbit.stopApp();
    const started = Date.now();
    const refused = await runTxsim(['gen', '2000', '--seed', 'fault-down'], s.ns.env, 60_000);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/rabbitmq unreachable at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672/);
    expect(Date.now() - started).toBeLessThan(15_000);
    await rabbit.startApp();
    const retry = await gen(s, 2000, 'fault-down').done;
    expect(retry.code, retry.stderr).toBe(0);
    await verifyScenario(s, 'gen with the broker down (exit 3 at once), then again after start_app', runIdForSeed('fault-down'));
  });

  it.skipIf(!canControlServices)('9. a RabbitMQ disk alarm raised and cleared mid-run', async () => {
    const s = (current = await stage('disk'));
    const run = gen(s, 4000, 'fault-disk', ['--rate', '1000']);
    await sleep(1_500);
    await rabbit.raiseDiskAlarm();
    await waitFor(async () => (await rabbit.blockedConnections()) > 0, 15_000, 'a publisher to be blocked');
    const stalled = Number((await s.ns.db('transactions').count({ n: '*' }))[0]!.n);
    await sleep(3_000);
    await rabbit.clearDiskAlarm();
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    await verifyScenario(
      s,
      'disk alarm for 3 s mid-run',
      runIdForSeed('fault-disk'),
      `${stalled} outcomes when the alarm blocked publishing`,
    );
  });

  it.skipIf(!canControlServices)(
    '10. txsim serve under load (2,500 POSTs from 50 clients), RabbitMQ stop_app / start_app mid-way',
    async () => {
      const s = (current = await stage('serve', { accounts: 50 }));
      const token = await createAdminToken(s.ns.env);
      // A short confirm timeout: a publish caught by the stop is answered 503 within 2 s.
      const serve = await startServe(s.ns.env, ['--confirm-timeout', '2000']);
      try {
        const count = 2_500;
        const run = spawnTxsim(
          ['gen', String(count), '--via', serve.url, '--concurrency', '50', '--rate', '125', '--seed', 'fault-serve', '--json'],
          { ...s.ns.env, TXSIM_TOKEN: token },
          300_000,
        );
        // 20 s of requests at 125/s. Stop the broker once a fifth are in, so the outage lies well inside the run
        // (at 200/s a slow stop_app plus the 3 s outage once outlasted the rest of the run).
        const submitted = async () => Number((await s.ns.db('api_submissions').count<{ n: number }[]>({ n: '*' }))[0]!.n);
        await waitFor(async () => (await submitted()) >= count / 5, 60_000, 'a fifth of the requests', 50);
        await rabbit.stopApp();
        await sleep(3_000);
        expect(run.child.exitCode, 'gen ended before the broker came back').toBeNull();
        await rabbit.startApp();
        const result = await run.done;
        // Exit 6: the requests of the outage were refused (503), as they should be; gen says so.
        expect(result.code, result.stderr).toBe(6);
        const summary = JSON.parse(result.stdout) as {
          runId: string;
          published: number;
          confirmed: number;
          failed: number;
          http: { byStatus: Record<string, number> };
        };
        expect(summary.published).toBe(count);
        expect(summary.http.byStatus['503']).toBeGreaterThan(0);
        expect(summary.confirmed + summary.failed).toBe(count);
        const outcomes = await httpRunOutcomes(s.ns.db, summary.runId, count, 90_000);
        // Every 202/200 was applied; every id not applied got a non-2xx or no answer.
        expect(outcomes.acceptedNotApplied).toEqual([]);
        expect(outcomes.notAppliedNotRefused).toEqual([]);
        expect(outcomes.accepted).toHaveLength(summary.confirmed);
        await verifyScenario(
          s,
          'txsim serve: 2,500 POSTs from 50 clients, RabbitMQ stop_app 3 s / start_app mid-way',
          summary.runId,
          `${summary.confirmed} answered 202/200 (all applied), ${outcomes.refusedNotApplied} refused and not applied (${JSON.stringify(summary.http.byStatus)})`,
        );
      } finally {
        await serve.stop();
      }
    },
  );

  it.skipIf(!canControlServices)('11. kill -9 of the RabbitMQ server mid-run, started again', async () => {
    const s = (current = await stage('rkill'));
    const run = gen(s, 6000, 'fault-rabbit-kill', ['--rate', '1000']);
    await genUnderWay(s, 'fault-rabbit-kill');
    const pid = await rabbit.killServer();
    await sleep(2_000);
    await rabbit.startServer();
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    await verifyScenario(
      s,
      'kill -9 of the RabbitMQ server mid-run, started again',
      runIdForSeed('fault-rabbit-kill'),
      `killed pid ${pid}`,
    );
  });

  it.skipIf(!canControlServices)('12. kill -9 of mariadbd mid-run, started again', async () => {
    const s = (current = await stage('dkill'));
    const run = gen(s, 10_000, 'fault-db-kill', ['--rate', '1000']);
    await waitFor(async () => Number((await s.ns.db('transactions').count({ n: '*' }))[0]!.n) > 500, 20_000, 'the first outcomes');
    const before = Number((await s.ns.db('transactions').count({ n: '*' }))[0]!.n);
    await database.kill();
    await sleep(3_000);
    await database.start();
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    await verifyScenario(
      s,
      'kill -9 of mariadbd mid-run (InnoDB crash recovery), started again',
      runIdForSeed('fault-db-kill'),
      `${before} outcomes before the kill`,
    );
  });

  it.skipIf(!canControlServices)('13. a RabbitMQ memory alarm raised and cleared mid-run', async () => {
    const s = (current = await stage('mem'));
    const watermark = await rabbit.memoryWatermark();
    const run = gen(s, 4000, 'fault-mem', ['--rate', '1000']);
    await sleep(1_500);
    await rabbit.raiseMemoryAlarm();
    await waitFor(async () => (await rabbit.blockedConnections()) > 0, 15_000, 'a publisher to be blocked');
    await sleep(3_000);
    await rabbit.clearMemoryAlarm(watermark);
    const result = await run.done;
    expect(result.code, result.stderr).toBe(0);
    await verifyScenario(s, `memory alarm for 3 s mid-run (watermark ${watermark} restored)`, runIdForSeed('fault-mem'));
  });

  it.skipIf(!canControlServices)("14. workers holding deliveries past the broker's consumer timeout", async () => {
    // A worker stuck in its database transaction keeps its deliveries unacked while its connection stays
    // healthy (heartbeats go on): exactly what RabbitMQ's consumer timeout is for. Here an outside session
    // holds every account row until the broker has closed a worker channel, then 5 s more; the workers' batches wait on those locks (their lock wait is longer)
    // while the broker, with a 5 s consumer timeout, closes their channels and requeues what they held.
    const restoreTimeout = await rabbit.shortenConsumerTimeout(5_000);
    try {
      const s = (current = await stage('ctimeout', { accounts: 20, workerIds: ['w1', 'w2'], workerArgs: ['--lock-wait-timeout', '60'] }));
      const run = gen(s, 3000, 'fault-ctimeout', ['--rate', '300']);
      await waitFor(
        async () => Number((await s.ns.db('transactions').where('run_id', runIdForSeed('fault-ctimeout')).count({ n: '*' }))[0]!.n) > 100,
        20_000,
        'traffic to flow',
      );
      const trx = await s.ns.db.transaction();
      try {
        await trx.raw('SELECT id FROM accounts ORDER BY id FOR UPDATE');
        await waitFor(
          () => s.workers.some((w) => /timed out/i.test(w.output())),
          30_000,
          'the broker to close a worker channel for the consumer timeout',
        );
        await sleep(5_000);
      } finally {
        await trx.rollback().catch(() => {});
      }
      const result = await run.done;
      expect(result.code, result.stderr).toBe(0);
      const closes = s.workers.reduce(
        (n, w) => n + (w.output().match(/delivery acknowledgement on channel \d+ timed out/g)?.length ?? 0),
        0,
      );
      await verifyScenario(
        s,
        'every account row locked from outside past a 5 s consumer timeout (channels closed, deliveries requeued)',
        runIdForSeed('fault-ctimeout'),
        `${closes} worker channel(s) closed by the broker for the consumer timeout`,
      );
      expect(closes).toBeGreaterThan(0);
    } finally {
      await restoreTimeout();
    }
  });
});
