import { describe, expect, it } from 'vitest';
import { createGenerator, type GeneratorOptions } from '../../src/gen/generator.js';
import { countPlan, emptyPlannedFlows, followUpBody, FollowUpQueue, type FlowOptions, type FollowUp } from '../../src/gen/flows.js';
import { runIdForSeed } from '../../src/domain/ids.js';
import { validateTransaction } from '../../src/domain/message-schema.js';

const flowOptions: FlowOptions = {
  captureShare: 0.6,
  voidShare: 0.2,
  partialShare: 0.5,
  refundShare: 0.3,
  delayMinMs: 50,
  delayMaxMs: 2_000,
  expireAfterMs: 5_000,
};
const options = (seed: string, over: Partial<GeneratorOptions> = {}): GeneratorOptions => ({
  runId: runIdForSeed(seed),
  seed,
  accounts: Array.from({ length: 50 }, (_, i) => ({ id: i + 1, currency: 'EUR' })),
  mix: { deposit: 30, transfer: 20, card_authorization: 50 },
  amountMinMinor: 100,
  amountMaxMinor: 50_000,
  accountsDist: { kind: 'uniform' },
  invalidShare: 0,
  flows: { options: flowOptions, epochMs: Date.parse('2026-01-01T00:00:00Z'), dueMs: () => null },
  ...over,
});
const at = new Date('2026-01-01T00:00:00Z');

/** The whole stream with follow-ups as a list of (due ms, body): what a run would send, in order. */
function stream(seed: string, n: number, over: Partial<GeneratorOptions> = {}): string[] {
  const g = createGenerator(options(seed, over));
  const queue = new FollowUpQueue();
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    // Primary i is due at i × 10 ms; follow-ups due before it go first.
    const dueMs = i * 10;
    while ((queue.peek()?.dueMs ?? Infinity) <= dueMs) {
      const next = queue.pop()!;
      out.push(`${next.dueMs} ${followUpBody(next.followUp, at).body.toString()}`);
    }
    const m = g.at(i, at);
    out.push(`${dueMs} ${m.body.toString()}`);
    for (const f of m.flow?.followUps ?? []) queue.push(dueMs + f.delayMs, f);
  }
  for (let next = queue.pop(); next; next = queue.pop()) out.push(`${next.dueMs} ${followUpBody(next.followUp, at).body.toString()}`);
  return out;
}

describe('gen card flows', () => {
  it('are seeded: the same seed gives the same stream and delays, another seed another', () => {
    expect(stream('7', 400)).toEqual(stream('7', 400));
    expect(stream('8', 400)).not.toEqual(stream('7', 400));
  });

  it('leave every primary message as it is, but an authorization left to expire, which gets its expiresAt', () => {
    const withFlows = createGenerator(options('7'));
    const without = createGenerator(options('7', { flows: undefined }));
    let expiring = 0;
    for (let i = 0; i < 500; i++) {
      const a = withFlows.at(i, at);
      const b = without.at(i, at);
      if (a.flow?.end === 'expired') {
        expiring++;
        expect(a.message?.expiresAt).toBe('2026-01-01T00:00:05.000Z');
        const { expiresAt: _e, ...rest } = a.message!;
        expect(rest).toEqual(b.message);
      } else {
        expect(a.body.toString()).toBe(b.body.toString());
      }
    }
    expect(expiring).toBeGreaterThan(0);
  });

  it('plan shares close to the flags, delays within the range, valid follow-ups that stay within the hold', () => {
    const g = createGenerator(options('42'));
    const total = emptyPlannedFlows();
    for (let i = 0; i < 5_000; i++) {
      const m = g.at(i, at);
      if (!m.flow) continue;
      countPlan(total, m.flow);
      const amount = m.message!.amountMinor!;
      let captured = 0;
      let previousMs = 0;
      for (const f of m.flow.followUps) {
        expect(validateTransaction(followUpBody(f, at).message), JSON.stringify(validateTransaction.errors)).toBe(true);
        // Each follow-up after the step before it, at least the least delay.
        expect(f.delayMs - previousMs).toBeGreaterThanOrEqual(50);
        expect(f.delayMs - previousMs).toBeLessThanOrEqual(2_000);
        previousMs = f.delayMs;
        if (f.type === 'card_capture') captured += f.message.amountMinor!;
      }
      expect(captured).toBeLessThanOrEqual(amount);
    }
    const n = total.authorizations;
    expect(n).toBeGreaterThan(2_000);
    expect(total.captured / n).toBeCloseTo(0.6, 1);
    expect(total.voided / n).toBeCloseTo(0.2, 1);
    expect(total.expired / n).toBeCloseTo(0.2, 1);
    expect(total.voids).toBe(total.voided);
    // Half the captured flows capture twice.
    expect(total.captures / total.captured).toBeCloseTo(1.5, 1);
    expect(total.refunds / total.captured).toBeCloseTo(0.3, 1);
  });

  it("poison some captures with the run's invalid share; those holds are planned to expire", () => {
    const g = createGenerator(options('9', { invalidShare: 0.1 }));
    const kinds = new Set<string>();
    for (let i = 0; i < 3_000; i++) {
      const m = g.at(i, at);
      for (const f of m.flow?.followUps ?? [])
        if (f.kind !== 'valid') {
          kinds.add(f.kind);
          expect(m.flow!.end).toBe('expired');
          expect(m.message!.expiresAt).toBeDefined();
        }
    }
    expect([...kinds].sort()).toEqual(['capture_exceeds_hold', 'capture_unknown_authorization']);
  });

  it('a hold of the largest amount gets a poison capture that is still valid JSON of the contract', () => {
    const max = 1_000_000_000_000;
    const g = createGenerator(
      options('10', { invalidShare: 0.5, amountMinMinor: max, amountMaxMinor: max, mix: { card_authorization: 1 } }),
    );
    let poisoned = 0;
    for (let i = 0; i < 400; i++) {
      for (const f of g.at(i, at).flow?.followUps ?? []) {
        if (f.kind === 'valid') continue;
        poisoned++;
        // Amount + 1 would break the schema's maximum: such a hold's poison names no authorization instead.
        expect(f.kind).toBe('capture_unknown_authorization');
        expect(validateTransaction(JSON.parse(followUpBody(f, at).body.toString())), JSON.stringify(validateTransaction.errors)).toBe(true);
      }
    }
    expect(poisoned).toBeGreaterThan(50);
  });

  it('the follow-up queue pops by due time, ties in push order', () => {
    const q = new FollowUpQueue();
    const f = (id: string) => ({ id }) as FollowUp;
    const dues = [50, 10, 30, 10, 70, 0, 30];
    dues.forEach((d, i) => q.push(d, f(String(i))));
    const popped: string[] = [];
    for (let next = q.pop(); next; next = q.pop()) popped.push(`${next.dueMs}:${next.followUp.id}`);
    expect(popped).toEqual(['0:5', '10:1', '10:3', '30:2', '30:6', '50:0', '70:4']);
  });
});
