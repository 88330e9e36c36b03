import { describe, expect, it } from 'vitest';
import { plural } from '../../src/commands/format.js';
import { formatReplayReport } from '../../src/commands/replay-dead.js';
import { replayEvents, replayRecords, type ReplayReport } from '../../src/dead-letters/replay-dead.js';

const report = (replayed: number): ReplayReport => ({
  queue: 'ns.dead',
  exchange: 'ns.transactions',
  scanned: replayed,
  replayed: Array.from({ length: replayed }, (_, i) => ({
    id: `5f0c0000-0000-4000-8000-00000000000${i}`,
    routingKey: 'tx.deposit',
    accountId: 7,
    type: 'deposit',
    amountMinor: '12345',
    currency: 'EUR',
    attemptsBefore: i === 0 ? 5 : null,
    replayedAt: '2026-12-07T02:00:00.000Z',
  })),
  failed: [],
  notFound: [],
});

describe('counts in command output read as English', () => {
  it('plural() is singular for exactly one, plural otherwise', () => {
    expect(plural(1, 'message')).toBe('1 message');
    expect(plural(0, 'message')).toBe('0 messages');
    expect(plural(2n, 'violation')).toBe('2 violations');
    expect(plural(1n, 'entry', 'entries')).toBe('1 entry');
    expect(plural(3, 'entry', 'entries')).toBe('3 entries');
  });

  it('replay-dead says "replayed 1 message", not "1 messages"', () => {
    expect(formatReplayReport(report(1)).split('\n')[0]).toBe('replayed 1 message from ns.dead to ns.transactions (scanned 1)');
    expect(formatReplayReport(report(2)).split('\n')[0]).toBe('replayed 2 messages from ns.dead to ns.transactions (scanned 2)');
  });
});

describe('the records of a replay', () => {
  it('one `replayed` record per replayed UUID, after the attempt it was parked after (0 when RabbitMQ parked it)', () => {
    const r = report(2);
    const withBadIds: ReplayReport = {
      ...r,
      replayed: [...r.replayed, { ...r.replayed[0]!, id: null }, { ...r.replayed[0]!, id: 'not-a-uuid' }],
    };
    expect(replayRecords(withBadIds)).toEqual([
      {
        transactionId: '5f0c0000-0000-4000-8000-000000000000',
        state: 'replayed',
        accountId: 7,
        attempt: 5,
        errorCode: 'replayed',
        errorMessage: 'put back on ns.transactions (tx.deposit) from ns.dead',
        workerId: 'txsim replay-dead',
        failedAt: new Date('2026-12-07T02:00:00.000Z'),
      },
      expect.objectContaining({ transactionId: '5f0c0000-0000-4000-8000-000000000001', attempt: 0 }),
    ]);
  });

  it('and one live feed event per record, saying the same, with the type and amount of the body', () => {
    const [first, ...rest] = replayEvents({ ...report(1), replayed: [...report(1).replayed, { ...report(1).replayed[0]!, id: null }] });
    expect(rest).toEqual([]);
    expect(first).toEqual({
      transactionId: '5f0c0000-0000-4000-8000-000000000000',
      state: 'replayed',
      attempt: 5,
      accountId: 7,
      type: 'deposit',
      amountMinor: '12345',
      currency: 'EUR',
      errorCode: 'replayed',
      errorMessage: 'put back on ns.transactions (tx.deposit) from ns.dead',
      workerId: 'txsim replay-dead',
      at: '2026-12-07T02:00:00.000Z',
    });
  });
});
