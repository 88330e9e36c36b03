import { GENERATED_TYPES, type GeneratedType } from '../domain/transaction.js';

/** A mix of generated types, by weight (gen's `--mix`). */
export type BenchMix = Record<GeneratedType, number>;

/** A mix with these weights and 0 for every other type gen knows (types added later stay out of it). */
function mixOf(weights: Partial<BenchMix>): BenchMix {
  return Object.fromEntries(GENERATED_TYPES.map((t) => [t, weights[t] ?? 0])) as BenchMix;
}

/** The v1 mix: the headline figures' (#17 compares runs of this mix; scripts/bench.sh passes `--mix v1`). */
export const BENCH_V1_MIX: BenchMix = mixOf({ deposit: 40, withdrawal: 30, card_payment: 30 });

/**
 * `--mix full`, bench's default: every money movement of contract v1.1, transfers and card holds beside
 * the v1 types. Its authorizations are card flows (BENCH_CARD_FLOWS), over AMQP and over HTTP.
 */
export const BENCH_FULL_MIX: BenchMix = mixOf({ deposit: 30, withdrawal: 20, card_payment: 20, transfer: 20, card_authorization: 10 });
