import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createGenerator, POISON_KINDS, TRANSFER_POISON_KINDS, type GeneratorOptions } from '../../src/gen/generator.js';
import { runIdForSeed, transactionIdFor } from '../../src/domain/ids.js';
import { decodeTransaction } from '../../src/domain/message-schema.js';

const options = (seed: string, over: Partial<GeneratorOptions> = {}): GeneratorOptions => ({
  runId: runIdForSeed(seed),
  seed,
  accounts: Array.from({ length: 50 }, (_, i) => ({ id: i + 1, currency: 'EUR' })),
  mix: { deposit: 40, withdrawal: 30, card_payment: 30 },
  amountMinMinor: 100,
  amountMaxMinor: 50_000,
  accountsDist: { kind: 'uniform' },
  invalidShare: 0,
  ...over,
});
const bodies = (seed: string, n: number, over: Partial<GeneratorOptions> = {}) => {
  const g = createGenerator(options(seed, over));
  const at = new Date('2026-01-01T00:00:00Z');
  return Array.from({ length: n }, (_, i) => g.at(i, at).body.toString());
};

describe('generator', () => {
  it('is deterministic: the same seed gives the same stream, another seed another', () => {
    expect(bodies('7', 500)).toEqual(bodies('7', 500));
    expect(bodies('8', 500)).not.toEqual(bodies('7', 500));
  });

  it('derives ids from the run and the index (UUID v8), so they can be regenerated, ascending within a run', () => {
    const g = createGenerator(options('7'));
    expect(g.at(42).id).toBe(transactionIdFor(runIdForSeed('7'), 42));
    expect(g.at(42).id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ids = Array.from({ length: 2000 }, (_, i) => g.at(i).id);
    expect(new Set(ids).size).toBe(2000);
    // Byte order = string order (lowercase hex): the database appends them to its indexes.
    expect([...ids].sort()).toEqual(ids);
    expect(transactionIdFor(runIdForSeed('8'), 0).slice(0, 23)).not.toBe(ids[0]!.slice(0, 23));
    expect(() => transactionIdFor(runIdForSeed('7'), -1)).toThrow(RangeError);
  });

  it('produces only valid v1 messages when no poison is asked for, with amounts in range', () => {
    const g = createGenerator(options('9'));
    for (let i = 0; i < 2000; i++) {
      const m = g.at(i);
      const decoded = decodeTransaction(m.body, { contentType: m.contentType, messageId: m.id });
      expect(decoded.ok, m.body.toString()).toBe(true);
      if (decoded.ok) {
        expect(decoded.message.amountMinor).toBeGreaterThanOrEqual(100);
        expect(decoded.message.amountMinor).toBeLessThanOrEqual(50_000);
        expect(m.routingKey).toBe(`tx.${decoded.message.type}`);
      }
    }
  });

  it('follows the mix and skews amounts toward small values', () => {
    const g = createGenerator(options('10', { mix: { deposit: 1, withdrawal: 0, card_payment: 0 } }));
    const amounts = Array.from({ length: 2000 }, (_, i) => g.at(i).message!.amountMinor!);
    expect(new Set(Array.from({ length: 200 }, (_, i) => g.at(i).message!.type))).toEqual(new Set(['deposit']));
    const median = [...amounts].sort((a, b) => a - b)[1000]!;
    expect(median).toBeLessThan((100 + 50_000) / 2 / 4);
  });

  it('a Zipf choice is seeded too, and changes only the accounts: types and amounts stay those of the uniform stream', () => {
    const zipf = { accountsDist: { kind: 'zipf', exponent: 1.1 } } as const;
    expect(bodies('7', 300, zipf)).toEqual(bodies('7', 300, zipf));
    const at = new Date('2026-01-01T00:00:00Z');
    const [z, u] = [createGenerator(options('7', zipf)), createGenerator(options('7'))];
    for (let i = 0; i < 300; i++) {
      const [a, b] = [z.at(i, at).message!, u.at(i, at).message!];
      expect({ ...a, accountId: 0 }).toEqual({ ...b, accountId: 0 });
    }
    const ids = Array.from({ length: 3000 }, (_, i) => z.at(i, at).message!.accountId);
    expect(ids.filter((id) => id === 1).length).toBeGreaterThan(ids.filter((id) => id === 50).length * 20);
  });

  it('puts the hot share of traffic on the hot set', () => {
    const g = createGenerator(options('11', { accountsDist: { kind: 'hot', share: 0.8, setSize: 2 } }));
    const hot = Array.from({ length: 5000 }, (_, i) => g.at(i).message!.accountId).filter((id) => id <= 2).length;
    expect(hot / 5000).toBeGreaterThan(0.75);
  });

  it('mixes every poison kind in at the asked share', () => {
    const g = createGenerator(options('12', { invalidShare: 0.2 }));
    const kinds = Array.from({ length: 5000 }, (_, i) => g.at(i).kind);
    const poison = kinds.filter((k) => k !== 'valid');
    expect(poison.length / 5000).toBeGreaterThan(0.17);
    expect(poison.length / 5000).toBeLessThan(0.23);
    expect(new Set(poison)).toEqual(new Set(POISON_KINDS));
  });

  it('keeps the stream of a v1 mix byte for byte what it was before transfers existed (resumed runs stay duplicates)', () => {
    // Hash of the first 3,000 bodies as the generator of contract v1 produced them (poison, hot set and two currencies included).
    const g = createGenerator(
      options('7', {
        accounts: Array.from({ length: 50 }, (_, i) => ({ id: i + 1, currency: i % 7 === 0 ? 'USD' : 'EUR' })),
        accountsDist: { kind: 'hot', share: 0.3, setSize: 3 },
        invalidShare: 0.1,
      }),
    );
    const at = new Date('2026-01-01T00:00:00Z');
    const hash = createHash('sha256');
    for (let i = 0; i < 3000; i++) hash.update(g.at(i, at).body);
    expect(hash.digest('hex')).toBe('9c6ea6953219e3b1afd07f55705abe9aff2b2805a35176bb522485b8bf3cfd55');
  });

  it('sends transfers between two distinct accounts of the same currency', () => {
    const accounts = Array.from({ length: 20 }, (_, i) => ({ id: i + 1, currency: i < 10 ? 'EUR' : 'USD' }));
    const g = createGenerator(options('13', { accounts, mix: { transfer: 1 }, accountsDist: { kind: 'hot', share: 0.5, setSize: 2 } }));
    const currencyOf = new Map(accounts.map((a) => [a.id, a.currency]));
    const destinations = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const m = g.at(i);
      const decoded = decodeTransaction(m.body, { contentType: m.contentType, messageId: m.id });
      if (!decoded.ok) throw new Error(decoded.detail);
      const { accountId, toAccountId, currency, type } = decoded.message;
      expect(type).toBe('transfer');
      expect(m.routingKey).toBe('tx.transfer');
      expect(toAccountId).not.toBe(accountId);
      expect(currencyOf.get(toAccountId!)).toBe(currency);
      destinations.add(toAccountId!);
    }
    // Hot transfers stay within the hot pair (1 ↔ 2); the rest reach every account.
    expect(destinations.size).toBe(20);
  });

  it('mixes transfer poison in for transfers only', () => {
    const g = createGenerator(options('14', { mix: { transfer: 1 }, invalidShare: 1 }));
    const kinds = new Set(Array.from({ length: 3000 }, (_, i) => g.at(i).kind));
    expect(kinds).toEqual(new Set(TRANSFER_POISON_KINDS));
  });
});
