import { splitUrlList } from './url-list.js';
import { UsageError } from '../errors.js';
import { redactUrl } from './redact.js';

/** The environment variable `gen --via` reads its bearer token from (never a flag: argv shows in `ps`). */
export const TOKEN_ENV = 'TXSIM_TOKEN';

/**
 * Connection settings shared by every command. Resolved once at start as defaults < env < flags,
 * validated, then frozen; handlers receive this object and never read `process.env` themselves.
 */
export interface Config {
  /** RabbitMQ AMQP URL (`AMQP_URL`, `--amqp-url`). */
  readonly amqpUrl: string;
  /** MySQL/MariaDB URL (`DATABASE_URL`, `--database-url`). Its path names the database. */
  readonly databaseUrl: string;
  /** Database name: the URL's path, or the namespace when the URL has none. */
  readonly databaseName: string;
  /** RabbitMQ management API base URL (`RABBITMQ_API_URL`, `--rabbitmq-api-url`). */
  readonly rabbitmqApiUrl: string;
  /** Prefix of every exchange and queue (`TXSIM_NAMESPACE`, `--namespace`); also the default database name. */
  readonly namespace: string;
  /** pino level (`LOG_LEVEL`, `--log-level`). */
  readonly logLevel: LogLevel;
  /** Delay of each retry step in ms, one delay queue each (`TXSIM_RETRY_DELAYS`, `--retry-delays`). */
  readonly retryDelaysMs: readonly number[];
  /**
   * How long a worker or `txsim accounting` waits for RabbitMQ at start, retries included, before it
   * fails with exit 3 (`TXSIM_CONNECT_TIMEOUT`, `--connect-timeout`, in seconds). Once connected, an
   * outage means reconnecting for as long as it takes.
   */
  readonly connectTimeoutMs: number;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULTS = {
  amqpUrl: 'amqp://guest:guest@127.0.0.1:5672',
  // No path on purpose: the database is named after the namespace unless the URL names one.
  databaseUrl: 'mysql://root@127.0.0.1:3306',
  rabbitmqApiUrl: 'http://guest:guest@127.0.0.1:15672',
  namespace: 'txsim',
  logLevel: 'info' as LogLevel,
  retryDelaysMs: [250, 1_000, 5_000, 15_000] as readonly number[],
  connectTimeoutMs: 15_000,
} as const;

/** Flags common to every command, as commander hands them over (all optional strings). */
export interface ConnectionFlags {
  amqpUrl?: string;
  databaseUrl?: string;
  rabbitmqApiUrl?: string;
  namespace?: string;
  logLevel?: string;
  retryDelays?: string;
  /** `--connect-timeout <s>` of the commands that wait for the broker at start. */
  connectTimeout?: string;
}

const NAMESPACE_PATTERN = /^[a-z][a-z0-9_]{0,40}$/;

/**
 * A setting as given: its text and where it came from (the flag, else the environment variable), so an
 * error names what the user actually wrote.
 */
interface Given {
  readonly value: string | undefined;
  readonly from: string;
}

function given(flag: string, flagValue: string | undefined, envName: string, env: NodeJS.ProcessEnv): Given {
  return flagValue !== undefined ? { value: flagValue, from: flag } : { value: env[envName], from: envName };
}

/** Builds the frozen config from environment and flags. Throws `UsageError` naming the flag or variable at fault. */
export function loadConfig(env: NodeJS.ProcessEnv, flags: ConnectionFlags): Config {
  const ns = given('--namespace', flags.namespace, 'TXSIM_NAMESPACE', env);
  const namespace = ns.value ?? DEFAULTS.namespace;
  if (!NAMESPACE_PATTERN.test(namespace)) {
    throw new UsageError(`${ns.from}: "${namespace}" is not valid (lowercase letter first, then a-z, 0-9 or _, at most 41 characters)`);
  }
  const amqp = given('--amqp-url', flags.amqpUrl, 'AMQP_URL', env);
  const amqpUrl = checkUrlList(amqp.from, amqp.value ?? DEFAULTS.amqpUrl, ['amqp:', 'amqps:']);
  const database = given('--database-url', flags.databaseUrl, 'DATABASE_URL', env);
  const databaseUrl = checkUrlList(database.from, database.value ?? DEFAULTS.databaseUrl, ['mysql:', 'mariadb:']);
  const api = given('--rabbitmq-api-url', flags.rabbitmqApiUrl, 'RABBITMQ_API_URL', env);
  const rabbitmqApiUrl = checkUrl(api.from, api.value ?? DEFAULTS.rabbitmqApiUrl, ['http:', 'https:']);
  const level = given('--log-level', flags.logLevel, 'LOG_LEVEL', env);
  const logLevel = (level.value ?? DEFAULTS.logLevel) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(`${level.from}: "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  // A node list names its database once, in the first URL's path (or every URL's, the same).
  const pathName = decodeURIComponent(new URL(splitUrlList(databaseUrl)[0]!).pathname.replace(/^\//, ''));
  const databaseName = pathName || namespace;
  if (!/^[A-Za-z0-9_]{1,64}$/.test(databaseName)) {
    throw new UsageError(`${database.from}: database name "${databaseName}" must be 1-64 letters, digits or _`);
  }
  const retryDelaysMs = parseRetryDelays(given('--retry-delays', flags.retryDelays, 'TXSIM_RETRY_DELAYS', env));
  const connectTimeoutMs = parseConnectTimeout(given('--connect-timeout', flags.connectTimeout, 'TXSIM_CONNECT_TIMEOUT', env));
  return Object.freeze({ amqpUrl, databaseUrl, databaseName, rabbitmqApiUrl, namespace, logLevel, retryDelaysMs, connectTimeoutMs });
}

/** Seconds (fractions allowed, so tests can wait less than one) to milliseconds. */
function parseConnectTimeout({ value, from }: Given): number {
  if (value === undefined || value.trim() === '') return DEFAULTS.connectTimeoutMs;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 3_600) {
    throw new UsageError(`${from}: "${value}" must be a number of seconds, 0.1..3600`);
  }
  return Math.round(seconds * 1000);
}

function parseRetryDelays({ value, from }: Given): readonly number[] {
  if (value === undefined || value.trim() === '') return DEFAULTS.retryDelaysMs;
  const delays = value.split(',').map((part) => Number(part.trim()));
  if (delays.length > 10 || delays.some((d) => !Number.isSafeInteger(d) || d < 10 || d > 3_600_000)) {
    throw new UsageError(`${from}: "${value}" must be up to 10 comma-separated delays in ms, each 10..3600000`);
  }
  return Object.freeze(delays);
}

function checkUrl(key: string, value: string, protocols: readonly string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new UsageError(`${key}: "${redactUrl(value)}" is not a URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new UsageError(`${key}: "${redactUrl(value)}" must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  }
  return value;
}

/** A comma-separated list of nodes (of a RabbitMQ or Galera cluster), each checked; a single URL is a list of one. */
function checkUrlList(key: string, value: string, protocols: readonly string[]): string {
  const urls = splitUrlList(value);
  if (urls.length === 0) throw new UsageError(`${key}: no URL given`);
  return urls.map((url) => checkUrl(key, url, protocols)).join(',');
}

/** Endpoints without passwords, for headers and logs. */
export function describeEndpoints(config: Config): { amqp: string; database: string; api: string } {
  const database = splitUrlList(config.databaseUrl).map((url) => {
    const db = new URL(url);
    db.pathname = `/${config.databaseName}`;
    return redactUrl(db.toString());
  });
  return { amqp: redactUrl(config.amqpUrl), database: database.join(','), api: redactUrl(config.rabbitmqApiUrl) };
}

/** The secrets in a config (URL passwords), for scrubbing error messages. */
export function configSecrets(config: Config): string[] {
  return [...splitUrlList(config.amqpUrl), ...splitUrlList(config.databaseUrl), config.rabbitmqApiUrl]
    .map((url) => decodeURIComponent(new URL(url).password))
    .filter((password) => password.length >= 3);
}
