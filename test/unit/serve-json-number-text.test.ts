import { describe, expect, it } from 'vitest';
import { parseJsonKeepingNumberText } from '../../src/domain/json-number-text.js';

// The decimal-keeping parser marks number literals as strings while it parses; no string of the
// text may ever come out as a number, whatever U+0000 escapes it holds.
describe('parseJsonKeepingNumberText never reads a string as a number', () => {
  const keep = new Set(['amount']);

  it('keeps strings that look like the number mark as the strings they are', () => {
    const text = String.raw`{"transaction_id":"wh-1","source_account":"\u0000n:0x1","destination_account":"\u0000n0:2.0","amount":"1.50","currency":"EUR"}`;
    expect(parseJsonKeepingNumberText(text, keep)).toEqual({
      transaction_id: 'wh-1',
      source_account: '\u0000n:0x1',
      destination_account: '\u0000n0:2.0',
      amount: '1.50',
      currency: 'EUR',
    });
  });

  it('still restores every real number when strings claim several marks', () => {
    const text = String.raw`{"a":["\u0000n0:5","\u0000n1:6","\u0000n2:"],"amount":12.30,"n":7,"m":[1.5,-2]}`;
    expect(parseJsonKeepingNumberText(text, keep)).toEqual({
      a: ['\u0000n0:5', '\u0000n1:6', '\u0000n2:'],
      amount: '12.30',
      n: 7,
      m: [1.5, -2],
    });
  });

  it('a key holding NULs changes nothing', () => {
    expect(parseJsonKeepingNumberText(String.raw`{"\u0000n0:":"\u0000n0:1","amount":1}`, keep)).toEqual({
      '\u0000n0:': '\u0000n0:1',
      amount: '1',
    });
  });
});
