import { describe, expect, it } from 'vitest';
import { pendingText, waitingLine } from '../../src/commands/verify.js';
import { pendingStateOf } from '../../src/verify/verify.js';

describe('verify: what is still pending', () => {
  it('run ids still queued are pending; statement lines only while an accounting consumer is connected', () => {
    expect(pendingStateOf({ pending: 200 }, null)).toEqual({ runIds: 200, statementLines: 0, missingInstances: [] });
    expect(pendingStateOf(null, { pending: 30, consumers: 1 })).toEqual({ runIds: 0, statementLines: 30, missingInstances: [] });
    expect(pendingStateOf(null, { pending: 30, consumers: 0 })).toEqual({ runIds: 0, statementLines: 0, missingInstances: [] });
    expect(pendingStateOf(null, { pending: 30, consumers: null })).toEqual({ runIds: 0, statementLines: 0, missingInstances: [] });
  });

  it('instances of a split run that have not reported are pending, named k/n', () => {
    const instances = { count: 3, reported: [2], missing: [1, 3] };
    expect(pendingStateOf({ pending: 0, instances }, null)).toEqual({ runIds: 0, statementLines: 0, missingInstances: ['1/3', '3/3'] });
    expect(pendingText({ runIds: 0, statementLines: 0, missingInstances: ['2/2'] })).toBe(
      'instance 2/2 of the run has not reported (no gen --instance has started it)',
    );
    expect(pendingText({ runIds: 5, statementLines: 0, missingInstances: ['1/3', '3/3'] })).toBe(
      '5 ids of the run still queued, instances 1/3, 3/3 of the run have not reported (no gen --instance has started them)',
    );
  });

  it('says what is pending, in the singular or plural', () => {
    expect(pendingText({ runIds: 200, statementLines: 1, missingInstances: [] })).toBe(
      '200 ids of the run still queued, 1 statement line on their way',
    );
    expect(pendingText({ runIds: 1, statementLines: 0, missingInstances: [] })).toBe('1 id of the run still queued');
    expect(pendingText({ runIds: 0, statementLines: 0, missingInstances: [] })).toBe('');
  });

  it('the waiting line counts what is pending and the seconds left', () => {
    expect(waitingLine({ pending: { runIds: 120, statementLines: 0, missingInstances: [] }, run: null }, 5.2)).toBe(
      'waiting: 120 ids of the run still queued (6 s left)',
    );
  });
});
