import { isConnectionError, isRetryableDbError, RoundTripTimeoutError } from '../db/with-transaction.js';

/**
 * The one place that decides what a thrown error means for a message. Business rejects are not
 * errors (they come back as outcomes), so everything thrown here is a system error:
 * - `db_unavailable`: the database itself is gone. Put the message back without spending an
 *   attempt, pause consuming, and wait for the database.
 * - `transient`: deadlock, lock-wait timeout, duplicate race — retry with backoff.
 * - `unexpected`: anything else (a bug, a bad row). Retried too, in case it is environmental, but
 *   bounded: after the attempt limit the message is parked with this error.
 */
export type FailureClass = 'db_unavailable' | 'transient' | 'unexpected';

export interface ClassifiedFailure {
  readonly class: FailureClass;
  /** Short code for headers and stats: errno name, error code or class name. */
  readonly code: string;
  readonly message: string;
}

export function classifyFailure(err: unknown): ClassifiedFailure {
  const e = err as { code?: string; errno?: number; name?: string; message?: string };
  const code = e?.code ?? (typeof e?.errno === 'number' ? `errno ${e.errno}` : (e?.name ?? 'Error'));
  const message = (e?.message ?? String(err)).split('\n')[0]!.slice(0, 300);
  // A round trip that got no answer is the database not answering, like a lost connection: the batch goes
  // back without spending attempts and the worker probes until it answers (a one-off KILL: at once).
  if (isConnectionError(err) || err instanceof RoundTripTimeoutError) return { class: 'db_unavailable', code, message };
  if (isRetryableDbError(err)) return { class: 'transient', code, message };
  return { class: 'unexpected', code, message };
}
