import type { Logger } from '../log.js';

/** Cap of the backoff while the database is failing. */
const DB_RETRY_MAX_MS = 5_000;

/**
 * Runs `work` until it succeeds, with capped backoff (100 ms doubling up to 5 s); null once `stop`
 * aborts. The first try always runs, even when `stop` has aborted already: a step that may still
 * succeed is worth one try (an outcome, a count), and a dead database costs one error.
 *
 * A try that failed may still have been applied: when the connection drops after the server ran a
 * statement, its reply is lost and the try throws. So `work` must be safe to run again after it
 * succeeded, or recognise its own earlier write (recordWebhookOutcome does, by its `finishedAt`).
 */
export async function retryDb<T>(log: Logger, what: string, work: () => Promise<T>, stop: AbortSignal): Promise<{ value: T } | null> {
  for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, DB_RETRY_MAX_MS)) {
    try {
      return { value: await work() };
    } catch (err) {
      if (stop.aborted) return null;
      log.warn({ step: what, err: (err as Error).message, retryInMs: delayMs }, 'accounting database step failed; retrying');
      await abortableSleep(delayMs, stop);
      if (stop.aborted) return null;
    }
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
