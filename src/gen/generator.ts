import { transactionIdFor } from '../domain/ids.js';
import { GENERATED_TYPES, MAX_AMOUNT_MINOR, routingKeyFor, type GeneratedType, type TransactionMessage } from '../domain/transaction.js';
import { createAccountChooser, type AccountsDist } from './account-choice.js';
import { createFlowPlanner, type FlowOptions, type FlowPlan } from './flows.js';
import { hashString, mulberry32 } from './random.js';

/** Kinds of poison gen can mix in to exercise the reject path. */
export const POISON_KINDS = ['bad_json', 'wrong_schema', 'unknown_account', 'currency_mismatch', 'negative_amount'] as const;
/**
 * Poison of a transfer: the general kinds, plus a transfer to itself (`same_account`), to an account
 * that does not exist (`unknown_account`) and one without its destination (schema: `toAccountId is
 * required`). A separate list, drawn from only for transfers, so the streams of v1 mixes stay the same.
 */
export const TRANSFER_POISON_KINDS = [
  ...POISON_KINDS,
  'transfer_same_account',
  'transfer_unknown_destination',
  'transfer_no_destination',
] as const;
export type PoisonKind = (typeof TRANSFER_POISON_KINDS)[number];

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
  /** Weights by type; a type left out has weight 0. */
  readonly mix: Readonly<Partial<Record<GeneratedType, number>>>;
  readonly amountMinMinor: number;
  readonly amountMaxMinor: number;
  /** How the account of each message is chosen (the old hot set is `hot:<share>/<n>`). */
  readonly accountsDist: AccountsDist;
  /** Share (0..1) of messages that are poison. */
  readonly invalidShare: number;
  /**
   * Card flows (gen/flows.ts): each valid authorization gets a plan of follow-ups; one left to expire
   * gets `expiresAt` = `epochMs` (the run's first start) + its due time + `expireAfterMs`. Absent: no flows.
   */
  readonly flows?: { readonly options: FlowOptions; readonly epochMs: number; readonly dueMs: (index: number) => number | null };
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
  /** A valid card_authorization of a run with flows: what follows it. */
  readonly flow?: FlowPlan;
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
  const typeWeights = GENERATED_TYPES.map((t) => options.mix[t] ?? 0);
  const totalWeight = typeWeights.reduce((a, b) => a + b, 0);
  const chooseAccount = createAccountChooser(options.accountsDist, options.accounts.length);
  // A hot transfer stays among the hot accounts (so A→B and B→A meet); with no hot set, this is all of them.
  const hotSetSize = options.accountsDist.kind === 'hot' ? Math.max(1, Math.min(options.accountsDist.setSize, options.accounts.length)) : 0;
  const hotByCurrency = byCurrency(options.accounts.slice(0, hotSetSize));
  const allByCurrency = byCurrency(options.accounts);
  // The last type with a weight: what a pick lands on if float rounding runs it off the end.
  const lastWeighted: GeneratedType = GENERATED_TYPES.filter((_, i) => typeWeights[i]! > 0).at(-1) ?? GENERATED_TYPES[0];
  const logMin = Math.log(options.amountMinMinor);
  const logSpan = Math.log(options.amountMaxMinor) - logMin;
  const flows = options.flows;
  const planner = flows ? createFlowPlanner(options.seed, flows.options, options.invalidShare) : null;

  function at(index: number, now: Date = new Date()): GeneratedMessage {
    const random = mulberry32((seedHash + Math.imul(index + 1, 0x9e3779b9)) | 0);
    const id = transactionIdFor(options.runId, index);
    let pick = random() * totalWeight;
    let type: GeneratedType = lastWeighted;
    for (let i = 0; i < GENERATED_TYPES.length; i++) {
      pick -= typeWeights[i]!;
      if (pick < 0) {
        type = GENERATED_TYPES[i]!;
        break;
      }
    }
    const accountIndex = chooseAccount(random);
    const account = options.accounts[accountIndex]!;
    // Log-uniform: most payments are small, a few are large, as in real card traffic. The float only
    // chooses an integer; it is rounded and clamped before it becomes money.
    const amountMinor = clampInt(Math.round(Math.exp(logMin + random() * logSpan)), options.amountMinMinor, options.amountMaxMinor);
    // Only card types draw a merchant (so v1 streams are unchanged by the types v1.1 added).
    const merchant =
      type === 'card_payment' || type === 'card_authorization' ? MERCHANTS[Math.floor(random() * MERCHANTS.length)] : undefined;
    // Only transfers draw this number: the streams of v1 mixes are the same as before transfers existed.
    const toAccount =
      type === 'transfer'
        ? transferDestination(
            account,
            accountIndex < hotSetSize ? [hotByCurrency, allByCurrency] : [allByCurrency],
            options.accounts,
            random,
          )
        : undefined;
    const message: TransactionMessage = {
      id,
      type,
      accountId: account.id,
      amountMinor,
      currency: account.currency,
      ...(merchant ? { merchant } : {}),
      ...(toAccount ? { toAccountId: toAccount.id } : {}),
      createdAt: now.toISOString(),
    };
    const poisonRoll = random();
    if (poisonRoll < options.invalidShare) {
      const kinds = type === 'transfer' ? TRANSFER_POISON_KINDS : POISON_KINDS;
      const kind = kinds[Math.floor(random() * kinds.length)]!;
      return poison(index, kind, message, random);
    }
    const flow = planner && flows && type === 'card_authorization' ? planner.plan(index, message) : undefined;
    // Left open, the hold must expire during the run: a deterministic expiresAt (a resumed run sends the same body).
    const sent: TransactionMessage =
      flow?.end === 'expired' && flows
        ? { ...message, expiresAt: new Date(flows.epochMs + (flows.dueMs(index) ?? 0) + flows.options.expireAfterMs).toISOString() }
        : message;
    return {
      index,
      id,
      routingKey: routingKeyFor(type),
      contentType: 'application/json',
      body: Buffer.from(JSON.stringify(sent)),
      kind: 'valid',
      message: sent,
      ...(flow ? { flow } : {}),
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
      return { ...base, body: Buffer.from(JSON.stringify({ ...message, amountMinor: -(message.amountMinor ?? 1) })) };
    case 'transfer_same_account':
      return { ...base, body: Buffer.from(JSON.stringify({ ...message, toAccountId: message.accountId })) };
    case 'transfer_unknown_destination':
      return {
        ...base,
        body: Buffer.from(JSON.stringify({ ...message, toAccountId: UNKNOWN_ACCOUNT_BASE + Math.floor(random() * 1_000_000) })),
      };
    case 'transfer_no_destination': {
      const { toAccountId: _dropped, ...rest } = message;
      return { ...base, body: Buffer.from(JSON.stringify(rest)) };
    }
  }
}

/** Accounts by currency, so a transfer's destination is drawn without scanning every account. */
function byCurrency(accounts: readonly TargetAccount[]): Map<string, TargetAccount[]> {
  const map = new Map<string, TargetAccount[]>();
  for (const a of accounts) {
    const list = map.get(a.currency);
    if (list) list.push(a);
    else map.set(a.currency, [a]);
  }
  return map;
}

/**
 * A transfer's destination: another account of the same currency, from the same pool as the source
 * (a hot transfer stays among the hot accounts, so A→B and B→A meet), else from all accounts. With
 * no other account of that currency at all, another account: the transfer is then rejected
 * `currency_mismatch`, which is what such a request would get. Uniform over the candidates other
 * than the source (which is in its own pool's list: it was drawn from that pool).
 */
function transferDestination(
  source: TargetAccount,
  pools: readonly Map<string, TargetAccount[]>[],
  all: readonly TargetAccount[],
  random: () => number,
): TargetAccount | undefined {
  const roll = random();
  for (const pool of pools) {
    const peers = pool.get(source.currency) ?? [];
    if (peers.length < 2) continue;
    const candidate = peers[Math.floor(roll * (peers.length - 1))]!;
    return candidate.id === source.id ? peers[peers.length - 1] : candidate;
  }
  return all.find((a) => a.id !== source.id);
}
function clampInt(n: number, min: number, max: number): number {
  return Math.min(Math.max(n, min), max);
}
