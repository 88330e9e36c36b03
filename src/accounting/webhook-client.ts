import { Agent, request } from 'undici';
import type { AttemptResult, WebhookTransport } from './webhook-delivery.js';

export interface WebhookClientOptions {
  /** Longest one attempt may take, connect to last body byte; a slower receiver counts as a timeout (retried). */
  readonly attemptTimeoutMs: number;
  /** Most open connections to the receiver (bounds concurrent POSTs). */
  readonly connectionsMax: number;
}

/** Most of a response body kept for the delivery record; the rest is discarded unread. */
export const RESPONSE_BODY_CHARS_MAX = 1_024;

/**
 * The undici transport of webhooks: one keep-alive agent, every attempt bounded by a timeout, and
 * every failure returned as an `AttemptResult` rather than thrown. Redirects are not followed: a 3xx
 * is an answer the sender reports, not a hop it takes with a signed body.
 */
export class WebhookClient implements WebhookTransport {
  private readonly agent: Agent;

  constructor(private readonly options: WebhookClientOptions) {
    this.agent = new Agent({
      connections: options.connectionsMax,
      connect: { timeout: options.attemptTimeoutMs },
      headersTimeout: options.attemptTimeoutMs,
      bodyTimeout: options.attemptTimeoutMs,
      keepAliveTimeout: 4_000,
    });
  }

  async post(url: string, body: Buffer, headers: Record<string, string>, signal: AbortSignal): Promise<AttemptResult> {
    if (signal.aborted) return { kind: 'aborted' };
    // The timeout bounds the whole attempt; the agent's own timeouts bound each phase.
    const timeout = AbortSignal.timeout(this.options.attemptTimeoutMs);
    try {
      const response = await request(url, {
        method: 'POST',
        body,
        headers: { ...headers, 'user-agent': 'txsim-webhook/1' },
        dispatcher: this.agent,
        signal: AbortSignal.any([signal, timeout]),
      });
      return { kind: 'response', status: response.statusCode, body: await readBounded(response.body) };
    } catch (err) {
      if (signal.aborted) return { kind: 'aborted' };
      if (timeout.aborted) return { kind: 'error', code: 'TIMEOUT', message: `no response within ${this.options.attemptTimeoutMs} ms` };
      return { kind: 'error', ...describeError(err) };
    }
  }

  /** Closes idle connections and waits for open requests. Safe to call twice. */
  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }
}

/** Reads at most RESPONSE_BODY_CHARS_MAX characters of a body, then stops reading (and drops the connection). */
async function readBounded(stream: AsyncIterable<Buffer | string> & { destroy?: () => void }): Promise<string> {
  let text = '';
  for await (const chunk of stream) {
    text += chunk.toString();
    if (text.length >= RESPONSE_BODY_CHARS_MAX) {
      stream.destroy?.();
      break;
    }
  }
  return text.slice(0, RESPONSE_BODY_CHARS_MAX);
}

/** Error code and one-line message; connection errors from undici carry the socket error as `cause`. */
function describeError(err: unknown): { code: string; message: string } {
  const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code ?? e?.name ?? 'Error';
  const message = (e?.cause?.message ?? e?.message ?? String(err)).split('\n')[0]!.slice(0, 300);
  return { code, message };
}
