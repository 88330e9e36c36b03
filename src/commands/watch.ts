import type { Command } from 'commander';
import { parseIntFlag } from '../config/parse.js';
import { UsageError } from '../errors.js';
import { DEFAULT_STALENESS } from '../watch/stats-aggregator.js';
import type { WatchOptions } from '../watch/watch.js';
import { contextFor } from './context.js';

export function registerWatch(program: Command): void {
  program
    .command('watch')
    .description('live view of workers, throughput, latency, queue depths and reject reasons (an Ink TUI on a terminal)')
    .option('--once', 'print one snapshot as text and exit')
    .option('--json', 'print one snapshot as a JSON document and exit')
    .option('--interval <ms>', 'refresh period', '1000')
    .option('--listen <ms>', 'with --once/--json: how long to collect worker snapshots first', '2500')
    .option('--stale-after <ms>', 'a worker with no snapshot for this long is stale', String(DEFAULT_STALENESS.staleAfterMs))
    .option('--gone-after <ms>', 'a worker with no snapshot for this long is gone', String(DEFAULT_STALENESS.goneAfterMs))
    .addHelpText(
      'after',
      `
Keys: q quit, p pause/resume, s cycle sort, ↑/↓ select a worker (details), esc close details.
Queue depths come from the management API (RABBITMQ_API_URL), else from AMQP passive declares.
When stdout is not a terminal it prints logfmt lines (kind=total, kind=worker) every interval.

Example:
  $ txsim watch
  $ txsim watch --once
  $ txsim watch --json | jq '.totals'

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action(async (opts: Record<string, string | boolean | undefined>, command: Command) => {
      const str = (key: string) => opts[key] as string | undefined;
      const staleAfterMs = parseIntFlag('--stale-after', str('staleAfter'), DEFAULT_STALENESS.staleAfterMs, 500, 3_600_000);
      const goneAfterMs = parseIntFlag('--gone-after', str('goneAfter'), DEFAULT_STALENESS.goneAfterMs, 1_000, 86_400_000);
      if (goneAfterMs <= staleAfterMs)
        throw new UsageError(`--gone-after: ${goneAfterMs} must be greater than --stale-after (${staleAfterMs})`);
      const options: WatchOptions = {
        once: Boolean(opts.once),
        json: Boolean(opts.json),
        intervalMs: parseIntFlag('--interval', str('interval'), 1_000, 100, 60_000),
        listenMs: parseIntFlag('--listen', str('listen'), 2_500, 0, 60_000),
        staleness: { staleAfterMs, goneAfterMs, forgetAfterMs: Math.max(DEFAULT_STALENESS.forgetAfterMs, goneAfterMs * 2) },
      };
      const controller = new AbortController();
      const stop = () => controller.abort();
      // \`on\`, not \`once\`: Ink's exit hook (signal-exit) re-raises the signal after restoring the
      // terminal when it thinks nobody else listens; a listener still present keeps that from
      // killing the process before the connection is closed.
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      // Loaded here, not at the top: Ink and React are a third of the CLI's memory, and only watch draws with them.
      const { handleWatch } = await import('../watch/watch.js');
      await handleWatch(contextFor(command), options, { tty: Boolean(process.stdout.isTTY), signal: controller.signal });
    });
}
