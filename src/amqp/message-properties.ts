import type { Message, Options } from 'amqplib';

/**
 * amqplib types every message property as `any`. The properties txsim reads, checked once here so
 * the code that uses them works with real types (a property of the wrong type reads as absent).
 */
export interface TypedProperties {
  readonly contentType: string | undefined;
  readonly messageId: string | undefined;
  /** Seconds since the epoch (AMQP's timestamp), as the publisher set it. */
  readonly timestamp: number | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
}

/** The typed properties of a message (or, given publish options, of the message they describe). */
export function typedProperties(source: Pick<Message, 'properties'> | Options.Publish): TypedProperties {
  const p: Options.Publish = 'properties' in source ? source.properties : source;
  const contentType: unknown = p.contentType;
  const messageId: unknown = p.messageId;
  const timestamp: unknown = p.timestamp;
  const headers: unknown = p.headers;
  return {
    contentType: typeof contentType === 'string' ? contentType : undefined,
    messageId: typeof messageId === 'string' ? messageId : undefined,
    timestamp: typeof timestamp === 'number' ? timestamp : undefined,
    headers: typeof headers === 'object' && headers !== null ? (headers as Record<string, unknown>) : {},
  };
}
