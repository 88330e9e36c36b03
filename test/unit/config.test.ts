import { describe, expect, it } from 'vitest';
import { configSecrets, describeEndpoints, loadConfig } from '../../src/config/config.js';
import {
  parseDurationFlag,
  parseIdListFlag,
  parseIntFlag,
  parseProxyListFlag,
  parseRangeFlag,
  parseWeightsFlag,
} from '../../src/config/parse.js';
import { redactUrl } from '../../src/config/redact.js';
import { UsageError } from '../../src/errors.js';

describe('config', () => {
  it('layers defaults < env < flags and names the database after the namespace', () => {
    expect(loadConfig({}, {})).toMatchObject({ namespace: 'txsim', databaseName: 'txsim', amqpUrl: 'amqp://guest:guest@127.0.0.1:5672' });
    expect(loadConfig({ TXSIM_NAMESPACE: 'envns' }, {}).databaseName).toBe('envns');
    expect(loadConfig({ TXSIM_NAMESPACE: 'envns' }, { namespace: 'flagns' }).namespace).toBe('flagns');
    expect(loadConfig({ DATABASE_URL: 'mysql://root@db:3306/books' }, { namespace: 'x1' }).databaseName).toBe('books');
    expect(loadConfig({ TXSIM_RETRY_DELAYS: '100,200' }, {}).retryDelaysMs).toEqual([100, 200]);
  });

  it('rejects bad values naming the key, without echoing passwords', () => {
    expect(() => loadConfig({ AMQP_URL: 'http://u:secretpw@h' }, {})).toThrow(UsageError);
    try {
      loadConfig({ AMQP_URL: 'http://u:secretpw@h' }, {});
    } catch (err) {
      expect((err as Error).message).toContain('AMQP_URL');
      expect((err as Error).message).not.toContain('secretpw');
    }
    // Each error names the flag when one was given, else the environment variable.
    expect(() => loadConfig({}, { namespace: 'Bad-NS' })).toThrow(/^--namespace: "Bad-NS" is not valid/);
    expect(() => loadConfig({ TXSIM_NAMESPACE: 'Bad-NS' }, {})).toThrow(/^TXSIM_NAMESPACE: "Bad-NS" is not valid/);
    expect(() => loadConfig({}, { logLevel: 'loud' })).toThrow(/^--log-level: "loud"/);
    expect(() => loadConfig({ LOG_LEVEL: 'loud' }, {})).toThrow(/^LOG_LEVEL: "loud"/);
    expect(() => loadConfig({}, { retryDelays: '5,abc' })).toThrow(/^--retry-delays: "5,abc"/);
    expect(() => loadConfig({ TXSIM_RETRY_DELAYS: '5,abc' }, {})).toThrow(/^TXSIM_RETRY_DELAYS: "5,abc"/);
    expect(() => loadConfig({ TXSIM_CONNECT_TIMEOUT: 'abc' }, {})).toThrow(/^TXSIM_CONNECT_TIMEOUT: "abc" must be a number of seconds/);
    expect(() => loadConfig({ TXSIM_CONNECT_TIMEOUT: '1' }, { connectTimeout: '0' })).toThrow(/^--connect-timeout: "0"/);
    expect(() => loadConfig({ AMQP_URL: 'amqp://h' }, { amqpUrl: 'http://h' })).toThrow(/^--amqp-url: "http:\/\/h"/);
    expect(() => loadConfig({}, { databaseUrl: 'mysql://h/bad-name' })).toThrow(/^--database-url: database name "bad-name"/);
    expect(() => loadConfig({ RABBITMQ_API_URL: 'amqp://h' }, {})).toThrow(/^RABBITMQ_API_URL: "amqp:\/\/h" must start with http/);
  });

  it('redacts URL passwords for printing', () => {
    const config = loadConfig({ AMQP_URL: 'amqp://app:s3cret@mq:5672', DATABASE_URL: 'mysql://app:dbpass@db/books' }, {});
    expect(JSON.stringify(describeEndpoints(config))).not.toMatch(/s3cret|dbpass/);
    expect(configSecrets(config)).toEqual(expect.arrayContaining(['s3cret', 'dbpass']));
    expect(redactUrl('amqp://a:b c@h')).not.toContain('b c');
  });
});

describe('flag parsers', () => {
  it('parse good values and reject bad ones with the flag name', () => {
    expect(parseIntFlag('--count', '42', 0, 1)).toBe(42);
    expect(() => parseIntFlag('--count', '4x', 0)).toThrow(/--count: "4x" is not an integer/);
    expect(parseRangeFlag('--amount', '100..250', [1, 2])).toEqual([100, 250]);
    expect(() => parseRangeFlag('--amount', '250..100', [1, 2])).toThrow(/--amount/);
    expect(parseIdListFlag('--accounts', '1-3,7')).toEqual([1, 2, 3, 7]);
    expect(parseWeightsFlag('--mix', 'deposit=1', ['deposit', 'withdrawal'] as const, { deposit: 1, withdrawal: 1 })).toEqual({
      deposit: 1,
      withdrawal: 0,
    });
    expect(() => parseWeightsFlag('--mix', 'refund=1', ['deposit'] as const, { deposit: 1 })).toThrow(/refund/);
  });
});

describe('duration flags', () => {
  it('take ms, s and m (or bare ms), bounded, and name the flag when wrong', () => {
    expect(parseDurationFlag('--expire-every', undefined, 1_000, 50, 3_600_000)).toBe(1_000);
    expect(parseDurationFlag('--expire-every', '500ms', 1_000, 50, 3_600_000)).toBe(500);
    expect(parseDurationFlag('--expire-every', '1.5s', 1_000, 50, 3_600_000)).toBe(1_500);
    expect(parseDurationFlag('--expire-every', '2m', 1_000, 50, 3_600_000)).toBe(120_000);
    expect(parseDurationFlag('--expire-every', '250', 1_000, 50, 3_600_000)).toBe(250);
    expect(() => parseDurationFlag('--expire-every', '10ms', 1_000, 50, 3_600_000)).toThrow(/--expire-every: 10ms must be between 50 ms/);
    expect(() => parseDurationFlag('--expire-every', 'soon', 1_000, 50, 3_600_000)).toThrow(/--expire-every: "soon" is not a duration/);
  });

  it('reads --trust-proxy as addresses, CIDR ranges or range names, and refuses anything else', () => {
    expect(parseProxyListFlag('--trust-proxy', undefined)).toEqual([]);
    expect(parseProxyListFlag('--trust-proxy', '10.0.0.5, 192.168.0.0/16,loopback,fd00::/8,::1')).toEqual([
      '10.0.0.5',
      '192.168.0.0/16',
      'loopback',
      'fd00::/8',
      '::1',
    ]);
    for (const bad of ['true', '10.0.0.300', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/8/1', 'proxy.example.com', '', '10.0.0.1,'])
      expect(() => parseProxyListFlag('--trust-proxy', bad), bad).toThrow(UsageError);
    expect(() => parseProxyListFlag('--trust-proxy', 'lb1')).toThrow(/--trust-proxy: "lb1" is not an IP address, a CIDR range/);
  });
});
