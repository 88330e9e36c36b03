import { describe, expect, it } from 'vitest';
import { AmqpEndpoints } from '../../src/amqp/endpoints.js';
import { redactUrl } from '../../src/config/redact.js';
import { splitUrlList } from '../../src/config/url-list.js';

describe('AMQP node lists', () => {
  it('splits on commas and trims; a single URL is a list of one', () => {
    expect(splitUrlList('amqp://a:1, amqp://b:2 ,')).toEqual(['amqp://a:1', 'amqp://b:2']);
    expect(splitUrlList('amqp://a')).toEqual(['amqp://a']);
  });

  it('redacts every password of a list', () => {
    expect(redactUrl('amqp://u:secret@a:1,amqp://u:other@b:2')).toBe('amqp://u:***@a:1,amqp://u:***@b:2');
  });

  it('hands amqplib the plain URL for one node', () => {
    expect(new AmqpEndpoints('amqp://u:p@h:5/v').target()).toBe('amqp://u:p@h:5/v');
  });

  it('reads the current node at each connect and moves round robin', () => {
    const endpoints = new AmqpEndpoints('amqp://u%2Cx:p%40ss@h1:5681/v%2F1?heartbeat=7,amqps://h2,amqp://[::1]:5683');
    const target = endpoints.target();
    if (typeof target === 'string') throw new Error('expected an options object');
    expect({ ...pick(target) }).toEqual({
      protocol: 'amqp',
      hostname: 'h1',
      port: 5681,
      username: 'u,x',
      password: 'p@ss',
      vhost: 'v%2F1',
      heartbeat: 7,
    });
    endpoints.advance();
    // No credentials in the URL: amqplib's own default (guest/guest) applies, as for a URL string.
    expect(pick(target)).toEqual({
      protocol: 'amqps',
      hostname: 'h2',
      port: 5671,
      username: undefined,
      password: undefined,
      vhost: undefined,
      heartbeat: undefined,
    });
    expect(endpoints.describe()).toBe('amqps://h2');
    endpoints.advance();
    expect(pick(target)).toMatchObject({ hostname: '::1', port: 5683 });
    endpoints.advance();
    expect(pick(target)).toMatchObject({ hostname: 'h1' });
  });
});

function pick(t: {
  protocol?: string;
  hostname?: string;
  port?: number;
  username?: string;
  password?: string;
  vhost?: string;
  heartbeat?: number;
}) {
  return {
    protocol: t.protocol,
    hostname: t.hostname,
    port: t.port,
    username: t.username,
    password: t.password,
    vhost: t.vhost,
    heartbeat: t.heartbeat,
  };
}
