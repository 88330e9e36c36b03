import { parseIntFlag } from '../config/parse.js';
import { UsageError } from '../errors.js';
import { DEFAULT_METRICS_HOST, type MetricsServerOptions } from '../stats/metrics-server.js';

/** `--metrics-port` and `--metrics-host` of a long-running command: `.option(...METRICS_PORT_OPTION)`. */
export const METRICS_PORT_OPTION = [
  '--metrics-port <port>',
  'serve Prometheus metrics on http://<metrics-host>:<port>/metrics (0 = any free port; off by default)',
] as const;
export const METRICS_HOST_OPTION = ['--metrics-host <address>', 'address the metrics endpoint listens on', DEFAULT_METRICS_HOST] as const;

/** The metrics endpoint the flags ask for, or null without `--metrics-port`. */
export function metricsOptionsFrom(opts: Record<string, unknown>): MetricsServerOptions | null {
  const port = opts.metricsPort;
  if (typeof port !== 'string') return null;
  const host = typeof opts.metricsHost === 'string' ? opts.metricsHost : DEFAULT_METRICS_HOST;
  if (host.trim() === '') throw new UsageError('--metrics-host: must not be empty');
  return { host, port: parseIntFlag('--metrics-port', port, 0, 0, 65_535) };
}
