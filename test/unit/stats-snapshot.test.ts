import { describe, expect, it } from 'vitest';
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_BYTES_MAX } from '../../src/stats/snapshot.js';
import { snapshot } from './stats-fixtures.js';

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
    expect(decodeSnapshot(Buffer.from('nope'))).toMatchObject({ ok: false, error: expect.stringContaining('not JSON') });
    expect(decodeSnapshot(Buffer.from(JSON.stringify({ ...snapshot('w1'), schema: 'txsim.stats.v0' })))).toMatchObject({ ok: false, error: expect.stringContaining('schema') });
    expect(decodeSnapshot(Buffer.from(JSON.stringify({ ...snapshot('w1'), inFlight: -1 })))).toMatchObject({ ok: false, error: expect.stringContaining('inFlight') });
    expect(decodeSnapshot(Buffer.from(JSON.stringify({ ...snapshot('w1'), workerId: '' })))).toMatchObject({ ok: false, error: expect.stringContaining('workerId') });
    const badCounts = { ...snapshot('w1'), counts: { ...snapshot('w1').counts, rejected: { insufficient_funds: 'many' } } };
    expect(decodeSnapshot(Buffer.from(JSON.stringify(badCounts)))).toMatchObject({ ok: false, error: expect.stringContaining('counts.rejected.insufficient_funds') });
    expect(decodeSnapshot(Buffer.from(JSON.stringify([1, 2])))).toMatchObject({ ok: false });
  });

  it('refuses oversized messages before parsing them', () => {
    expect(decodeSnapshot(Buffer.alloc(SNAPSHOT_BYTES_MAX + 1, 32))).toMatchObject({ ok: false, error: expect.stringContaining('bytes') });
  });
});
