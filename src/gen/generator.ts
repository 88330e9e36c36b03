import { transactionIdFor } from '../domain/ids.js';
import { createAccountChooser, type AccountsDist } from './account-choice.js';
import { hashString, mulberry32 } from './random.js';
import {
  MAX_AMOUNT_MINOR,
  routingKeyFor,
  TRANSACTION_TYPES,
  type TransactionMessage,
  type TransactionType,
} from '../domain/transaction.js';

/** Kinds of poison gen can mix in to exercise the reject path. */
export const POISON_KINDS = ['bad_json', 'wrong_schema', 'unknown_account', 'currency_mismatch', 'negative_amount'] as const;
export type PoisonKind = (typeof POISON_KINDS)[number];

/** A customer account gen may address: its id and currency. */
export interface TargetAccount {
  readonly id: number;
  readonly currency: string;
}

export interface GeneratorOptions {
  readonly runId: string;
  /** Seed of the pseudo-random stream (any string; hashed). */
  readonly seed: string;
  readonly accounts: readonly TargetAccount[];
  readonly mix: Readonly<Record<TransactionType, number>>;
  readonly amountMinMinor: number;
  readonly amountMaxMinor: number;
  /** How the account of each message is chosen (the old hot set is `hot:<share>/<n>`). */
  readonly accountsDist: AccountsDist;
  /** Share (0..1) of messages that are poison. */
  readonly invalidShare: number;
}

/** One message ready to publish: body bytes plus the AMQP properties that matter. */
export interface GeneratedMessage {
  readonly index: number;
  readonly id: string;
  readonly routingKey: string;
  readonly contentType: string;
  readonly body: Buffer;
  readonly kind: 'valid' | PoisonKind;
  readonly message?: TransactionMessage;
}

const MERCHANTS = ['Corner Cafe', 'Metro Transit', 'Book Nook', 'FreshMart', 'CloudHost', 'Cinema 8', 'PetPal', 'GreenGrocer'];
/** Accounts with ids from here up are never created by seed, so they are safely "unknown". */
export const UNKNOWN_ACCOUNT_BASE = 2_000_000_000;

/**
 * Deterministic transaction stream. Message `index` depends only on the options and the index,
 * never on what came before, so any slice can be regenerated (resuming gen, checking a run).
 */
export function createGenerator(options: GeneratorOptions) {
  if (options.accounts.length === 0) throw new RangeError('no accounts to generate transactions for');
  const { amountMinMinor, amountMaxMinor } = options;
  // The flags are checked against the contract; this guards other callers. Amounts used to be clamped
  // to 10^12 here without a word, so a wrong range produced a run nobody asked for.
  if (
    !Number.isSafeInteger(amountMinMinor) ||
    !Number.isSafeInteger(amountMaxMinor) ||
    amountMinMinor < 1 ||
    amountMaxMinor < amountMinMinor ||
    amountMaxMinor > MAX_AMOUNT_MINOR
  ) {
    throw new RangeError(`amount range ${amountMinMinor}..${amountMaxMinor} is outside 1..${MAX_AMOUNT_MINOR} minor units`);
  }
  const seedHash = hashString(options.seed);
  const typeWeights = TRANSACTION_TYPES.map((t) => options.mix[t]);
  const totalWeight = typeWeights.reduce((a, b) => a + b, 0);
  const chooseAccount = createAccountChooser(options.accountsDist, options.accounts.length);
  const logMin = Math.log(options.amountMinMinor);
  const logSpan = Math.log(options.amountMaxMinor) - logMin;

  function at(index: number, now: Date = new Date()): GeneratedMessage {
    const random = mulberry32((seedHash + Math.imul(index + 1, 0x9e3779b9)) | 0);
    const id = transactionIdFor(options.runId, index);
    let pick = random() * totalWeight;
    let type: TransactionType = TRANSACTION_TYPES[TRANSACTION_TYPES.length - 1]!;
    for (let i = 0; i < TRANSACTION_TYPES.length; i++) {
      pick -= typeWeights[i]!;
      if (pick < 0) {
        type = TRANSACTION_TYPES[i]!;
        break;
      }
    }
    const account = options.accounts[chooseAccount(random)]!;
    // Log-uniform: most payments are small, a few are large, as in real card traffic. The float only
    // chooses an integer; it is rounded and clamped before it becomes money.
    const amountMinor = clampInt(Math.round(Math.exp(logMin + random() * logSpan)), options.amountMinMinor, options.amountMaxMinor);
    const merchant = type === 'card_payment' ? MERCHANTS[Math.floor(random() * MERCHANTS.length)] : undefined;
    const message: TransactionMessage = {
      id,
      type,
      accountId: account.id,
      amountMinor,
      currency: account.currency,
      ...(merchant ? { merchant } : {}),
      createdAt: now.toISOString(),
    };
    const poisonRoll = random();
    if (poisonRoll < options.invalidShare) {
      const kind = POISON_KINDS[Math.floor(random() * POISON_KINDS.length)]!;
      return poison(index, kind, message, random);
    }
    return {
      index,
      id,
      routingKey: routingKeyFor(type),
      contentType: 'application/json',
      body: Buffer.from(JSON.stringify(message)),
      kind: 'valid',
      message,
    };
  }

  return { at };
}

function poison(index: number, kind: PoisonKind, message: TransactionMessage, random: () => number): GeneratedMessage {
  const base = { index, id: message.id, routingKey: routingKeyFor(message.type), contentType: 'application/json', kind } as const;
  switch (kind) {
    case 'bad_json':
      return { ...base, body: Buffer.from(`{"id":"${message.id}","type":"${message.type}","amountMinor":`) };
    case 'wrong_schema': {
      // Amount as a string: the most common schema mistake in hand-written producers.
      return { ...base, body: Buffer.from(JSON.stringify({ ...message, amountMinor: String(message.amountMinor) })) };
    }
    case 'unknown_account':
      return {
        ...base,
        body: Buffer.from(JSON.stringify({ ...message, accountId: UNKNOWN_ACCOUNT_BASE + Math.floor(random() * 1_000_000) })),
      };
    case 'currency_mismatch':
      return { ...base, body: Buffer.from(JSON.stringify({ ...message, currency: message.currency === 'XTS' ? 'XXX' : 'XTS' })) };
    case 'negative_amount':
      return { ...base, body: Buffer.from(JSON.stringify({ ...message, amountMinor: -message.amountMinor })) };
  }
}

function clampInt(n: number, min: number, max: number): number {
  return Math.min(Math.max(n, min), max);
}
