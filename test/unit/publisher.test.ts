import type { ConfirmChannel } from 'amqplib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfirmPublisher, PublishError } from '../../src/amqp/publisher.js';
import { FakeBroker, FakeChannel } from '../helpers/fake-amqp.js';

describe('ConfirmPublisher confirm timeout', () => {
  let channel: FakeChannel;
  let publisher: ConfirmPublisher;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
    channel = new FakeChannel(new FakeBroker(), true);
    channel.confirmMode = 'manual';
    publisher = new ConfirmPublisher(channel as unknown as ConfirmChannel, { windowMax: 10, confirmTimeoutMs: 1_000 });
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  /** Publishes one message; its outcome as 'confirmed', 'returned' or the error's message. */
  async function publishOne(id: string): Promise<{ outcome: () => string | null }> {
    let outcome: string | null = null;
    const { confirmed } = await publisher.publish('x', 'k', Buffer.from(id), { messageId: id });
    confirmed.then(
      (o) => (outcome = o),
      (err: Error) => (outcome = err instanceof PublishError ? err.message : `not a PublishError: ${err.message}`),
    );
    return { outcome: () => outcome };
  }

  it('fails each unconfirmed message once its own timeout has passed, oldest first, with one timer for them all', async () => {
    const a = await publishOne('a');
    await vi.advanceTimersByTimeAsync(600);
    const b = await publishOne('b');
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(399);
    expect([a.outcome(), b.outcome()]).toEqual([null, null]);
    await vi.advanceTimersByTimeAsync(1);
    expect([a.outcome(), b.outcome()]).toEqual(['no confirm within 1000 ms', null]);
    await vi.advanceTimersByTimeAsync(599);
    expect(b.outcome()).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(b.outcome()).toBe('no confirm within 1000 ms');
    expect(publisher.inFlight).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a confirmed message never times out, and with nothing unconfirmed no timer is left', async () => {
    const a = await publishOne('a');
    const b = await publishOne('b');
    channel.confirmAll();
    await vi.advanceTimersByTimeAsync(0);
    expect([a.outcome(), b.outcome()]).toEqual(['confirmed', 'confirmed']);
    expect(vi.getTimerCount()).toBe(0);
    // A later message gets its own full timeout, counted from its publish.
    await vi.advanceTimersByTimeAsync(5_000);
    const c = await publishOne('c');
    await vi.advanceTimersByTimeAsync(999);
    expect(c.outcome()).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(c.outcome()).toBe('no confirm within 1000 ms');
  });

  it('a nack fails only its message; the others keep their deadlines', async () => {
    const a = await publishOne('a');
    channel.confirmAll(new Error('nack'));
    await vi.advanceTimersByTimeAsync(0);
    expect(a.outcome()).toBe('broker nacked the message');
    const b = await publishOne('b');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(b.outcome()).toBe('no confirm within 1000 ms');
  });
});
