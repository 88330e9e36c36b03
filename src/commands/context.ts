import type { Command } from 'commander';
import { loadConfig, type Config, type ConnectionFlags } from '../config/config.js';
import { createLogger, type Logger } from '../log.js';
import { UsageError } from '../errors.js';

/** What every handler gets: the frozen config and the process's root logger. */
export interface CommandContext {
  readonly config: Config;
  readonly log: Logger;
  /** Where command output goes (a table, JSON): stdout, swappable in tests. */
  readonly out: (text: string) => void;
}

/** Resolves config (defaults < env < flags) for a command and builds the root logger. */
export function contextFor(command: Command, env: NodeJS.ProcessEnv = process.env): CommandContext {
  const config = loadConfig(env, flagsGiven(command));
  return { config, log: createLogger(config.logLevel), out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`) };
}

/**
 * The connection flags written on the command line. Commander also fills an option from its environment
 * variable; those are left to loadConfig to read from `env`, so an error names the variable, not the flag.
 */
function flagsGiven(command: Command): ConnectionFlags {
  const flags: Record<string, unknown> = { ...command.optsWithGlobals<ConnectionFlags>() };
  for (const key of Object.keys(flags)) {
    if (command.getOptionValueSourceWithGlobals(key) === 'env') delete flags[key];
  }
  return flags;
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

/**
 * For a command that has subcommands and an action of its own (`bench`, `accounting`): refuses an
 * operand, which can only be a mistyped subcommand, with a usage message naming the closest one
 * (`accounting statment 7` → did you mean statement?) instead of commander's "too many arguments".
 * `group` is the command whose subcommands are meant; `command` the one whose action runs.
 */
export function refuseStrayOperands(group: Command, command: Command): void {
  const given = command.args[0];
  if (given === undefined) return;
  const names = group.commands.map((c) => c.name()).filter((name) => name !== command.name());
  const closest = names
    .map((name) => ({ name, distance: editDistance(name, given) }))
    .sort((a, b) => a.distance - b.distance)
    .at(0);
  const hint = closest && closest.distance <= Math.max(2, Math.floor(given.length / 3)) ? ` (did you mean ${closest.name}?)` : '';
  throw new UsageError(`unknown command '${group.name()} ${given}'${hint}; the commands of ${group.name()}: ${names.join(', ')}`);
}

/** Levenshtein distance: the fewest single-character edits that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}
