import net from 'node:net';
import tls from 'node:tls';

/**
 * Tells an AMQP server from something else at the broker's address. amqplib only reports what it
 * could not parse (`Frame size 1345270062 exceeds maxFrameSize` is "HTTP/1.1" read as a frame
 * header), so after a handshake failure without a socket error code we look at the first bytes the
 * server sends in answer to the AMQP 0-9-1 protocol header — by protocol, not by error text.
 */

/** What answered at the broker's address does not speak AMQP. */
export class NotAmqpServerError extends Error {
  constructor(
    /** host:port that answered. */
    readonly address: string,
    /** The start of its answer, printable characters only. */
    readonly answer: string,
  ) {
    super(`what answered at ${address} is not an AMQP server (it sent ${JSON.stringify(answer)})`);
    this.name = 'NotAmqpServerError';
  }
}

/** The protocol header an AMQP 0-9-1 client opens with. */
const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x00, 0x09, 0x01]);

/** Bytes read before deciding: a method frame header (7) is enough; a little more makes a readable sample. */
const ANSWER_BYTES_MAX = 64;

/** Enough to tell the answer apart: the length of a method frame header, or of the "AMQP" of a version reply. */
const DECIDING_BYTES = 4;

/**
 * True when `answer` is how an AMQP server replies to the 0-9-1 header: a method frame on channel 0
 * (connection.start), or "AMQP" followed by the version it wants instead (a server of another version).
 */
export function looksLikeAmqp(answer: Buffer): boolean {
  if (answer.length >= 3 && answer[0] === 0x01 && answer[1] === 0x00 && answer[2] === 0x00) return true;
  return answer.subarray(0, 4).toString('latin1') === 'AMQP';
}

/** The first line of an answer as printable text (other bytes as `.`), at most 60 characters. */
export function answerSample(answer: Buffer): string {
  const text = answer.toString('latin1').split(/[\r\n]/)[0] ?? '';
  // Anything outside printable ASCII becomes '.', so the sample is always safe to print on a terminal.
  return text.replace(/[^\x20-\x7e]/g, '.').slice(0, 60);
}

/**
 * Connects to the host and port of `amqpUrl`, sends the AMQP protocol header and reads the answer.
 * Resolves with a NotAmqpServerError when something answered that is not AMQP; null when it is
 * AMQP, when nothing answered within `timeoutMs`, or when the address cannot be reached at all (the
 * connect error already says so). Never rejects.
 */
export function probeAmqpServer(amqpUrl: string, timeoutMs = 2_000): Promise<NotAmqpServerError | null> {
  let url: URL;
  try {
    url = new URL(amqpUrl);
  } catch {
    return Promise.resolve(null);
  }
  const secure = url.protocol === 'amqps:';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port) || (secure ? 5671 : 5672);
  const address = `${url.hostname}:${port}`;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let settled = false;
    // Only the answer's first bytes are read, never trusted: the certificate is not what is being checked here.
    const socket = secure
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, rejectUnauthorized: false }, () =>
          socket.write(AMQP_HEADER),
        )
      : net.connect({ host, port }, () => socket.write(AMQP_HEADER));
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const answer = Buffer.concat(chunks);
      resolve(answer.length === 0 || looksLikeAmqp(answer) ? null : new NotAmqpServerError(address, answerSample(answer)));
    };
    const timer = setTimeout(finish, timeoutMs);
    timer.unref();
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      // Enough to decide, or a full line of text for the sample.
      if (length >= ANSWER_BYTES_MAX || (length >= DECIDING_BYTES && looksLikeAmqp(Buffer.concat(chunks))) || chunk.includes(0x0a))
        finish();
    });
    socket.on('end', finish);
    socket.on('close', finish);
    socket.on('error', finish);
  });
}
