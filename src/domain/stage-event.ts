/**
 * The stage event: what a worker run with `--emit-stage-events` publishes to `<ns>.feed` when one
 * attempt of a transaction enters (`start`) and leaves (`end`) one of its simulated processing
 * stages. Transient like the attempt event: a live view of a transaction's walk, not a record (the
 * outcome of a decline is the transaction's reject; the record of a failure is its
 * `transaction_failures` row).
 */

import { jsonObjectOf } from './json-body.js';
import { LOWERCASE_UUID_PATTERN } from './ids.js';

/** Version of the wire format; a reader ignores any other. */
export const STAGE_EVENT_VERSION = 1;

export type StagePhase = 'start' | 'end';
export type StageResult = 'passed' | 'declined' | 'failed';

export interface StageEvent {
  /** Always `stage`: tells it apart from the attempt events on the same exchange. */
  readonly kind: 'stage';
  readonly transactionId: string;
  /** The stage's name (`fraud`) and its 0-based place in the walk. */
  readonly stage: string;
  readonly stageIndex: number;
  readonly phase: StagePhase;
  /** `end` only: what the stage decided and how long it took (whole ms). Null on `start`. */
  readonly result: StageResult | null;
  readonly durationMs: number | null;
  /** The attempt walking (1 for the first delivery; a retry walks again). */
  readonly attempt: number;
  readonly accountId: number | null;
  readonly type: string | null;
  readonly workerId: string;
  /** When the stage started or ended, on the worker's clock (ISO 8601, UTC, ms). */
  readonly at: string;
}

/** Routing key on the feed exchange: `stage.<phase>.<accountId>` (`none` without an account). */
export function stageRoutingKey(event: Pick<StageEvent, 'phase' | 'accountId'>): string {
  return `stage.${event.phase}.${event.accountId ?? 'none'}`;
}

export function encodeStageEvent(event: StageEvent): Buffer {
  return Buffer.from(JSON.stringify({ version: STAGE_EVENT_VERSION, ...event }));
}

export type DecodedStageEvent = { readonly ok: true; readonly event: StageEvent } | { readonly ok: false; readonly detail: string };

const BODY_BYTES_MAX = 4 * 1024;

/** True for a feed routing key of a stage event (`stage.…`): its body is then decoded as one. */
export function isStageRoutingKey(routingKey: string): boolean {
  return routingKey.startsWith('stage.');
}

/**
 * Parses and checks an event body: anyone who may publish to the exchange can send anything, so
 * every field is checked before the event reaches a WebSocket client.
 */
export function decodeStageEvent(body: Buffer): DecodedStageEvent {
  const fail = (detail: string): DecodedStageEvent => ({ ok: false, detail });
  const parsed = jsonObjectOf(body, BODY_BYTES_MAX);
  if (!parsed.ok) return fail(parsed.detail);
  const o = parsed.o;
  if (o.version !== STAGE_EVENT_VERSION) return fail(`version ${JSON.stringify(o.version)} is not ${STAGE_EVENT_VERSION}`);
  if (o.kind !== 'stage') return fail('kind must be stage');
  if (typeof o.transactionId !== 'string' || !LOWERCASE_UUID_PATTERN.test(o.transactionId))
    return fail('transactionId must be a lowercase UUID');
  if (typeof o.stage !== 'string' || !/^[a-z][a-z0-9_]{0,19}$/.test(o.stage)) return fail('stage must be a stage name');
  if (!(Number.isSafeInteger(o.stageIndex) && (o.stageIndex as number) >= 0)) return fail('stageIndex must be an integer ≥ 0');
  if (o.phase !== 'start' && o.phase !== 'end') return fail('phase must be start or end');
  const ended = o.phase === 'end';
  if (ended ? !['passed', 'declined', 'failed'].includes(o.result as string) : o.result !== null)
    return fail('result must be passed, declined or failed on end, null on start');
  if (ended ? !(Number.isSafeInteger(o.durationMs) && (o.durationMs as number) >= 0) : o.durationMs !== null)
    return fail('durationMs must be an integer ≥ 0 on end, null on start');
  if (!(Number.isSafeInteger(o.attempt) && (o.attempt as number) >= 1)) return fail('attempt must be a positive integer');
  if (o.accountId !== null && !Number.isSafeInteger(o.accountId)) return fail('accountId must be an integer or null');
  if (o.type !== null && !(typeof o.type === 'string' && o.type.length <= 32)) return fail('type must be a short string or null');
  if (typeof o.workerId !== 'string' || o.workerId.length > 64) return fail('workerId must be a short string');
  if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return fail('at must be an ISO 8601 time');
  return {
    ok: true,
    event: {
      kind: 'stage',
      transactionId: o.transactionId,
      stage: o.stage,
      stageIndex: o.stageIndex as number,
      phase: o.phase,
      result: (o.result as StageResult | null) ?? null,
      durationMs: (o.durationMs as number | null) ?? null,
      attempt: o.attempt as number,
      accountId: o.accountId as number | null,
      type: o.type,
      workerId: o.workerId,
      at: new Date(o.at).toISOString(),
    },
  };
}
