import type { TestNamespace } from '../helpers/namespace.js';
import { publishRaw, txBody } from '../helpers/publish.js';
import { waitFor } from '../helpers/txsim.js';

/** Bodies, reads and a publish-and-wait shared by the card-hold tests (card-holds, hold-expiry). */

export const authorization = (accountId: number, amountMinor: number, over: Record<string, unknown> = {}) =>
  txBody({ type: 'card_authorization', accountId, amountMinor, merchant: 'Hotel', ...over });

export const capture = (accountId: number, authorizationId: unknown, amountMinor: number, over: Record<string, unknown> = {}) =>
  txBody({ type: 'card_capture', accountId, authorizationId, amountMinor, ...over });

/** An account's balance and what is held on it. */
export async function funds(ns: TestNamespace, id: number): Promise<{ balance: bigint; held: bigint }> {
  const r = await ns.db('accounts').where('id', id).first('balance_minor', 'held_minor');
  return { balance: BigInt(r.balance_minor), held: BigInt(r.held_minor) };
}

/** A transaction's outcome row, or undefined before it has one. */
export async function outcomeOf(
  ns: TestNamespace,
  id: unknown,
): Promise<{ status: string; reason: string | null; attempts: number } | undefined> {
  return ns.db('transactions').where('id', String(id)).first('status', 'reason', 'attempts');
}

/** Publishes the bodies and waits until each has an outcome row. */
export async function publishAndWait(ns: TestNamespace, bodies: Record<string, unknown>[]): Promise<void> {
  await publishRaw(
    ns.amqp,
    ns.topology,
    bodies.map((body) => ({ body })),
  );
  const ids = bodies.map((b) => String(b.id));
  await waitFor(
    async () => Number((await ns.db('transactions').whereIn('id', ids).count({ n: '*' }))[0]!.n) === ids.length,
    30_000,
    `${ids.length} outcomes`,
  );
}

/**
 * gen's card-flow flags of the flow tests (over AMQP and `--via`): every ending, partial captures and
 * refunds, holds left open expiring 3 s after their authorization; rich accounts see every plan through.
 */
export const CARD_FLOW_GEN_ARGS: readonly string[] = [
  '--mix',
  'deposit=20,transfer=20,card_authorization=60',
  '--capture-share',
  '0.6',
  '--void-share',
  '0.2',
  '--partial-share',
  '0.5',
  '--refund-share',
  '0.3',
  '--flow-delay',
  '20ms..400ms',
  '--expire-after',
  '3s',
  '--amount',
  '100..5000',
];
