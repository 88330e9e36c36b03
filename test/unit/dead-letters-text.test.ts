import { describe, expect, it } from 'vitest';
import { plural } from '../../src/commands/format.js';
import { formatReplayReport } from '../../src/commands/replay-dead.js';
import type { ReplayReport } from '../../src/dead-letters/replay-dead.js';

const report = (replayed: number): ReplayReport => ({
  queue: 'ns.dead',
  exchange: 'ns.transactions',
  scanned: replayed,
  replayed: Array.from({ length: replayed }, (_, i) => ({ id: `id-${i}`, routingKey: 'tx.deposit' })),
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
