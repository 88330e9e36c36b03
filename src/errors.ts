import { inspect } from 'node:util';

/**
 * The one failure taxonomy of the CLI boundary. Every error that should end a command with a
 * particular exit code is one of these classes; `cli.ts` maps them to exit codes with `instanceof`.
 */

/** Stable exit codes, documented in the README. Never renumber: scripts depend on them. */
export const ExitCode = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  serviceUnavailable: 3,
  verificationFailed: 4,
  notFound: 5,
  publishIncomplete: 6,
  /** `verify --wait` ran out with ids still queued, in flight or on their way to the statements: nothing wrong yet, nothing proved either. */
  verificationPending: 7,
  /** `bench compare`: a figure got worse past the threshold, or the after run lost, duplicated or did not drain. */
  benchRegressed: 8,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error that ends the command with a chosen exit code and a one-line message (no stack unless --verbose). */
export class FatalError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, bad config values: the message names the key and the offending value. */
export class UsageError extends FatalError {
  constructor(message: string) {
    super(message, ExitCode.usage);
  }
}

/** RabbitMQ, the database or the management API could not be reached. */
export class ServiceUnavailableError extends FatalError {
  constructor(
    readonly service: 'rabbitmq' | 'database' | 'rabbitmq-management' | 'webhook' | 'txsim-serve',
    readonly endpoint: string,
    cause?: unknown,
  ) {
    super(`${service} unreachable at ${endpoint}: ${describeCause(cause)}`, ExitCode.serviceUnavailable, { cause });
  }
}

/**
 * The broker answered and refused: the login (ACCESS_REFUSED) or the virtual host (NOT_ALLOWED).
 * Waiting does not fix that, so it is said at once, with exit 3 like an unreachable service.
 */
export class ServiceRefusedError extends FatalError {
  constructor(
    readonly service: 'rabbitmq',
    readonly endpoint: string,
    cause: unknown,
  ) {
    super(
      isRefusedVhost(cause)
        ? `${service} at ${endpoint} refused to open the virtual host in the URL's path (check that it exists and that the user may use it)`
        : `${service} at ${endpoint} refused the connection: ${describeCause(cause)} (check the user and password in the URL)`,
      ExitCode.serviceUnavailable,
      { cause },
    );
  }
}

/** Attempts in a row refused at connection.open before the virtual host is taken as refused for good. */
export const VHOST_REFUSALS_MAX = 3;

/** The AMQP handshake was refused for good (a wrong user or password, a virtual host that does not exist or is not allowed). */
export function isRefusedLogin(err: unknown): boolean {
  return err instanceof Error && /\b(ACCESS[-_]REFUSED|NOT[-_]ALLOWED)\b/.test(err.message);
}

/**
 * The broker closed the connection in answer to connection.open: RabbitMQ's NOT_ALLOWED for a virtual
 * host that does not exist or that the user has no permission on — or, for a moment, a node that is
 * shutting down or whose virtual host is still starting. amqplib drops the server's reason from this
 * error ("Expected ConnectionOpenOk; got <ConnectionClose …>"), so it is told by its shape, and a
 * caller takes it as a refusal only once it repeated (VHOST_REFUSALS_MAX attempts in a row).
 */
export function isRefusedVhost(err: unknown): boolean {
  return err instanceof Error && /Expected ConnectionOpenOk; got <ConnectionClose/.test(err.message);
}

/** `verify` found a violation of the bank invariant or an unaccounted id. */
export class VerificationFailedError extends FatalError {
  constructor(message: string) {
    super(message, ExitCode.verificationFailed);
  }
}

export class NotFoundError extends FatalError {
  constructor(message: string) {
    super(message, ExitCode.notFound);
  }
}

/** gen stopped with messages that were never confirmed or were returned unroutable. */
export class PublishIncompleteError extends FatalError {
  constructor(message: string) {
    super(message, ExitCode.publishIncomplete);
  }
}

/** `verify` found no violation but messages still on their way when its wait ran out: not OK, not failed. */
export class VerificationPendingError extends FatalError {
  constructor(message: string) {
    super(message, ExitCode.verificationPending);
  }
}

/** `bench compare` found a figure worse past the threshold (or a lost / duplicated / undrained after run): for a CI to fail on. */
export class BenchRegressedError extends FatalError {
  constructor(message: string) {
    super(message, ExitCode.benchRegressed);
  }
}

/** A short, single-line description of an underlying error, for one-line messages. */
export function describeCause(cause: unknown): string {
  if (cause instanceof AggregateError && cause.errors.length > 0) return describeCause(cause.errors[0]);
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    const text = cause.message.split('\n')[0] ?? '';
    return code && !text.includes(code) ? `${code} ${text}`.trim() : text || code || cause.name;
  }
  if (cause === undefined || cause === null) return 'unknown error';
  // Something thrown that is not an Error: String() would turn a plain object into "[object Object]".
  return typeof cause === 'string' ? cause : inspect(cause, { breakLength: Infinity, depth: 2 });
}
