import type { Command } from 'commander';
import { loadConfig, type Config, type ConnectionFlags } from '../config/config.js';
import { createLogger, type Logger } from '../log.js';

/** What every handler gets: the frozen config and the process's root logger. */
export interface CommandContext {
  readonly config: Config;
  readonly log: Logger;
  /** Where command output goes (a table, JSON): stdout, swappable in tests. */
  readonly out: (text: string) => void;
}

/** Resolves config (defaults < env < flags) for a command and builds the root logger. */
export function contextFor(command: Command, env: NodeJS.ProcessEnv = process.env): CommandContext {
  const flags = command.optsWithGlobals<ConnectionFlags>();
  const config = loadConfig(env, flags);
  return { config, log: createLogger(config.logLevel), out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`) };
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** An AbortSignal that aborts on the first SIGINT/SIGTERM; a second one exits at once. */
export function shutdownSignal(ctx: CommandContext): AbortSignal {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (name: string) => {
    signals++;
    if (signals === 1) {
      ctx.log.info({ signal: name }, 'stopping (send again to force)');
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  return controller.signal;
}
