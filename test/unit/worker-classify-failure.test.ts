import { describe, expect, it } from 'vitest';
import { RoundTripTimeoutError } from '../../src/db/with-transaction.js';
import { classifyFailure } from '../../src/worker/classify-failure.js';

/** The one failure taxonomy: what the worker does with each kind of error (reject, retry, pause). */
describe('classifyFailure', () => {
  it('a deadlock or a lock wait timeout is transient: retried with backoff', () => {
    expect(classifyFailure(Object.assign(new Error('Deadlock found'), { errno: 1213, code: 'ER_LOCK_DEADLOCK' }))).toMatchObject({
      class: 'transient',
      code: 'ER_LOCK_DEADLOCK',
    });
    expect(classifyFailure(Object.assign(new Error('Lock wait timeout exceeded'), { errno: 1205 })).class).toBe('transient');
  });

  it('a round trip given up is the database not answering: handed back like a lost connection, no attempt spent', () => {
    const failure = classifyFailure(new RoundTripTimeoutError(60_000));
    expect(failure).toMatchObject({ class: 'db_unavailable', code: 'RoundTripTimeoutError' });
    expect(failure.message).toContain('no answer from the database in 60000 ms');
  });

  it('anything else is unexpected', () => {
    expect(classifyFailure(new TypeError('x is undefined')).class).toBe('unexpected');
  });
});
