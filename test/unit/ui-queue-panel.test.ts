import { describe, expect, it } from 'vitest';
import { mergeRole, mostImportantQueues } from '../../src/ui/QueuePanel.js';
import { queueBodyRows } from '../../src/ui/watch-state.js';
import type { QueueDepth } from '../../src/watch/queue-depths.js';

const depth = (name: string, role: QueueDepth['role'], ready: number | null, unacked: number | null = null): QueueDepth => ({
  name,
  role,
  exists: true,
  ready,
  unacked,
  consumers: 1,
  inPerS: null,
  outPerS: null,
});

const ordered = [
  depth('ns.transactions.process', 'process', 0),
  depth('ns.process.p0', 'partition', 120, 10),
  depth('ns.process.p1', 'partition', 30, 5),
  depth('ns.process.p2', 'partition', 0, 0),
  depth('ns.retry.100ms', 'retry', 2),
  depth('ns.errors', 'errors', 1),
  depth('ns.dead', 'dead', 0),
  depth('ns.accounting.statements', 'accounting', 0),
];

describe('the queue panel of an ordered namespace', () => {
  it('sums the partitions into one row where the first one was, keeping the rest in order', () => {
    const merged = mergeRole(ordered, 'partition');
    expect(merged.map((q) => q.name)).toEqual([
      'ns.transactions.process',
      'partitions ×3',
      'ns.retry.100ms',
      'ns.errors',
      'ns.dead',
      'ns.accounting.statements',
    ]);
    expect(merged[1]).toMatchObject({ role: 'partition', ready: 150, unacked: 15, consumers: 3, inPerS: null, outPerS: null });
    // A role with a single queue is left as it is.
    expect(mergeRole(ordered, 'retry')).toEqual(ordered);
  });

  it('keeps the partitions before everything else when rows are short, and counts their row in the layout', () => {
    const merged = mergeRole(ordered, 'partition');
    expect(mostImportantQueues(merged, 2).map((q) => q.name)).toEqual(['ns.transactions.process', 'partitions ×3']);
    expect(queueBodyRows('each', 1, 3)).toBe(6);
    expect(queueBodyRows('merged', 4, 0)).toBe(5);
  });
});
