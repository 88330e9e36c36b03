import { describe, expect, it } from 'vitest';
import { parseViaFlag } from '../../src/commands/gen.js';
import { UsageError } from '../../src/errors.js';

describe('gen --via <url>', () => {
  it('takes the base URL of a server, http or https, and keeps its origin', () => {
    expect(parseViaFlag('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080');
    expect(parseViaFlag('http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080');
    expect(parseViaFlag('https://api.example.test')).toBe('https://api.example.test');
  });

  it('refuses what is not a base URL, and never echoes a password', () => {
    for (const bad of ['127.0.0.1:8080x', 'not a url', 'ftp://127.0.0.1', 'http://127.0.0.1:8080/v1/transactions', 'http://h:1/?x=1']) {
      expect(() => parseViaFlag(bad), bad).toThrow(UsageError);
    }
    let message = '';
    try {
      parseViaFlag('http://admin:hunter2@127.0.0.1:8080');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('no credentials in the URL');
    expect(message).not.toContain('hunter2');
  });
});
