import { randomUUID } from 'node:crypto';
import type { ChannelModel } from 'amqplib';
import { HEADERS, type Topology } from '../../src/amqp/topology.js';

/** A valid v1 message body, with overrides. */
export function txBody(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: randomUUID(),
    type: 'deposit',
    accountId: 1,
    amountMinor: 1_000,
    currency: 'EUR',
    createdAt: new Date().toISOString(),
    ...over,
  };
}

/**
 * Publishes raw bodies to the transactions exchange with a plain AMQP client (not through gen),
 * waiting for the broker's confirms. `body` may be an object (JSON-encoded) or raw bytes.
 */
export async function publishRaw(
  connection: ChannelModel,
  topology: Topology,
  messages: {
    body: Record<string, unknown> | Buffer | string;
    routingKey?: string;
    contentType?: string | null;
    messageId?: string;
    headers?: Record<string, unknown>;
  }[],
): Promise<void> {
  const channel = await connection.createConfirmChannel();
  try {
    for (const m of messages) {
      const content = Buffer.isBuffer(m.body) ? m.body : Buffer.from(typeof m.body === 'string' ? m.body : JSON.stringify(m.body));
      const id = m.messageId ?? (typeof m.body === 'object' && !Buffer.isBuffer(m.body) ? String(m.body.id) : undefined);
      // Routed by the body's type, as gen does; raw bytes or a body without a string type go to tx.deposit.
      const type = typeof m.body === 'object' && !Buffer.isBuffer(m.body) && typeof m.body.type === 'string' ? m.body.type : 'deposit';
      // The account header as gen sets it: it routes the message to its partition in an ordered namespace.
      const account = typeof m.body === 'object' && !Buffer.isBuffer(m.body) ? m.body.accountId : undefined;
      const headers = { ...(typeof account === 'number' ? { [HEADERS.accountId]: String(account) } : {}), ...m.headers };
      channel.publish(topology.transactionsExchange, m.routingKey ?? `tx.${type}`, content, {
        persistent: true,
        ...(Object.keys(headers).length > 0 ? { headers } : {}),
        ...(m.contentType === null ? {} : { contentType: m.contentType ?? 'application/json' }),
        ...(id ? { messageId: id } : {}),
      });
    }
    await channel.waitForConfirms();
  } finally {
    await channel.close();
  }
}
