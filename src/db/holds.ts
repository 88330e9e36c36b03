import type { Knex } from './knex.js';
import { minorOf } from './rows.js';

/** Reads of `holds` (sql/007-holds.sql); the worker writes them in apply-batch-sql.ts. */

/** A hold as `tx show` prints it (money as bigint, printed as a decimal string). */
export interface HoldView {
  readonly id: string;
  readonly accountId: number;
  readonly merchant: string;
  readonly state: string;
  readonly authorizedMinor: bigint;
  readonly capturedMinor: bigint;
  readonly refundedMinor: bigint;
  /** What the hold still reserves: authorized − captured while open, 0 once closed. */
  readonly heldMinor: bigint;
  readonly expiresAt: Date;
}

/** The hold of an authorization id, or undefined when there is none. */
export async function getHold(db: Knex, id: string): Promise<HoldView | undefined> {
  const r = (await db('holds').where('id', id).first()) as
    | {
        id: string;
        account_id: string;
        merchant: string;
        state: string;
        authorized_minor: string;
        captured_minor: string;
        refunded_minor: string;
        expires_at: Date;
      }
    | undefined;
  if (!r) return undefined;
  const authorizedMinor = minorOf(r.authorized_minor);
  const capturedMinor = minorOf(r.captured_minor);
  const open = r.state === 'open' || r.state === 'partially_captured';
  return {
    id: r.id,
    accountId: Number(r.account_id),
    merchant: r.merchant,
    state: r.state,
    authorizedMinor,
    capturedMinor,
    refundedMinor: minorOf(r.refunded_minor),
    heldMinor: open ? authorizedMinor - capturedMinor : 0n,
    expiresAt: new Date(r.expires_at),
  };
}
