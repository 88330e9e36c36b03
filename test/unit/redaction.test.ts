import { loadConfig } from '../../src/config/config.js';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { redactSecrets, redactUrl } from '../../src/config/redact.js';
import { describeCause, ServiceUnavailableError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';

describe('secrets never reach a log line or an error message', () => {
  it('the logger censors URL and password fields', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const log = createLogger('info', { destination: sink, pretty: false });
    log.info(
      {
        url: 'amqp://app:s3cret-pw@mq:5672',
        amqpUrl: 'amqp://app:s3cret-pw@mq',
        databaseUrl: 'mysql://root:s3cret-pw@db/x',
        password: 's3cret-pw',
        nested: { url: 'http://a:s3cret-pw@b' },
      },
      'connecting',
    );
    expect(lines.join('')).toContain('connecting');
    expect(lines.join('')).not.toContain('s3cret-pw');
  });

  it('service errors carry the endpoint without its password', () => {
    const err = new ServiceUnavailableError(
      'rabbitmq',
      'amqp://guest:***@127.0.0.1:5999',
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5999'), { code: 'ECONNREFUSED' }),
    );
    expect(err.message).toBe('rabbitmq unreachable at amqp://guest:***@127.0.0.1:5999: connect ECONNREFUSED 127.0.0.1:5999');
    expect(describeCause(new AggregateError([new Error('first')]))).toBe('first');
  });

  it('redactSecrets removes every occurrence', () => {
    expect(redactSecrets('a pw1234 b pw1234', ['pw1234'])).toBe('a *** b ***');
  });
});

describe('one redaction form everywhere: amqp://user:***@host', () => {
  it('a password equal to the user name hides the password only (not amqp://***:***@)', () => {
    const message = 'rabbitmq unreachable at amqp://guest:***@127.0.0.1:5999: connect ECONNREFUSED';
    expect(redactSecrets(message, ['guest'])).toBe(message);
    expect(redactUrl('amqp://guest:guest@127.0.0.1:5672')).toBe('amqp://guest:***@127.0.0.1:5672');
  });

  it('a URL without its scheme still has its password hidden (URL would read "guest:" as the scheme)', () => {
    expect(redactUrl('guest:ssW0rd@127.0.0.1:5672')).toBe('guest:***@127.0.0.1:5672');
    expect(redactUrl('root:p@ss:w0rd@db:3306/walk1')).toBe('root:***@db:3306/walk1');
    expect(redactUrl('127.0.0.1:5672')).toBe('127.0.0.1:5672');
    // A mistyped scheme, or a slash in the password: the secret still goes.
    for (const typo of [
      'amqp:/guest:s3cret@host:5672',
      'amqp//guest:s3cret@host:5672',
      'guest:se/cret@host:5672',
      'amqp:guest:s3cret@host',
    ])
      expect(redactUrl(typo), typo).not.toMatch(/s3cret|se\/cret/);
    expect(redactUrl('guest:se/cret@host:5672')).toBe('guest:***@host:5672');
    expect(redactUrl('db.example.com/walk1')).toBe('db.example.com/walk1');
    expect(() => loadConfig({ AMQP_URL: 'guest:ssW0rd@127.0.0.1:5672' }, {})).toThrow(
      'AMQP_URL: "guest:***@127.0.0.1:5672" must start with amqp:// or amqps://',
    );
    expect(() => loadConfig({}, { databaseUrl: 'root:ssW0rd@127.0.0.1:3306/x' })).toThrow(
      /"root:\*\*\*@127\.0\.0\.1:3306\/x" must start with/,
    );
  });

  it('a URL echoed with its password in an error text is redacted to the same form', () => {
    expect(redactSecrets('bad url amqp://app:s3cret-pw@mq:5672/vh and s3cret-pw again', ['s3cret-pw'])).toBe(
      'bad url amqp://app:***@mq:5672/vh and *** again',
    );
    expect(redactSecrets('mysql://root@db:3306/x', [])).toBe('mysql://root@db:3306/x');
  });

  it('an unreachable-broker error, scrubbed as the CLI boundary scrubs it, keeps the one form', () => {
    const url = 'amqp://guest:guest@127.0.0.1:5999';
    const err = new ServiceUnavailableError('rabbitmq', redactUrl(url), new Error('connect ECONNREFUSED 127.0.0.1:5999'));
    // cli.ts scrubs every URL password of argv and env (here: "guest") from the message.
    expect(redactSecrets(err.message, ['guest'])).toBe(
      'rabbitmq unreachable at amqp://guest:***@127.0.0.1:5999: connect ECONNREFUSED 127.0.0.1:5999',
    );
  });
});
