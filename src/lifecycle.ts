import type { Logger } from './log.js';

/** One named step of a shutdown. */
export type ShutdownStep = readonly [name: string, run: () => Promise<unknown>];

/**
 * Runs every shutdown step in order, even when one throws (BullMQ's `close()` discipline): a failed
 * "cancel consumer" must not leave the connection or the pool open.
 */
export async function runShutdownSteps(steps: readonly ShutdownStep[], log: Logger, what: string): Promise<void> {
  for (const [name, run] of steps) {
    try {
      await run();
    } catch (err) {
      log.warn({ step: name, err: (err as Error).message }, `${what} shutdown step failed; continuing`);
    }
  }
}
