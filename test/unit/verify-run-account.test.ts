import { describe, expect, it } from 'vitest';
import { placeId, RunTally } from '../../src/verify/run-account.js';

const nowhere = { parked: false, returned: false, pastProgress: false };

describe('placing one id of a run', () => {
  it('an outcome wins over every queue', () => {
    expect(placeId({ id: 'a', status: 'applied', reason: null }, { parked: true, returned: true, pastProgress: true })).toBe('applied');
    expect(placeId({ id: 'a', status: 'rejected', reason: 'insufficient_funds' }, { ...nowhere, parked: true })).toBe('rejected');
  });

  it('without an outcome: parked, then returned, then refused by the API, then never published, else missing', () => {
    expect(placeId(undefined, { parked: true, returned: true, pastProgress: true })).toBe('parked');
    expect(placeId(undefined, { parked: false, returned: true, pastProgress: true })).toBe('returned');
    expect(placeId(undefined, { ...nowhere, refused: true, pastProgress: true })).toBe('refused');
    expect(placeId(undefined, { ...nowhere, pastProgress: true })).toBe('not_published');
    expect(placeId(undefined, nowhere)).toBe('missing');
  });
});

describe('the tally of a run', () => {
  it('counts each place, rejects by reason, keeps missing ids in order and does not count returned ones', () => {
    const tally = new RunTally();
    tally.add('1', 'applied', { id: '1', status: 'applied', reason: null });
    tally.add('2', 'rejected', { id: '2', status: 'rejected', reason: 'unknown_account' });
    tally.add('3', 'rejected', { id: '3', status: 'rejected', reason: 'unknown_account' });
    tally.add('4', 'rejected', { id: '4', status: 'rejected', reason: null });
    tally.add('5', 'parked', undefined);
    tally.add('6', 'returned', undefined);
    tally.add('6b', 'refused', undefined);
    tally.add('7', 'not_published', undefined);
    tally.add('8', 'missing', undefined);
    tally.add('9', 'missing', undefined);
    expect({ ...tally }).toEqual({
      applied: 1,
      rejected: 3,
      parked: 1,
      refused: 1,
      notPublished: 1,
      rejectedByReason: { unknown_account: 2, unknown: 1 },
      missing: ['8', '9'],
    });
  });
});
