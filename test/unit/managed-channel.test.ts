import { afterEach, describe, expect, it } from 'vitest';
import { ManagedConnection, type Delivery } from '../../src/amqp/managed-channel.js';
import { FakeBroker } from '../helpers/fake-amqp.js';
import { recordingLogger, until } from './worker-harness.js';

const QUEUE = 'unit.q';
let connection: ManagedConnection | null = null;
afterEach(async () => {
  await connection?.close();
  connection = null;
});

function managed(setupCalls: string[] = []) {
  const broker = new FakeBroker();
  const { log, lines, messages } = recordingLogger();
  connection = new ManagedConnection({
    url: 'amqp://fake',
    clientName: 'unit',
    log,
    connect: broker.connect,
    setup: () => {
      setupCalls.push('topology');
      return Promise.resolve();
    },
  });
  const channel = connection.channel({
    name: 'unit channel',
    ackMode: 'multiple',
    retryDelay: { initialMs: 20, maxMs: 80 },
    setup: async (ch) => {
      setupCalls.push('prefetch');
      await ch.prefetch(5);
    },
  });
  const deliveries: Delivery[] = [];
  const consumer = channel.consume(QUEUE, (d) => deliveries.push(d), { label: 'unit consumer' });
  return { broker, channel, consumer, deliveries, lines, messages, connection };
}

describe('ManagedChannel', () => {
  it('re-runs the setup functions and re-subscribes on every reconnect; a new channel is a new generation', async () => {
    const setupCalls: string[] = [];
    const m = managed(setupCalls);
    await m.connection.start();
    await until(() => m.consumer.subscribed, 'subscribed');
    expect(m.channel.generation).toBe(1);
    m.broker.enqueue(QUEUE, 'one');
    await until(() => m.deliveries.length === 1, 'the first delivery');
    m.broker.disconnect();
    expect(m.channel.generation).toBeNull();
    // A delivery of the gone channel is never settled.
    expect(m.channel.ack(m.deliveries[0]!)).toBe(false);
    await m.broker.reconnect();
    await until(() => m.consumer.subscribed, 'subscribed again');
    expect(setupCalls).toEqual(['topology', 'prefetch', 'topology', 'prefetch']);
    expect(m.channel.generation).toBe(2);
    await until(() => m.deliveries.length === 2, 'the redelivery');
    const redelivered = m.deliveries[1]!;
    expect(redelivered.generation).toBe(2);
    expect(redelivered.msg.fields.redelivered).toBe(true);
    expect(m.channel.ack(redelivered)).toBe(true);
    const channels = m.broker.channels.filter((c) => c.prefetchCount === 5);
    expect(channels).toHaveLength(2);
    expect(channels[0]!.settlements).toEqual([]);
    expect(channels[1]!.ackedTags()).toEqual([1]);
  });

  it('subscribes again after the broker cancels the consumer (a null delivery)', async () => {
    const m = managed();
    await m.connection.start();
    await until(() => m.consumer.subscribed, 'subscribed');
    const fake = m.broker.consumersOf(QUEUE)[0]!;
    fake.cancelByBroker();
    expect(m.consumer.subscribed).toBe(false);
    expect(m.messages('warn')).toContain('unit consumer cancelled by broker; resubscribing');
    await until(() => m.consumer.subscribed, 'resubscribed');
    m.broker.enqueue(QUEUE, 'after');
    await until(() => m.deliveries.length === 1, 'a delivery after the resubscribe');
  });

  it('logs a failed re-subscribe at error and retries it with capped backoff until it succeeds', async () => {
    const m = managed();
    await m.connection.start();
    await until(() => m.consumer.subscribed, 'subscribed');
    const fake = m.broker.consumersOf(QUEUE)[0]!;
    for (let i = 0; i < 4; i++) fake.consumeFailures.push(Object.assign(new Error('NOT_FOUND - no queue'), { code: 404 }));
    fake.cancelByBroker();
    await until(() => m.consumer.subscribed, 'subscribed after four failures', 3_000);
    const failures = m.lines.filter((l) => l.msg === 'unit consumer: could not subscribe; retrying');
    expect(failures).toHaveLength(4);
    expect(failures.every((l) => l.level === 50)).toBe(true);
    // 20 ms (the cancel) → 40, 80, 80, 80: doubled, capped at maxMs.
    expect(failures.map((l) => l.retryInMs)).toEqual([40, 80, 80, 80]);
  });

  it('a subscribe cut short by close() is not logged as an error (serve stopping at once, its port taken)', async () => {
    const broker = new FakeBroker();
    const { log, lines } = recordingLogger();
    connection = new ManagedConnection({ url: 'amqp://fake', clientName: 'unit', log, connect: broker.connect });
    let declared!: () => void;
    let declaring!: () => void;
    const declaringNow = new Promise<void>((resolve) => (declaring = resolve));
    // The feed's queue source: a declare on the wire when close() comes.
    const queue = async () => {
      declaring();
      await new Promise<void>((resolve) => (declared = resolve));
      return QUEUE;
    };
    connection
      .channel({ name: 'feed channel', retryDelay: { initialMs: 20, maxMs: 80 } })
      .consume(queue, () => {}, { label: 'feed consumer' });
    await connection.start();
    await declaringNow;
    const closing = connection.close();
    declared();
    await closing;
    connection = null;
    const failures = lines.filter((l) => l.msg === 'feed consumer: could not subscribe; retrying');
    expect(failures.map((l) => [l.level, l.err])).toEqual([[20, 'Channel closed']]);
  });

  it('pause cancels the consumer and survives a reconnect; resume subscribes again', async () => {
    const m = managed();
    await m.connection.start();
    await until(() => m.consumer.subscribed, 'subscribed');
    await m.consumer.pause();
    expect(m.broker.consumersOf(QUEUE)).toHaveLength(0);
    m.broker.disconnect();
    await m.broker.reconnect();
    await new Promise((r) => setTimeout(r, 30));
    expect(m.broker.consumersOf(QUEUE)).toHaveLength(0);
    await m.consumer.resume();
    expect(m.consumer.subscribed).toBe(true);
  });

  it('reopens a channel the broker closed while the connection stays', async () => {
    const m = managed();
    await m.connection.start();
    await until(() => m.consumer.subscribed, 'subscribed');
    const fake = m.broker.consumersOf(QUEUE)[0]!;
    fake.closeWith(Object.assign(new Error('PRECONDITION_FAILED - unknown delivery tag 9'), { code: 406 }));
    expect(m.channel.generation).toBeNull();
    await until(() => m.consumer.subscribed, 'subscribed on a reopened channel');
    expect(m.channel.generation).toBe(2);
    expect(m.messages('warn')).toContain('amqp channel closed; reopening');
  });
});
