import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from './config/config.js';

export type { Logger };

/**
 * Builds the one root logger of a process. JSON lines normally; pretty when stderr is a TTY.
 * Logs go to stderr so that stdout stays for command output (tables, --json, the TUI).
 * URL passwords never reach a log line: every string field named like a URL is redacted by paths,
 * and config values are logged only through `describeEndpoints`.
 */
export function createLogger(level: LogLevel, options: { pretty?: boolean; destination?: DestinationStream } = {}): Logger {
  const pretty = options.pretty ?? Boolean(process.stderr.isTTY);
  const base = {
    level,
    redact: { paths: ['password', '*.password', 'amqpUrl', 'databaseUrl', 'url', '*.url'], censor: '***' },
  };
  if (options.destination) return pino(base, options.destination);
  if (pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { destination: 2, ...prettyOptions(process.env) } },
    });
  }
  return pino(base, pino.destination({ dest: 2, sync: false }));
}

/**
 * How pretty logs look on a terminal: one line per entry (pino-pretty's default spreads each field over
 * its own line, about nine lines per transaction, which buried gen's run id in a by-hand run), without
 * colour when `NO_COLOR` is set.
 */
export function prettyOptions(env: NodeJS.ProcessEnv): { colorize: boolean; singleLine: true; translateTime: string; ignore: string } {
  return { colorize: !env.NO_COLOR, singleLine: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' };
}

/** Flushes a logger before exit: logs written just before `process.exit()` are otherwise lost. */
export async function flushLogger(logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
    setTimeout(resolve, 500).unref();
  });
}
