import { uuidV5 } from '../domain/ids.js';
import { MAX_AMOUNT_MINOR, routingKeyFor, type TransactionMessage } from '../domain/transaction.js';
import { hashString, mulberry32 } from './random.js';

/**
 * Card flows (`gen --capture-share …`): what follows each generated card_authorization, and when.
 * Pure and seeded: the plan of the authorization at index i depends only on the seed, the flow
 * options, i and the authorization itself, drawn from a random stream of its own, so the primary
 * stream (every message but the follow-ups) stays index-based and the same as without flows — except
 * that an authorization planned to be left open gets a short `expiresAt`, so it expires during the run.
 *
 * A flow ends one of three ways:
 * - captured: one capture of the whole amount, or (`partialShare` of the captures) a partial capture
 *   of a third to two thirds of it followed by a capture of exactly the rest (the hold is then captured
 *   in full); `refundShare` of the captured flows then refund (by `captureId`) half to all of the first capture;
 * - voided: one card_void;
 * - expired: nothing is sent; the hold expires (`expiresAt` = the run's epoch + the authorization's
 *   due time + `expireAfterMs`) and a worker's sweep releases it.
 * Each follow-up is due a seeded, log-uniform delay in `delayMinMs..delayMaxMs` after the step before it
 * (the authorization's own due time, then the previous follow-up's).
 */

export interface FlowOptions {
  /** Share (0..1) of authorizations captured. */
  readonly captureShare: number;
  /** Share (0..1) of authorizations voided; captureShare + voidShare ≤ 1, the rest is left to expire. */
  readonly voidShare: number;
  /** Share (0..1) of captured flows that capture in two steps (a partial capture, then a final one). */
  readonly partialShare: number;
  /** Share (0..1) of captured flows whose first capture is later refunded in part (by captureId). */
  readonly refundShare: number;
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
  /** How long after its due time an authorization left to expire lives (its `expiresAt`). */
  readonly expireAfterMs: number;
}

export type FlowEnd = 'captured' | 'voided' | 'expired';

/**
 * Poison of a flow (drawn with the run's `--invalid` share, only for captured flows): a capture of
 * an authorization that does not exist (retried through the delay queues, then rejected
 * `unknown_authorization`), or a first capture of more than the hold (`capture_exceeds_hold`). Either
 * way the flow captures nothing and its hold is left to expire.
 */
export const FLOW_POISON_KINDS = ['capture_unknown_authorization', 'capture_exceeds_hold'] as const;
export type FlowPoisonKind = (typeof FLOW_POISON_KINDS)[number];

/** One message that follows an authorization: its body is built when it is sent (createdAt = then). */
export interface FollowUp {
  readonly id: string;
  /** Ms after the authorization's due time. */
  readonly delayMs: number;
  readonly type: 'card_capture' | 'card_void' | 'card_refund';
  readonly kind: 'valid' | FlowPoisonKind;
  /** The message, but for `createdAt` (filled in at send time). */
  readonly message: Omit<TransactionMessage, 'createdAt'>;
}

export interface FlowPlan {
  readonly end: FlowEnd;
  readonly followUps: readonly FollowUp[];
}

/** What a flow's hold ends as, counted over a run: gen prints what it planned. */
export interface PlannedFlows {
  authorizations: number;
  captured: number;
  voided: number;
  expired: number;
  captures: number;
  voids: number;
  refunds: number;
  poison: number;
}

export function emptyPlannedFlows(): PlannedFlows {
  return { authorizations: 0, captured: 0, voided: 0, expired: 0, captures: 0, voids: 0, refunds: 0, poison: 0 };
}

export function countPlan(total: PlannedFlows, plan: FlowPlan): void {
  total.authorizations++;
  total[plan.end]++;
  for (const f of plan.followUps) {
    if (f.type === 'card_capture') total.captures++;
    else if (f.type === 'card_void') total.voids++;
    else total.refunds++;
    if (f.kind !== 'valid') total.poison++;
  }
}

/** The id of an authorization's follow-up: derived from it, so a resumed run sends the same ids. */
export function followUpId(authorizationId: string, step: string): string {
  return uuidV5(authorizationId, `flow-${step}`);
}

/** A planner of flows for one run. */
export function createFlowPlanner(seed: string, options: FlowOptions, invalidShare: number) {
  const seedHash = hashString(`${seed}\u0000flows`);
  const logMin = Math.log(options.delayMinMs);
  const logSpan = Math.log(options.delayMaxMs) - logMin;

  /** The plan of the (valid) card_authorization generated at `index`. */
  function plan(index: number, auth: Pick<TransactionMessage, 'id' | 'accountId' | 'amountMinor' | 'currency'>): FlowPlan {
    const random = mulberry32((seedHash + Math.imul(index + 1, 0x9e3779b9)) | 0);
    const delay = () => Math.round(Math.exp(logMin + random() * logSpan));
    const amount = auth.amountMinor ?? 1;
    const base = { accountId: auth.accountId, currency: auth.currency } as const;
    // Every draw happens whatever the outcome, so each decision reads the same numbers under any shares.
    const endRoll = random();
    const partialRoll = random();
    const refundRoll = random();
    const poisonRoll = random();
    const poisonKindRoll = random();
    const splitRoll = random();
    const delays = [delay(), delay(), delay()] as const;
    if (endRoll >= options.captureShare + options.voidShare) return { end: 'expired', followUps: [] };
    if (endRoll >= options.captureShare) {
      const id = followUpId(auth.id, 'void');
      return {
        end: 'voided',
        followUps: [
          {
            id,
            delayMs: delays[0],
            type: 'card_void',
            kind: 'valid',
            message: { id, type: 'card_void', ...base, authorizationId: auth.id },
          },
        ],
      };
    }
    const firstId = followUpId(auth.id, 'capture-1');
    if (poisonRoll < invalidShare) {
      const rolled = FLOW_POISON_KINDS[Math.floor(poisonKindRoll * FLOW_POISON_KINDS.length)]!;
      // A hold of the largest amount cannot be exceeded by a valid message: its poison names no authorization instead.
      const kind = rolled === 'capture_exceeds_hold' && amount >= MAX_AMOUNT_MINOR ? 'capture_unknown_authorization' : rolled;
      const message =
        kind === 'capture_unknown_authorization'
          ? {
              id: firstId,
              type: 'card_capture' as const,
              ...base,
              amountMinor: amount,
              authorizationId: followUpId(auth.id, 'no-such-authorization'),
            }
          : { id: firstId, type: 'card_capture' as const, ...base, amountMinor: amount + 1, authorizationId: auth.id };
      return { end: 'expired', followUps: [{ id: firstId, delayMs: delays[0], type: 'card_capture', kind, message }] };
    }
    const partial = partialRoll < options.partialShare && amount >= 2;
    // A partial first capture takes a third to two thirds (at least 1, less than the whole).
    const firstAmount = partial ? Math.min(amount - 1, Math.max(1, Math.floor(amount * (1 / 3 + splitRoll / 3)))) : amount;
    const followUps: FollowUp[] = [
      {
        id: firstId,
        delayMs: delays[0],
        type: 'card_capture',
        kind: 'valid',
        message: { id: firstId, type: 'card_capture', ...base, amountMinor: firstAmount, authorizationId: auth.id },
      },
    ];
    let lastMs = delays[0];
    if (partial) {
      // The second capture takes exactly the rest, which closes the hold. Not a `final` capture of less:
      // two workers may apply the two captures in either order, and a final one applied first would
      // release what the first is still to take (authorization_closed); with the rest exactly, either
      // order ends the same.
      const secondId = followUpId(auth.id, 'capture-2');
      lastMs += delays[1];
      followUps.push({
        id: secondId,
        delayMs: lastMs,
        type: 'card_capture',
        kind: 'valid',
        message: { id: secondId, type: 'card_capture', ...base, amountMinor: amount - firstAmount, authorizationId: auth.id },
      });
    }
    if (refundRoll < options.refundShare) {
      const refundId = followUpId(auth.id, 'refund-1');
      followUps.push({
        id: refundId,
        delayMs: lastMs + delays[2],
        type: 'card_refund',
        kind: 'valid',
        // Half to all of the first capture, by its id: within that capture's refundable amount.
        message: {
          id: refundId,
          type: 'card_refund',
          ...base,
          amountMinor: Math.max(1, Math.ceil(firstAmount * (0.5 + splitRoll / 2))),
          captureId: firstId,
        },
      });
    }
    return { end: 'captured', followUps };
  }

  return { plan };
}

/** A follow-up as the scheduler holds it: due at `dueMs` (the sender's clock). */
export interface ScheduledFollowUp<T = FollowUp> {
  readonly dueMs: number;
  /** Tie-breaker: the order follow-ups were scheduled in (so equal due times keep a stable order). */
  readonly seq: number;
  readonly followUp: T;
}

/**
 * Pending follow-ups by due time (a binary min-heap): the sender sends every follow-up due before
 * its next primary message, then the primary; after the last primary it drains the heap. `T` is
 * what the sender keeps of one (the AMQP publisher the plan's FollowUp, `gen --via` a request).
 */
export class FollowUpQueue<T = FollowUp> {
  private readonly heap: ScheduledFollowUp<T>[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(dueMs: number, followUp: T): void {
    this.heap.push({ dueMs, seq: this.seq++, followUp });
    let i = this.heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(this.heap[i]!, this.heap[parent]!)) break;
      [this.heap[i], this.heap[parent]] = [this.heap[parent]!, this.heap[i]!];
      i = parent;
    }
  }

  peek(): ScheduledFollowUp<T> | undefined {
    return this.heap[0];
  }

  pop(): ScheduledFollowUp<T> | undefined {
    const top = this.heap[0];
    const last = this.heap.pop();
    if (top === undefined || last === undefined || this.heap.length === 0) return top;
    this.heap[0] = last;
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < this.heap.length && before(this.heap[l]!, this.heap[smallest]!)) smallest = l;
      if (r < this.heap.length && before(this.heap[r]!, this.heap[smallest]!)) smallest = r;
      if (smallest === i) break;
      [this.heap[i], this.heap[smallest]] = [this.heap[smallest]!, this.heap[i]!];
      i = smallest;
    }
    return top;
  }
}

function before<T>(a: ScheduledFollowUp<T>, b: ScheduledFollowUp<T>): boolean {
  return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
}

/** The bytes of a follow-up sent at `now`. */
export function followUpBody(followUp: FollowUp, now: Date): { routingKey: string; body: Buffer; message: TransactionMessage } {
  const message = { ...followUp.message, createdAt: now.toISOString() } as TransactionMessage;
  return { routingKey: routingKeyFor(message.type), body: Buffer.from(JSON.stringify(message)), message };
}
