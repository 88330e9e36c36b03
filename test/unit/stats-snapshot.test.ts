import { describe, expect, it } from 'vitest';
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_BYTES_MAX } from '../../src/stats/snapshot.js';
import { snapshot } from './stats-fixtures.js';

/** Asserts that `content` is refused with an error that contains `text` (the field or the reason). */
function expectRefused(content: Buffer, text: string): void {
  const decoded = decodeSnapshot(content);
  expect(decoded.ok).toBe(false);
  if (!decoded.ok) expect(decoded.error).toContain(text);
}

const encoded = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('snapshot codec', () => {
  it('round-trips a snapshot unchanged', () => {
    const s = snapshot('w1', { lastError: { message: 'ER_LOCK_DEADLOCK: Deadlock found', atMs: 5 } });
    const decoded = decodeSnapshot(encodeSnapshot(s));
    expect(decoded).toEqual({ ok: true, snapshot: s });
  });

  it('ignores unknown extra fields (a newer worker may add some)', () => {
    const raw = { ...snapshot('w1'), futureField: { x: 1 } };
    const decoded = decodeSnapshot(Buffer.from(JSON.stringify(raw)));
    expect(decoded.ok).toBe(true);
    expect(decoded.ok && 'futureField' in decoded.snapshot).toBe(false);
  });

  it('rejects non-JSON, a wrong schema and mistyped fields, naming the field', () => {
    expectRefused(Buffer.from('nope'), 'not JSON');
    expectRefused(encoded({ ...snapshot('w1'), schema: 'txsim.stats.v0' }), 'schema');
    expectRefused(encoded({ ...snapshot('w1'), inFlight: -1 }), 'inFlight');
    expectRefused(encoded({ ...snapshot('w1'), workerId: '' }), 'workerId');
    const badCounts = { ...snapshot('w1'), counts: { ...snapshot('w1').counts, rejected: { insufficient_funds: 'many' } } };
    expectRefused(encoded(badCounts), 'counts.rejected.insufficient_funds');
    expect(decodeSnapshot(encoded([1, 2]))).toMatchObject({ ok: false });
  });

  it('refuses oversized messages before parsing them', () => {
    expectRefused(Buffer.alloc(SNAPSHOT_BYTES_MAX + 1, 32), 'bytes');
  });
});
