import type { Channel } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/amqp/topology.js';
import { decodeAttemptEvent } from '../../src/domain/attempt-event.js';
import type { FailureRecord } from '../../src/db/transaction-failures.js';
import { createLogger } from '../../src/log.js';
import { FailureReport, type FailedAttempt } from '../../src/worker/failure-report.js';
import { startWorkerHarness, topology, until, type Harness } from './worker-harness.js';

/** What mysql2 throws for a lock-wait timeout: a system error the worker retries. */
const lockWait = () =>
  Object.assign(new Error('Lock wait timeout exceeded; try restarting transaction'), { errno: 1205, code: 'ER_LOCK_WAIT_TIMEOUT' });

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

/** Attempt events the worker published (on its plain feed channel). */
function feedEvents(harness: Harness) {
  return harness.broker.current!.channels.flatMap((c) => c.published).filter((p) => p.exchange === topology.feedExchange);
}

describe('worker: failed attempts are reported after the message moved', () => {
  it('a retry and a park each publish an attempt event and record a row, with the attempt and the error', async () => {
    const records: FailureRecord[] = [];
    h = await startWorkerHarness({
      worker: { attemptsMax: 2 },
      apply: () => Promise.reject(lockWait()),
      recordFailures: (rows) => {
        records.push(...rows);
        return Promise.resolve();
      },
    });
    h.send(1);
    h.send(1, { [HEADERS.attempts]: 1 });
    await until(() => h!.broker.acked.length === 2 && records.length === 2, 'both settled and recorded', 5_000);
    expect(records.map((r) => [r.state, r.attempt, r.errorCode])).toEqual([
      ['retrying', 1, 'ER_LOCK_WAIT_TIMEOUT'],
      ['parked', 2, 'ER_LOCK_WAIT_TIMEOUT'],
    ]);
    expect(records[0]).toMatchObject({
      workerId: 'w-unit',
      accountId: 1,
      errorMessage: 'Lock wait timeout exceeded; try restarting transaction',
    });
    const events = feedEvents(h);
    expect(events.map((e) => e.routingKey)).toEqual(['retrying.1', 'parked.1']);
    const decoded = events.map((e) => decodeAttemptEvent(e.content));
    expect(decoded.map((d) => d.ok && [d.event.state, d.event.attempt, d.event.transactionId])).toEqual([
      ['retrying', 1, records[0]!.transactionId],
      ['parked', 2, records[1]!.transactionId],
    ]);
    // Transient: never persistent, never on the confirm channel of the retry and park publishes.
    expect(events.every((e) => e.options.persistent === false)).toBe(true);
    const confirmed = h.broker.current!.channels.filter((c) => c.confirm).flatMap((c) => c.published);
    expect(confirmed.map((p) => p.routingKey)).toEqual([topology.retryQueues[0]!.name, topology.deadQueue]);
  });

  it('a record that cannot be written costs the record, never the message', async () => {
    let writes = 0;
    h = await startWorkerHarness({
      apply: () => Promise.reject(lockWait()),
      recordFailures: () => {
        writes++;
        return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:3306'), { code: 'ECONNREFUSED' }));
      },
    });
    h.send(1);
    await until(() => h!.broker.acked.length === 1 && writes === 1, 'settled');
    expect(h.worker.metrics.retried).toBe(1);
    expect(feedEvents(h)).toHaveLength(1);
    await until(() => h!.messages('warn').includes('could not record failed attempts; carrying on'), 'the warning');
  });

  it('a retry publish that fails reports nothing: the message goes back to the queue unannounced', async () => {
    const records: FailureRecord[] = [];
    h = await startWorkerHarness({
      apply: () => Promise.reject(lockWait()),
      recordFailures: (rows) => {
        records.push(...rows);
        return Promise.resolve();
      },
    });
    h.broker.current!.channels.filter((c) => c.confirm).forEach((c) => (c.confirmMode = 'manual'));
    h.send(1);
    await until(() => h!.broker.current!.channels.some((c) => c.confirm && c.published.length === 1), 'the retry publish', 5_000);
    h.broker.current!.channels.filter((c) => c.confirm).forEach((c) => c.confirmAll(new Error('nack')));
    await until(
      () => h!.worker.metrics.retried === 0 && h!.messages('error').includes('could not move message; requeueing it'),
      'the requeue',
      5_000,
    );
    expect(records).toEqual([]);
    expect(feedEvents(h)).toEqual([]);
  });
});

function attempt(n: number): FailedAttempt {
  return {
    transactionId: '00000000-0000-4000-8000-' + String(n).padStart(12, '0'),
    state: 'retrying',
    attempt: 1,
    accountId: 7,
    type: 'deposit',
    amountMinor: '100',
    currency: 'EUR',
    errorCode: 'ER_LOCK_DEADLOCK',
    errorMessage: 'failed at amqp://guest:secret@broker:5672/ ' + 'x'.repeat(400),
    failedAt: new Date('2026-12-06T00:00:00Z'),
  };
}

describe('FailureReport', () => {
  it('writes one INSERT at a time, batching what failed meanwhile; masks URL passwords and bounds the message', async () => {
    const batches: number[] = [];
    let running = 0;
    let release!: () => void;
    const report = new FailureReport(
      { workerId: 'w', feedExchange: 'ns.feed', writeBatchMax: 3 },
      {
        channel: () => null,
        write: async (rows) => {
          expect(++running).toBe(1);
          batches.push(rows.length);
          if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve));
          for (const r of rows) {
            expect(r.errorMessage).not.toContain('secret');
            expect(r.errorMessage.length).toBeLessThanOrEqual(300);
          }
          running--;
        },
      },
      createLogger('silent'),
    );
    report.report(attempt(1));
    for (let i = 2; i <= 6; i++) report.report(attempt(i));
    await until(() => release !== undefined, 'the first write');
    release();
    await report.close(1_000);
    expect(batches).toEqual([1, 3, 2]);
    expect(report.eventsSkipped).toBe(6);
  });

  it('drops the oldest records beyond its buffer rather than grow', async () => {
    const written: FailureRecord[] = [];
    let release!: () => void;
    const report = new FailureReport(
      { workerId: 'w', feedExchange: 'ns.feed', bufferMax: 2 },
      {
        channel: () => null,
        write: async (rows) => {
          if (!release) await new Promise<void>((resolve) => (release = resolve));
          written.push(...rows);
        },
      },
      createLogger('silent'),
    );
    for (let i = 1; i <= 5; i++) report.report(attempt(i));
    await until(() => release !== undefined, 'the first write');
    release();
    await report.close(1_000);
    // The first went out at once; of the four behind it only the newest two were kept.
    expect(written.map((r) => r.transactionId.slice(-1))).toEqual(['1', '4', '5']);
    expect(report.recordsLost).toBe(2);
  });

  it('skips events while the channel is congested, until it drains', () => {
    const published: string[] = [];
    let writable = false;
    const listeners: (() => void)[] = [];
    const channel = {
      publish: (_exchange: string, routingKey: string) => {
        published.push(routingKey);
        return writable;
      },
      once: (_event: string, listener: () => void) => listeners.push(listener),
    } as unknown as Channel;
    const report = new FailureReport({ workerId: 'w', feedExchange: 'ns.feed' }, { channel: () => channel }, createLogger('silent'));
    report.report(attempt(1));
    report.report(attempt(2));
    expect(published).toHaveLength(1);
    writable = true;
    for (const l of listeners) l();
    report.report(attempt(3));
    expect(published).toHaveLength(2);
    expect(report.eventsSkipped).toBe(1);
  });
});
