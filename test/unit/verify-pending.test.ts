import { describe, expect, it } from 'vitest';
import { pendingText, waitingLine } from '../../src/commands/verify.js';
import { pendingStateOf } from '../../src/verify/verify.js';

describe('verify: what is still pending', () => {
  it('run ids still queued are pending; statement lines only while an accounting consumer is connected', () => {
    expect(pendingStateOf({ pending: 200 }, null)).toEqual({ runIds: 200, statementLines: 0 });
    expect(pendingStateOf(null, { pending: 30, consumers: 1 })).toEqual({ runIds: 0, statementLines: 30 });
    expect(pendingStateOf(null, { pending: 30, consumers: 0 })).toEqual({ runIds: 0, statementLines: 0 });
    expect(pendingStateOf(null, { pending: 30, consumers: null })).toEqual({ runIds: 0, statementLines: 0 });
  });

  it('says what is pending, in the singular or plural', () => {
    expect(pendingText({ runIds: 200, statementLines: 1 })).toBe('200 ids of the run still queued, 1 statement line on their way');
    expect(pendingText({ runIds: 1, statementLines: 0 })).toBe('1 id of the run still queued');
    expect(pendingText({ runIds: 0, statementLines: 0 })).toBe('');
  });

  it('the waiting line counts what is pending and the seconds left', () => {
    expect(waitingLine({ pending: { runIds: 120, statementLines: 0 }, run: null }, 5.2)).toBe(
      'waiting: 120 ids of the run still queued (6 s left)',
    );
  });
});
