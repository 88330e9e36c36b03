import { describe, expect, it } from 'vitest';
import type { ChannelModel } from 'amqplib';
import { topologyFor } from '../../src/amqp/topology.js';
import { noWorkerText, pendingText, verdictLine, waitingLine } from '../../src/commands/verify.js';
import { queueCounts } from '../../src/verify/broker-counts.js';
import { pendingStateOf } from '../../src/verify/verify.js';

const NOTHING_PENDING = { runIds: 0, statementLines: 0, missingInstances: [] };

/** A connection whose queues answer checkQueue from a table (absent: empty, no consumer). */
function fakeConnection(queues: Record<string, { messageCount: number; consumerCount: number }>): ChannelModel {
  const channel = {
    on: () => channel,
    checkQueue: (name: string) => Promise.resolve({ queue: name, ...(queues[name] ?? { messageCount: 0, consumerCount: 0 }) }),
    close: () => Promise.resolve(),
  };
  return { createChannel: () => Promise.resolve(channel) } as unknown as ChannelModel;
}

describe('verify: what is still pending', () => {
  it('run ids still queued are pending; statement lines only while an accounting consumer is connected', () => {
    expect(pendingStateOf({ pending: 200 }, null)).toEqual({ runIds: 200, statementLines: 0, missingInstances: [] });
    expect(pendingStateOf(null, { pending: 30, consumers: 1 })).toEqual({ runIds: 0, statementLines: 30, missingInstances: [] });
    expect(pendingStateOf(null, { pending: 30, consumers: 0 })).toEqual({ runIds: 0, statementLines: 0, missingInstances: [] });
    expect(pendingStateOf(null, { pending: 30, consumers: null })).toEqual({ runIds: 0, statementLines: 0, missingInstances: [] });
  });

  it('instances of a split run that have not reported are pending, named k/n', () => {
    const instances = { count: 3, reported: [2], missing: [1, 3] };
    expect(pendingStateOf({ pending: 0, instances }, null)).toEqual({ runIds: 0, statementLines: 0, missingInstances: ['1/3', '3/3'] });
    expect(pendingText({ runIds: 0, statementLines: 0, missingInstances: ['2/2'] })).toBe(
      'instance 2/2 of the run has not reported (no gen --instance has started it)',
    );
    expect(pendingText({ runIds: 5, statementLines: 0, missingInstances: ['1/3', '3/3'] })).toBe(
      '5 ids of the run still queued, instances 1/3, 3/3 of the run have not reported (no gen --instance has started them)',
    );
  });

  it('says what is pending, in the singular or plural', () => {
    expect(pendingText({ runIds: 200, statementLines: 1, missingInstances: [] })).toBe(
      '200 ids of the run still queued, 1 statement line on their way',
    );
    expect(pendingText({ runIds: 1, statementLines: 0, missingInstances: [] })).toBe('1 id of the run still queued');
    expect(pendingText({ runIds: 0, statementLines: 0, missingInstances: [] })).toBe('');
  });

  it('the waiting line counts what is pending and the seconds left', () => {
    expect(waitingLine({ pending: { runIds: 120, statementLines: 0, missingInstances: [] }, run: null }, 5.2)).toBe(
      'waiting: 120 ids of the run still queued (6 s left)',
    );
  });
});

describe('verify: ids no worker will take', () => {
  const unordered = topologyFor('ns', [100, 300]);
  const ordered = topologyFor('ns', [100, 300], 4);

  it('names the process queue when anything is queued and nobody consumes it (the delay queues empty into it)', async () => {
    const idle = fakeConnection({ 'ns.retry.100ms': { messageCount: 3, consumerCount: 0 } });
    expect(await queueCounts({ connection: idle, topology: unordered })).toEqual({ queued: 3, unconsumed: ['ns.transactions.process'] });
    const busy = fakeConnection({ 'ns.transactions.process': { messageCount: 5, consumerCount: 2 } });
    expect(await queueCounts({ connection: busy, topology: unordered })).toEqual({ queued: 5, unconsumed: [] });
    expect(await queueCounts({ connection: fakeConnection({}), topology: unordered })).toEqual({ queued: 0, unconsumed: [] });
    expect(await queueCounts({ connection: null, topology: unordered })).toEqual({ queued: 0, unconsumed: [] });
  });

  it('in an ordered namespace, names the partition queues that hold messages and have no consumer', async () => {
    const connection = fakeConnection({
      'ns.process.p0': { messageCount: 4, consumerCount: 0 },
      'ns.process.p1': { messageCount: 4, consumerCount: 1 },
      'ns.process.p2': { messageCount: 0, consumerCount: 0 },
      'ns.process.p3': { messageCount: 1, consumerCount: 0 },
    });
    expect(await queueCounts({ connection, topology: ordered })).toEqual({ queued: 9, unconsumed: ['ns.process.p0', 'ns.process.p3'] });
  });

  it('says so only while ids of the run are still queued, naming at most three queues', () => {
    const pending = { ...NOTHING_PENDING, runIds: 200 };
    expect(noWorkerText({ pending, run: { unconsumedQueues: ['ns.transactions.process'] } })).toBe(
      'no worker is consuming ns.transactions.process: start the workers (txsim worker)',
    );
    expect(noWorkerText({ pending: NOTHING_PENDING, run: { unconsumedQueues: ['ns.transactions.process'] } })).toBeNull();
    expect(noWorkerText({ pending, run: { unconsumedQueues: [] } })).toBeNull();
    expect(noWorkerText({ pending, run: null })).toBeNull();
    const five = ['p0', 'p1', 'p2', 'p3', 'p4'].map((p) => `ns.process.${p}`);
    expect(noWorkerText({ pending, run: { unconsumedQueues: five } })).toBe(
      'no worker is consuming ns.process.p0, ns.process.p1, ns.process.p2 and 2 more: start the workers (txsim worker)',
    );
  });
});

describe("verify's last line", () => {
  const reachable = { reachable: true, error: null };

  it('is OK only when everything is proved', () => {
    expect(verdictLine({ status: 'ok', pending: NOTHING_PENDING, run: null, broker: reachable })).toBe(
      'OK: the books balance and every id is accounted for',
    );
    expect(verdictLine({ status: 'failed', pending: NOTHING_PENDING, run: null, broker: reachable })).toBe(
      'FAILED: see the violations above',
    );
    const down = { reachable: false, error: 'rabbitmq unreachable at amqp://guest:***@127.0.0.1:1: connect ECONNREFUSED' };
    expect(verdictLine({ status: 'failed', pending: NOTHING_PENDING, run: null, broker: down })).toBe(
      'FAILED: see the violations above (and the queues could not be read: rabbitmq unreachable at amqp://guest:***@127.0.0.1:1: connect ECONNREFUSED)',
    );
  });

  it('pending: what is on its way, and that no worker takes it', () => {
    const pending = { ...NOTHING_PENDING, runIds: 2 };
    expect(verdictLine({ status: 'pending', pending, run: { unconsumedQueues: [] }, broker: reachable })).toBe(
      'PENDING: no violation so far, but 2 ids of the run still queued: not verified yet',
    );
    expect(verdictLine({ status: 'pending', pending, run: { unconsumedQueues: ['q'] }, broker: reachable })).toBe(
      'PENDING: no violation so far, but 2 ids of the run still queued: not verified yet; no worker is consuming q: start the workers (txsim worker)',
    );
  });

  it('incomplete: the books balance, the queues could not be read, and where', () => {
    const broker = { reachable: false, error: 'rabbitmq unreachable at amqp://guest:***@127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1' };
    expect(verdictLine({ status: 'incomplete', pending: NOTHING_PENDING, run: null, broker })).toBe(
      'INCOMPLETE: the books balance, but the queues could not be read (rabbitmq unreachable at amqp://guest:***@127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1): what is still queued or parked is not accounted for',
    );
  });
});
