import { describe, expect, it } from 'vitest';
import {
  declineReasonOf,
  drawStage,
  formatStageSpec,
  isStageDeclineReason,
  parseStageSpec,
  parseStageSpecs,
  stageLinesOf,
  type StageSpec,
} from '../../src/domain/stage-spec.js';
import { UsageError } from '../../src/errors.js';

describe('stage spec parser', () => {
  it('parses a range with shares, a fixed time, and mixed units', () => {
    expect(parseStageSpec('fraud:5..50ms:decline=0.01:fail=0.001')).toEqual({
      name: 'fraud',
      minMs: 5,
      maxMs: 50,
      declineShare: 0.01,
      failShare: 0.001,
    });
    expect(parseStageSpec('issuer:20..200ms')).toEqual({ name: 'issuer', minMs: 20, maxMs: 200, declineShare: 0, failShare: 0 });
    expect(parseStageSpec('acs:500ms..2s')).toMatchObject({ minMs: 500, maxMs: 2000 });
    expect(parseStageSpec('acs:0.5..2s')).toMatchObject({ minMs: 500, maxMs: 2000 });
    expect(parseStageSpec('fixed:20ms')).toMatchObject({ minMs: 20, maxMs: 20 });
    expect(parseStageSpec('flaky:1..1ms:fail=1')).toMatchObject({ failShare: 1 });
  });

  it.each([
    ['fraud:5..50ms:deny=0.1', 'unknown key "deny"'],
    ['fraud:50..5ms', 'min 50 ms is above max 5 ms'],
    ['fraud:5..50ms:decline=1.5', 'decline=1.5 must be a share between 0 and 1'],
    ['fraud:5..50ms:fail=-0.1', 'fail=-0.1 must be a share between 0 and 1'],
    ['fraud:5..50ms:decline=', 'decline= must be a share'],
    ['fraud:5..50ms:decline', 'decline needs a share'],
    ['fraud:5..50ms:decline=0.1:decline=0.2', 'decline given twice'],
    ['fraud:5..50us', '"50us" is not a time'],
    ['fraud:5..50', 'needs a unit: ms or s'],
    ['fraud:0..50ms', 'above 0'],
    ['fraud:1..2..3ms', 'must be min..max'],
    ['fraud:1..120s', 'above the limit of 60000 ms'],
    ['fraud', 'missing time range'],
    [':5..50ms', 'missing stage name'],
    ['Fraud:5..50ms', 'lowercase'],
    ['a_very_long_stage_name_x:5ms', 'longer than 20 characters'],
  ])('refuses %s with a precise message', (value, why) => {
    expect(() => parseStageSpec(value)).toThrow(UsageError);
    expect(() => parseStageSpec(value)).toThrow(why);
    expect(() => parseStageSpec(value)).toThrow(`--stage: "${value}"`);
  });

  it('refuses duplicate names and too many stages; reads a stages file', () => {
    expect(() => parseStageSpecs(['a:1ms', 'a:2ms'])).toThrow('stage "a" is given twice');
    expect(() => parseStageSpecs(Array.from({ length: 17 }, (_, i) => `s${i}:1ms`))).toThrow('at most 16');
    expect(stageLinesOf('# pipeline\nfraud:5..50ms:decline=0.01\n\n  issuer:20..200ms  \r\n')).toEqual([
      'fraud:5..50ms:decline=0.01',
      'issuer:20..200ms',
    ]);
  });

  it('names the decline reason and formats back', () => {
    expect(declineReasonOf('fraud')).toBe('declined_by_fraud');
    expect(isStageDeclineReason('declined_by_fraud')).toBe(true);
    expect(isStageDeclineReason('insufficient_funds')).toBe(false);
    expect(formatStageSpec(parseStageSpec('fraud:5..50ms:decline=0.01'))).toBe('fraud:5..50ms:decline=0.01');
  });
});

describe('seeded stage draw', () => {
  const spec: StageSpec = { name: 'fraud', minMs: 5, maxMs: 500, declineShare: 0.1, failShare: 0.05 };
  const ids = Array.from({ length: 4000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);

  it('is the same for the same seed, id and attempt, and differs with any of them', () => {
    const id = ids[7]!;
    expect(drawStage('s', spec, id, 1)).toEqual(drawStage('s', spec, id, 1));
    const differs = (f: (i: string) => unknown, g: (i: string) => unknown) =>
      ids.slice(0, 50).some((i) => JSON.stringify(f(i)) !== JSON.stringify(g(i)));
    expect(
      differs(
        (i) => drawStage('s', spec, i, 1),
        (i) => drawStage('t', spec, i, 1),
      ),
    ).toBe(true);
    expect(
      differs(
        (i) => drawStage('s', spec, i, 1),
        (i) => drawStage('s', spec, i, 2),
      ),
    ).toBe(true);
    expect(
      differs(
        (i) => drawStage('s', spec, i, 1),
        (i) => drawStage('s', { ...spec, name: 'other' }, i, 1),
      ),
    ).toBe(true);
  });

  it('draws times log-uniformly within the bounds and decisions at their shares', () => {
    const draws = ids.map((id) => drawStage('seed', spec, id, 1));
    for (const d of draws) {
      expect(d.durationMs).toBeGreaterThanOrEqual(5);
      expect(d.durationMs).toBeLessThanOrEqual(500);
    }
    // Log-uniform on 5..500: half the draws below the geometric mean 50 ms (uniform would put ~9 % there).
    const below = draws.filter((d) => d.durationMs < 50).length / draws.length;
    expect(below).toBeGreaterThan(0.45);
    expect(below).toBeLessThan(0.55);
    // Binomial bounds, 4 standard deviations: failed ~ 5 %, declined ~ 10 % of the 95 % that did not fail.
    const share = (r: string) => draws.filter((d) => d.result === r).length;
    const within = (count: number, p: number) => Math.abs(count - ids.length * p) <= 4 * Math.sqrt(ids.length * p * (1 - p));
    expect(within(share('failed'), 0.05)).toBe(true);
    expect(within(share('declined'), 0.95 * 0.1)).toBe(true);
    expect(drawStage('x', { ...spec, minMs: 20, maxMs: 20 }, ids[0]!, 1).durationMs).toBe(20);
    expect(ids.every((id) => drawStage('x', { ...spec, failShare: 1 }, id, 3).result === 'failed')).toBe(true);
    expect(ids.every((id) => drawStage('x', { ...spec, failShare: 0, declineShare: 0 }, id, 3).result === 'passed')).toBe(true);
  });
});
