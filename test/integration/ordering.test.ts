import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import { WebSocket } from 'ws';
import { createTestNamespace, type TestNamespace } from '../helpers/namespace.js';
import { createAdminToken, startServe } from '../helpers/serve.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { peekQueue, queueState, runTxsim, startWorker, waitFor, type WorkerProcess } from '../helpers/txsim.js';

// Per-account ordering (setup --partitions): the topology, the partition leases shared by real
// worker processes (join, crash, rebalance), gen's sequence numbers checked by verify, and the
// in-place retry of a system error that holds the account's later messages back.

const PARTITIONS = 4;
/** Lease time of the workers (DEFAULT_LEASE_TIMING) plus room for a heartbeat and a subscribe. */
const REBALANCE_MS = 20_000;

async function managementGet(ns: TestNamespace, path: string): Promise<Record<string, unknown> & { arguments?: Record<string, unknown> }> {
  const url = new URL(ns.config.rabbitmqApiUrl);
  const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  const res = await fetch(`${url.origin}${path}`, { headers: { authorization: `Basic ${auth}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

/** Partitions held per worker id, from the lease table (live leases only). */
async function holdings(ns: TestNamespace): Promise<Map<string, number[]>> {
  const rows = (await ns.db.raw(
    'SELECT partition_no, worker_id FROM partition_leases WHERE namespace = ? AND worker_id IS NOT NULL AND expires_at > NOW(3) ORDER BY partition_no',
    [ns.name],
  )) as [{ partition_no: number; worker_id: string }[]];
  const held = new Map<string, number[]>();
  for (const r of rows[0]) held.set(r.worker_id, [...(held.get(r.worker_id) ?? []), Number(r.partition_no)]);
  return held;
}

/** The lease table shows exactly these share sizes (sorted), every partition held, and each partition queue has one consumer. */
async function balancedAs(ns: TestNamespace, shares: number[]): Promise<boolean> {
  const held = await holdings(ns);
  const sizes = [...held.values()].map((p) => p.length).sort((a, b) => b - a);
  if (JSON.stringify(sizes) !== JSON.stringify(shares)) return false;
  for (const q of ns.topology.ordered!.partitionQueues) if ((await queueState(ns.amqp, q)).consumerCount !== 1) return false;
  return true;
}

/**
 * The messages of a queue, read without taking them: basic.get is refused on single-active-consumer
 * quorum queues, so this consumes (no ack) until it holds as many as the queue did, then closes the
 * channel, which hands them back.
 */
async function peekByConsuming(ns: TestNamespace, queue: string): Promise<ConsumeMessage[]> {
  const channel = await ns.amqp.createChannel();
  const messages: ConsumeMessage[] = [];
  try {
    // As many as the queue holds now (published with confirms before this): waited for, not a fixed
    // time that a slow machine could overrun.
    const { messageCount } = await channel.checkQueue(queue);
    await channel.prefetch(1_000);
    await channel.consume(queue, (m) => m && messages.push(m), { noAck: false });
    await waitFor(() => messages.length >= messageCount, 10_000, `${messageCount} messages of ${queue}`, 20);
  } finally {
    await channel.close();
  }
  return messages;
}

/** The ordered parts of a namespace's topology (its cleanup() knows only the unordered ones). */
async function deleteOrdered(ns: TestNamespace, partitions: number): Promise<void> {
  const { topologyFor } = await import('../../src/amqp/topology.js');
  const ordered = topologyFor(ns.name, ns.config.retryDelaysMs, partitions).ordered!;
  const channel = await ns.amqp.createChannel();
  try {
    for (const q of ordered.partitionQueues) await channel.deleteQueue(q);
    await channel.deleteExchange(ordered.exchange);
  } finally {
    await channel.close().catch(() => {});
  }
}

async function outcome(ns: TestNamespace, id: string): Promise<{ status: string; attempts: number; apply_order: string } | undefined> {
  return ns.db('transactions').where('id', id).first('status', 'attempts', 'apply_order');
}

describe('ordered topology (setup --partitions)', () => {
  let ns: TestNamespace;
  const workers = new Map<string, WorkerProcess>();
  const start = (id: string) =>
    workers.set(id, startWorker(id, ns.env, ['--max-attempts', '3', '--lock-wait-timeout', '1', '--batch-size', '20', '--prefetch', '50']));

  beforeAll(async () => {
    ns = await createTestNamespace('ord');
    const setup = await runTxsim(['setup', '--partitions', String(PARTITIONS), '--json'], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    expect(JSON.parse(setup.stdout)).toMatchObject({ partitions: PARTITIONS });
    await ns.seed(20, { openingBalanceMinor: 1_000_000n });
    // The namespace's own topology object, ordered, so the test reads the partition queue names.
    const { topologyFor } = await import('../../src/amqp/topology.js');
    ns = { ...ns, topology: topologyFor(ns.name, ns.config.retryDelaysMs, PARTITIONS) };
  }, 60_000);

  afterAll(async () => {
    await Promise.all([...workers.values()].map((w) => w.stop()));
    if (ns) await deleteOrdered(ns, PARTITIONS).catch(() => {});
    await ns?.cleanup();
  });

  it('declares the consistent-hash exchange and the SAC quorum partition queues, and leaves the process queue unbound', async () => {
    const ordered = ns.topology.ordered!;
    expect(ordered.partitionQueues).toEqual([0, 1, 2, 3].map((k) => `${ns.name}.process.p${k}`));
    const exchange = await managementGet(ns, `/api/exchanges/%2F/${encodeURIComponent(ordered.exchange)}`);
    expect(exchange.type).toBe('x-consistent-hash');
    expect(exchange.arguments).toMatchObject({ 'hash-header': HEADERS.accountId });
    for (const q of ordered.partitionQueues) {
      const queue = await managementGet(ns, `/api/queues/%2F/${encodeURIComponent(q)}`);
      expect(queue.arguments).toMatchObject({ 'x-queue-type': 'quorum', 'x-single-active-consumer': true });
    }
    const processBindings = (await managementGet(
      ns,
      `/api/queues/%2F/${encodeURIComponent(ns.topology.processQueue)}/bindings`,
    )) as unknown as {
      source: string;
    }[];
    expect(processBindings.filter((b) => b.source !== '')).toEqual([]);

    // Before any worker: every message lands in a partition queue, all of one account in the same one.
    const bodies = Array.from({ length: 40 }, (_, i) => txBody({ accountId: (i % 20) + 1, amountMinor: 100 }));
    await publishRaw(
      ns.amqp,
      ns.topology,
      bodies.map((body) => ({ body })),
    );
    const where = new Map<number, Set<string>>();
    let total = 0;
    for (const q of ordered.partitionQueues) {
      for (const m of await peekByConsuming(ns, q)) {
        total++;
        const account = Number(JSON.parse(m.content.toString()).accountId);
        where.set(account, new Set([...(where.get(account) ?? []), q]));
      }
    }
    expect(total).toBe(40);
    expect((await queueState(ns.amqp, ns.topology.processQueue)).messageCount).toBe(0);
    for (const queues of where.values()) expect(queues.size).toBe(1);
    // 20 accounts over 4 partitions: more than one partition is used.
    expect(new Set([...where.values()].flatMap((s) => [...s])).size).toBeGreaterThan(1);

    // watch shows that backlog in the partition queues (it reads the partition count setup recorded).
    type WatchQueue = { name: string; role: string; ready: number | null };
    let queues: WatchQueue[] = [];
    await waitFor(
      async () => {
        const r = await runTxsim(['watch', '--json', '--listen', '0'], ns.env);
        expect(r.code, r.stderr).toBe(0);
        queues = (JSON.parse(r.stdout) as { queues: { queues: WatchQueue[] } }).queues.queues;
        return queues.filter((q) => q.role === 'partition').reduce((sum, q) => sum + (q.ready ?? 0), 0) === 40;
      },
      30_000,
      'watch to show the 40 messages in the partition queues',
    );
    expect(queues.filter((q) => q.role === 'partition').map((q) => q.name)).toEqual(ordered.partitionQueues);
    expect(queues.find((q) => q.role === 'process')).toMatchObject({ ready: 0 });

    // So does the dashboard of `txsim serve` (its WebSocket's stats frames).
    const serve = await startServe(ns.env);
    try {
      const socket = new WebSocket(`${serve.url.replace(/^http/, 'ws')}/v1/dashboard/ws`, {
        headers: { authorization: `Bearer ${await createAdminToken(ns.env)}` },
      });
      const partitionReady = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no dashboard frame with the partitions holding 40 within 30 s')), 30_000);
        socket.on('error', reject);
        socket.on('message', (data: Buffer) => {
          const frame = JSON.parse(data.toString()) as { type: string; queues?: { queues: WatchQueue[] } | null };
          const rows = frame.type === 'frame' ? (frame.queues?.queues.filter((q) => q.role === 'partition') ?? []) : [];
          const ready = rows.reduce((sum, q) => sum + (q.ready ?? 0), 0);
          if (rows.length === PARTITIONS && ready === 40) {
            clearTimeout(timer);
            resolve(ready);
          }
        });
      });
      socket.close();
      expect(partitionReady).toBe(40);
    } finally {
      await serve.stop();
    }
  });

  it('workers share the partitions fairly and rebalance when one joins or dies', async () => {
    start('w1');
    await waitFor(() => balancedAs(ns, [4]), REBALANCE_MS, 'w1 to hold all 4 partitions');
    start('w2');
    await waitFor(() => balancedAs(ns, [2, 2]), REBALANCE_MS, 'w1 and w2 to hold 2 each');
    start('w3');
    await waitFor(() => balancedAs(ns, [2, 1, 1]), REBALANCE_MS, 'a 2/1/1 split over three workers');
    const w3Held = (await holdings(ns)).get('w3')!;
    expect(w3Held.length).toBeGreaterThanOrEqual(1);
    // A crash: no goodbye, the lease must expire.
    await workers.get('w3')!.kill();
    workers.delete('w3');
    await waitFor(() => balancedAs(ns, [2, 2]), REBALANCE_MS, "w3's partitions re-claimed by w1 and w2");
    const after = await holdings(ns);
    expect([...after.keys()].sort()).toEqual(['w1', 'w2']);
    start('w4');
    await waitFor(() => balancedAs(ns, [2, 1, 1]), REBALANCE_MS, 'w4 to get its share');
    // The 40 messages published before any worker were all applied.
    await waitFor(async () => Number((await ns.db('transactions').count({ n: '*' }))[0]!.n) >= 40, 30_000, 'the early messages to apply');
  }, 120_000);

  it('a gen run with hot accounts through three workers verifies with no ordering violation', async () => {
    const gen = await runTxsim(['gen', '600', '--seed', 'ordering-1', '--accounts-dist', 'hot:0.8/3', '--json'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const runId = (JSON.parse(gen.stdout) as { runId: string }).runId;
    const verify = await runTxsim(['verify', '--run', runId, '--wait', '90', '--json'], ns.env);
    const report = JSON.parse(verify.stdout) as {
      ok: boolean;
      ordering: { applicable: boolean; violations: number; examples: string[] };
      run: { lost: number; duplicated: number };
    };
    expect(report.ordering).toMatchObject({ applicable: true, violations: 0 });
    expect(report.run).toMatchObject({ lost: 0, duplicated: 0 });
    expect(verify.code, verify.stdout).toBe(0);
    // Every outcome of the run carries its sequence number, and more than one worker applied them.
    const rows = (await ns.db.raw(
      'SELECT COUNT(*) AS n, COUNT(account_seq) AS s, COUNT(DISTINCT worker_id) AS w FROM transactions WHERE run_id = ?',
      [runId],
    )) as [{ n: number; s: number; w: number }[]];
    expect(Number(rows[0][0]!.s)).toBe(Number(rows[0][0]!.n));
    expect(Number(rows[0][0]!.w)).toBeGreaterThan(1);
  }, 180_000);

  it('a system error retries in place: the account waits, then its later message applies after it', async () => {
    // The transfer 5 → 7 waits on account 7's row lock (held here); the deposit on 5 needs no lock
    // on 7, so in an unordered namespace it would be applied while the transfer sits in a delay queue.
    const holder = await ns.db.transaction();
    const first = txBody({ type: 'transfer', accountId: 5, toAccountId: 7, amountMinor: 500 });
    const second = txBody({ accountId: 5, amountMinor: 100 });
    try {
      await holder.raw('SELECT id FROM accounts WHERE id = 7 FOR UPDATE');
      await publishRaw(ns.amqp, ns.topology, [
        { body: first, headers: { [HEADERS.accountSeq]: 1 } },
        { body: second, headers: { [HEADERS.accountSeq]: 2 } },
      ]);
      // Once the first has failed an attempt (1 s lock wait), the second is still behind it.
      await waitFor(
        async () =>
          Number(
            (
              await ns
                .db('transaction_failures')
                .where('transaction_id', first.id as string)
                .count({ n: '*' })
            )[0]!.n,
          ) >= 1,
        20_000,
        "the first message's failed attempt",
      );
      expect(await outcome(ns, second.id as string)).toBeUndefined();
      for (const q of ns.topology.retryQueues) expect((await queueState(ns.amqp, q.name)).messageCount).toBe(0);
    } finally {
      await holder.rollback();
    }
    await waitFor(async () => (await outcome(ns, second.id as string)) !== undefined, 20_000, 'the second message to apply');
    const a = (await outcome(ns, first.id as string))!;
    const b = (await outcome(ns, second.id as string))!;
    expect(a.status).toBe('applied');
    expect(a.attempts).toBeGreaterThanOrEqual(2);
    expect(b.status).toBe('applied');
    expect(BigInt(a.apply_order)).toBeLessThan(BigInt(b.apply_order));
  }, 60_000);

  it('a capture deferred for its authorization holds back what follows it in its batch, as a system error does', async () => {
    // The capture names an authorization that never comes: deferred (attempts 1 and 2), then rejected
    // unknown_authorization on the last. The deposit behind it, same account, same batch, waits for that.
    const capture = txBody({ type: 'card_capture', accountId: 9, authorizationId: randomUUID(), amountMinor: 100 });
    const deposit = txBody({ accountId: 9, amountMinor: 100 });
    await publishRaw(ns.amqp, ns.topology, [
      { body: capture, headers: { [HEADERS.accountSeq]: 1 } },
      { body: deposit, headers: { [HEADERS.accountSeq]: 2 } },
    ]);
    await waitFor(async () => (await outcome(ns, capture.id as string)) !== undefined, 30_000, 'the capture to be rejected');
    await waitFor(async () => (await outcome(ns, deposit.id as string)) !== undefined, 20_000, 'the deposit to apply');
    const a = (await outcome(ns, capture.id as string))!;
    const b = (await outcome(ns, deposit.id as string))!;
    expect(a).toMatchObject({ status: 'rejected', attempts: 3 });
    expect(b).toMatchObject({ status: 'applied', attempts: 1 });
    // Before, the deposit was applied in the capture's first batch, before the capture's outcome.
    expect(BigInt(a.apply_order)).toBeLessThan(BigInt(b.apply_order));
  }, 60_000);

  it('after the attempt limit the message is parked and the account’s later messages proceed', async () => {
    const holder = await ns.db.transaction();
    const stuck = txBody({ type: 'transfer', accountId: 6, toAccountId: 8, amountMinor: 500 });
    const later = txBody({ accountId: 6, amountMinor: 100 });
    const isParked = async () => {
      const channel = await ns.amqp.createConfirmChannel();
      try {
        return (await peekQueue(channel, ns.topology.deadQueue)).find((m) => m.properties.messageId === stuck.id);
      } finally {
        await channel.close();
      }
    };
    let parkedSeen: Awaited<ReturnType<typeof isParked>>;
    try {
      await holder.raw('SELECT id FROM accounts WHERE id = 8 FOR UPDATE');
      await publishRaw(ns.amqp, ns.topology, [
        { body: stuck, headers: { [HEADERS.accountSeq]: 1 } },
        { body: later, headers: { [HEADERS.accountSeq]: 2 } },
      ]);
      await waitFor(async () => (parkedSeen = await isParked()) !== undefined, 30_000, 'the stuck transfer to be parked');
      // Still holding account 8: the later deposit on 6 goes on once the transfer is out of the way.
      await waitFor(async () => (await outcome(ns, later.id as string))?.status === 'applied', 20_000, 'the later message to apply');
    } finally {
      await holder.rollback();
    }
    // The peek that found it: peeking again could race that peek's put-back (Raft).
    const parked = parkedSeen!;
    expect(parked.properties.headers?.[HEADERS.attempts]).toBe(3);
    expect(String(parked.properties.headers?.[HEADERS.lastError])).toMatch(/LOCK_WAIT_TIMEOUT|1205/);
    expect(await outcome(ns, stuck.id as string)).toBeUndefined();
    // The same failure record as a retry through the delay queues: attempts 1 and 2 retried (in place), 3 parked.
    await waitFor(
      async () =>
        Number(
          (
            await ns
              .db('transaction_failures')
              .where('transaction_id', stuck.id as string)
              .count({ n: '*' })
          )[0]!.n,
        ) >= 3,
      10_000,
      'the failure records',
    );
    const failures = await ns
      .db('transaction_failures')
      .where('transaction_id', stuck.id as string)
      .orderBy('seq')
      .select('state', 'attempt');
    expect(failures.map((f: { state: string; attempt: number }) => `${f.state}@${f.attempt}`)).toEqual([
      'retrying@1',
      'retrying@2',
      'parked@3',
    ]);
  }, 60_000);
});

describe("verify's ordering check", () => {
  let ns: TestNamespace;

  beforeAll(async () => {
    ns = await createTestNamespace('ordchk');
  });

  afterAll(async () => {
    if (ns) await deleteOrdered(ns, 2).catch(() => {});
    await ns?.cleanup();
  });

  /** An outcome row as a worker writes it, with gen's sequence number; rows are written in the order given. */
  async function outcomeRow(accountId: number, seq: number): Promise<string> {
    const id = randomUUID();
    await ns.db('transactions').insert({
      id,
      type: 'deposit',
      account_id: accountId,
      amount_minor: 1,
      currency: 'EUR',
      body_hash: 'x'.repeat(64),
      status: 'rejected',
      reason: 'unknown_account',
      worker_id: 'test',
      processed_at: new Date(),
      account_seq: seq,
      seq_stream: 1,
    });
    return id;
  }

  async function verifyJson() {
    const verify = await runTxsim(['verify', '--json'], ns.env);
    return {
      code: verify.code,
      report: JSON.parse(verify.stdout) as { ordering: { applicable: boolean; violations: number; examples: string[] } },
    };
  }

  it('counts an account applied out of sequence order in an ordered namespace, and is not applicable in an unordered one', async () => {
    expect((await runTxsim(['setup', '--partitions', '2'], ns.env)).code).toBe(0);
    await outcomeRow(1, 1);
    await outcomeRow(1, 3);
    const late = await outcomeRow(1, 2);
    await outcomeRow(2, 1);
    await outcomeRow(2, 2);
    const ordered = await verifyJson();
    expect(ordered.report.ordering).toMatchObject({ applicable: true, violations: 1 });
    expect(ordered.report.ordering.examples[0]).toContain(late);
    expect(ordered.report.ordering.examples[0]).toMatch(/account 1 seq 2 applied after seq 3/);
    expect(ordered.code).not.toBe(0);

    expect((await runTxsim(['setup', '--partitions', '0'], ns.env)).code).toBe(0);
    const unordered = await verifyJson();
    expect(unordered.report.ordering).toMatchObject({ applicable: false, violations: 0, examples: [] });
  }, 60_000);
});

describe('ordered topology with a flaky processing stage', () => {
  let ns: TestNamespace;
  const workers: WorkerProcess[] = [];
  const partitions = 2;

  beforeAll(async () => {
    // Short retry steps: in ordered mode they are the in-place waits.
    ns = await createTestNamespace('ordst', { TXSIM_RETRY_DELAYS: '20,50' });
    const setup = await runTxsim(['setup', '--partitions', String(partitions)], ns.env);
    expect(setup.code, setup.stderr).toBe(0);
    await ns.seed(5, { openingBalanceMinor: 1_000_000n });
    for (const id of ['s1', 's2'])
      workers.push(
        startWorker(id, ns.env, ['--stage', 'flaky:1ms:fail=0.2', '--max-attempts', '10', '--batch-size', '20', '--prefetch', '50']),
      );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    if (ns) await deleteOrdered(ns, partitions).catch(() => {});
    await ns?.cleanup();
  });

  it("a stage failure is retried in place: the batch's earlier messages first, its later ones after it, no ordering violation", async () => {
    const gen = await runTxsim(['gen', '300', '--seed', 'ordering-stages', '--accounts-dist', 'hot:0.8/2', '--json'], ns.env);
    expect(gen.code, gen.stderr).toBe(0);
    const runId = (JSON.parse(gen.stdout) as { runId: string }).runId;
    const verify = await runTxsim(['verify', '--run', runId, '--wait', '90', '--json'], ns.env);
    const report = JSON.parse(verify.stdout) as {
      ordering: { applicable: boolean; violations: number; examples: string[] };
      run: { lost: number; duplicated: number; parked: number };
    };
    expect(report.ordering).toMatchObject({ applicable: true, violations: 0 });
    expect(report.run).toMatchObject({ lost: 0, duplicated: 0, parked: 0 });
    expect(verify.code, verify.stdout).toBe(0);
    // The stage really failed some attempts, and those messages were applied on a later one.
    const retried = (await ns.db.raw('SELECT COUNT(*) AS n FROM transactions WHERE run_id = ? AND attempts > 1', [runId])) as [
      { n: number }[],
    ];
    expect(Number(retried[0][0]!.n)).toBeGreaterThan(0);
  }, 180_000);
});
