import type { ConsumeMessage } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { HEADERS } from '../../src/amqp/topology.js';
import { decodeStageEvent, type StageEvent } from '../../src/domain/stage-event.js';
import { drawStage, parseStageSpec } from '../../src/domain/stage-spec.js';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { createAdminToken, startServe } from '../helpers/serve.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { peekQueue, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

/** Simulated processing stages (`txsim worker --stage …`) against the real broker and database. */
describe('worker processing stages', () => {
  let ns: TestNamespace;
  let worker: WorkerProcess | null = null;

  beforeAll(async () => {
    ns = await createTestNamespace('stg');
    expect((await runTxsim(['setup'], ns.env)).code).toBe(0);
    await ns.seed(10, { openingBalanceMinor: 1_000_000n });
  });

  afterEach(async () => {
    await worker?.stop();
    worker = null;
  });

  afterAll(async () => {
    await ns.cleanup();
  });

  const outcomesOf = (ids: readonly string[]) => ns.db('transactions').whereIn('id', ids).select('id', 'status', 'reason', 'detail');
  const countOf = async (ids: readonly string[]) => Number((await ns.db('transactions').whereIn('id', ids).count({ n: '*' }))[0]!.n);

  async function peek(queue: string) {
    const channel = await ns.amqp.createConfirmChannel();
    try {
      return await peekQueue(channel, queue);
    } finally {
      await channel.close();
    }
  }

  it('a stage that declines 1 % declines about 1 %, each with the stage reason, and exactly the drawn ones', async () => {
    const spec = 'fraud:1..3ms:decline=0.01';
    const n = 3_000;
    const bodies = Array.from({ length: n }, (_, i) => txBody({ accountId: 1 + (i % 10), amountMinor: 100 }));
    const ids = bodies.map((b) => b.id as string);
    worker = startWorker('decl', ns.env, ['--stage', spec, '--stage-seed', 'seven', '--batch-size', '100', '--prefetch', '400']);
    await publishRaw(
      ns.amqp,
      ns.topology,
      bodies.map((body) => ({ body })),
    );
    await waitFor(async () => (await countOf(ids)) === n, 90_000, `all ${n} outcomes`);
    const rows = await outcomesOf(ids);
    const declined = rows.filter((r) => r.status === 'rejected');
    // Binomial: mean n·p, within 4 standard deviations (a wrong share, e.g. 10 % or 0.1 %, is far outside).
    const p = 0.01;
    expect(Math.abs(declined.length - n * p)).toBeLessThanOrEqual(4 * Math.sqrt(n * p * (1 - p)));
    for (const r of declined) {
      expect(r.reason).toBe('declined_by_fraud');
      expect(r.detail).toMatch(/declined by stage fraud/);
    }
    // Seeded: exactly the ids the draw declines for this seed, first attempt.
    const drawn = ids.filter((id) => drawStage('seven', parseStageSpec(spec), id, 1).result === 'declined');
    expect(new Set(declined.map((r) => r.id))).toEqual(new Set(drawn));
    // Declines are rejects like any other: in the errors queue with the reason.
    // Asserted on the peek that found them all: a second peek right after can race the first one's put-backs (Raft).
    let errors: Awaited<ReturnType<typeof peek>> = [];
    await waitFor(
      async () => {
        errors = (await peek(ns.topology.errorsQueue)).filter((m) => drawn.includes(m.properties.messageId as string));
        return errors.length >= declined.length;
      },
      20_000,
      'the declines in the errors queue',
    );
    expect(errors).toHaveLength(declined.length);
    for (const m of errors) {
      expect(m.properties.headers?.[HEADERS.reason]).toBe('declined_by_fraud');
      expect(JSON.parse(m.content.toString()).reason).toBe('declined_by_fraud');
    }
    // inspect-errors knows the stage's reason.
    const inspect = await runTxsim(['inspect-errors', '--reason', 'declined_by_fraud', '--json'], ns.env);
    expect(inspect.code, inspect.stderr).toBe(0);
    const report = JSON.parse(inspect.stdout) as { messages: { reason: string }[] };
    expect(report.messages.length).toBeGreaterThan(0);
    expect(report.messages.every((m) => m.reason === 'declined_by_fraud')).toBe(true);
    // A declined deposit moved no money: the ten accounts grew by exactly the applied ones.
    const total = await ns.db('accounts').whereBetween('id', [1, 10]).sum({ s: 'balance_minor' });
    expect(BigInt(total[0]!.s)).toBe(10n * 1_000_000n + BigInt((n - declined.length) * 100));
  });

  it('a stage that always fails is retried through the delay queues, then parked with the failure record', async () => {
    const bodies = Array.from({ length: 3 }, () => txBody({ accountId: 2, amountMinor: 50 }));
    const ids = bodies.map((b) => b.id as string);
    worker = startWorker('flaky', ns.env, ['--stage', 'issuer:1..2ms:fail=1', '--max-attempts', '3']);
    await publishRaw(
      ns.amqp,
      ns.topology,
      bodies.map((body) => ({ body })),
    );
    await waitFor(
      async () => (await peek(ns.topology.deadQueue)).filter((m) => ids.includes(m.properties.messageId as string)).length === 3,
      40_000,
      'three parked messages',
    );
    const parked = (await peek(ns.topology.deadQueue)).filter((m) => ids.includes(m.properties.messageId as string));
    for (const m of parked) {
      expect(m.properties.headers?.[HEADERS.attempts]).toBe(3);
      expect(String(m.properties.headers?.[HEADERS.lastError])).toMatch(/^stage_failed: stage issuer failed \(simulated, attempt 3\)/);
    }
    // Never applied, never rejected: a system error has no outcome.
    expect(await countOf(ids)).toBe(0);
    await waitFor(
      async () => Number((await ns.db('transaction_failures').whereIn('transaction_id', ids).count({ n: '*' }))[0]!.n) === 9,
      10_000,
      'nine failure records',
    );
    const failures = await ns
      .db('transaction_failures')
      .whereIn('transaction_id', ids)
      .orderBy('seq')
      .select('transaction_id', 'state', 'attempt', 'error_code');
    for (const id of ids)
      expect(failures.filter((f) => f.transaction_id === id).map((f) => [f.state, f.attempt, f.error_code])).toEqual([
        ['retrying', 1, 'stage_failed'],
        ['retrying', 2, 'stage_failed'],
        ['parked', 3, 'stage_failed'],
      ]);
  });

  /** Binds a private queue to the feed exchange and collects the stage events on it. */
  async function collectStageEvents(): Promise<{ events: StageEvent[]; stop: () => Promise<void> }> {
    const channel = await ns.amqp.createChannel();
    const q = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    await channel.bindQueue(q.queue, ns.topology.feedExchange, 'stage.#');
    const events: StageEvent[] = [];
    await channel.consume(
      q.queue,
      (msg: ConsumeMessage | null) => {
        if (!msg) return;
        const decoded = decodeStageEvent(msg.content);
        if (!decoded.ok) throw new Error(`bad stage event: ${decoded.detail}`);
        events.push(decoded.event);
      },
      { noAck: true },
    );
    return { events, stop: () => channel.close() };
  }

  it('with --emit-stage-events a feed subscriber sees each stage start and end, in order', async () => {
    const feed = await collectStageEvents();
    try {
      const bodies = Array.from({ length: 5 }, (_, i) => txBody({ accountId: 3 + i, amountMinor: 10 }));
      const ids = bodies.map((b) => b.id as string);
      worker = startWorker('events', ns.env, ['--stage', 'fraud:1..5ms', '--stage', 'issuer:2..10ms', '--emit-stage-events']);
      await publishRaw(
        ns.amqp,
        ns.topology,
        bodies.map((body) => ({ body })),
      );
      await waitFor(async () => (await countOf(ids)) === 5, 30_000, 'five outcomes');
      await waitFor(() => feed.events.filter((e) => ids.includes(e.transactionId)).length === 20, 10_000, 'twenty stage events');
      for (const id of ids) {
        const walk = feed.events.filter((e) => e.transactionId === id);
        expect(walk.map((e) => `${e.stage}:${e.phase}:${e.result ?? '-'}`)).toEqual([
          'fraud:start:-',
          'fraud:end:passed',
          'issuer:start:-',
          'issuer:end:passed',
        ]);
        expect(walk.map((e) => e.stageIndex)).toEqual([0, 0, 1, 1]);
        const at = walk.map((e) => Date.parse(e.at));
        expect([...at].sort((a, b) => a - b)).toEqual(at);
        expect(walk[1]!.durationMs).toBeGreaterThanOrEqual(1);
        expect(walk.every((e) => e.workerId === 'events' && e.attempt === 1)).toBe(true);
      }
      expect((await outcomesOf(ids)).every((r) => r.status === 'applied')).toBe(true);
    } finally {
      await feed.stop();
    }
  });

  it("serve's live feed (WebSocket) shows a transaction walk through its stages, then its outcome", async () => {
    const serve = await startServe(ns.env);
    const socket = new WebSocket(`${serve.url.replace('http', 'ws')}/v1/stream?token=${await createAdminToken(ns.env)}`);
    try {
      const pushed: Record<string, unknown>[] = [];
      socket.on('message', (data: Buffer) => pushed.push(JSON.parse(data.toString('utf8')) as Record<string, unknown>));
      await new Promise<void>((resolve, reject) => {
        socket.on('open', () => resolve());
        socket.on('error', reject);
      });
      const body = txBody({ accountId: 4, amountMinor: 25 });
      socket.send(JSON.stringify({ subscribe: 'transaction', id: body.id }));
      await waitFor(() => pushed.some((e) => e.status === 'unknown'), 5_000, 'the subscription');
      worker = startWorker('ws', ns.env, ['--stage', 'fraud:1..3ms', '--stage', 'issuer:1..3ms:decline=1', '--emit-stage-events']);
      await publishRaw(ns.amqp, ns.topology, [{ body }]);
      await waitFor(() => pushed.some((e) => e.event === 'rejected'), 30_000, 'the outcome on the feed');
      const walk = pushed.filter((e) => e.event === 'stage' || e.event === 'rejected');
      expect(
        walk.map((e) => {
          const st = e.stage as { name: string; phase: string; result: string | null } | undefined;
          return st ? `${st.name}:${st.phase}:${st.result ?? '-'}` : `${String(e.event)}:${String(e.reason)}`;
        }),
      ).toEqual(['fraud:start:-', 'fraud:end:passed', 'issuer:start:-', 'issuer:end:declined', 'rejected:declined_by_issuer']);
      expect(walk[0]).toMatchObject({ transactionId: body.id, accountId: 4, attempt: 1 });
    } finally {
      socket.close();
      await serve.stop();
    }
  });

  it('stage latency does not serialize a batch: its messages walk their stages at the same time', async () => {
    const feed = await collectStageEvents();
    try {
      const n = 50;
      const bodies = Array.from({ length: n }, (_, i) => txBody({ accountId: 1 + (i % 10), amountMinor: 10 }));
      const ids = bodies.map((b) => b.id as string);
      // Published before the worker starts: its first batch is full.
      await publishRaw(
        ns.amqp,
        ns.topology,
        bodies.map((body) => ({ body })),
      );
      worker = startWorker('conc', ns.env, [
        '--stage',
        'slow:20..20ms',
        '--emit-stage-events',
        '--batch-size',
        String(n),
        '--prefetch',
        '100',
      ]);
      await waitFor(async () => (await countOf(ids)) === n, 30_000, `${n} outcomes`);
      await waitFor(() => feed.events.filter((e) => ids.includes(e.transactionId)).length === 2 * n, 10_000, 'every stage event');
      // The most walks in the stage at once, from the worker's own start and end times: a worker that
      // walked one message after another would never have two inside at the same time.
      const marks = feed.events
        .filter((e) => ids.includes(e.transactionId))
        .map((e) => ({ atMs: Date.parse(e.at), delta: e.phase === 'start' ? 1 : -1 }))
        .sort((a, b) => a.atMs - b.atMs || a.delta - b.delta);
      let inside = 0;
      let insideMax = 0;
      for (const m of marks) insideMax = Math.max(insideMax, (inside += m.delta));
      expect(insideMax).toBeGreaterThanOrEqual(n / 2);
    } finally {
      await feed.stop();
    }
  });

  it('a redelivered message that was already applied keeps its outcome, even where a stage now declines', async () => {
    const body = txBody({ accountId: 9, amountMinor: 700 });
    worker = startWorker('plain', ns.env, []);
    await publishRaw(ns.amqp, ns.topology, [{ body }]);
    await waitFor(async () => (await countOf([body.id as string])) === 1, 20_000, 'the first outcome');
    await worker.stop();
    const before = await ns.db('accounts').where('id', 9).first('balance_minor');
    // The same message again, behind it a marker: both are declined by the stage, one batch.
    const marker = txBody({ accountId: 9, amountMinor: 1 });
    worker = startWorker('decline-all', ns.env, ['--stage', 'fraud:1ms:decline=1', '--batch-wait', '200']);
    await publishRaw(ns.amqp, ns.topology, [{ body }, { body: marker }]);
    await waitFor(async () => (await countOf([marker.id as string])) === 1, 20_000, 'the marker outcome');
    const rows = await outcomesOf([body.id as string, marker.id as string]);
    expect(rows.find((r) => r.id === body.id)).toMatchObject({ status: 'applied', reason: null });
    expect(rows.find((r) => r.id === marker.id)).toMatchObject({ status: 'rejected', reason: 'declined_by_fraud' });
    expect((await ns.db('accounts').where('id', 9).first('balance_minor')).balance_minor).toBe(before.balance_minor);
    const errors = await peek(ns.topology.errorsQueue);
    expect(errors.some((m) => m.properties.messageId === body.id)).toBe(false);
  });
});
