import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import {
  benchReportProblem,
  compareBenchReports,
  formatThreshold,
  parseThreshold,
  renderComparison,
  type BenchComparison,
  type BenchJsonValue,
  type NamedReport,
} from '../bench/compare.js';
import { BenchRegressedError, UsageError } from '../errors.js';
import { contextFor, type CommandContext } from './context.js';
import { plural, toJson } from './format.js';

/**
 * `txsim bench compare <before.json> <after.json>`: prints the comparison (table or JSON), warns on
 * stderr when the runs had different settings, and throws BenchRegressedError (exit 8) after
 * printing when anything failed, so a CI step fails with the table in its log.
 */
export function handleBenchCompare(
  ctx: CommandContext,
  paths: { readonly before: string; readonly after: string },
  thresholdRatio: number,
  format: 'table' | 'json',
): BenchComparison {
  const comparison = compareBenchReports(readReport(paths.before), readReport(paths.after), thresholdRatio);
  for (const w of comparison.warnings) process.stderr.write(`txsim: warning: ${w}\n`);
  if (format === 'json') ctx.out(toJson(comparison));
  else for (const line of renderComparison(comparison)) ctx.out(line);
  if (!comparison.ok) {
    // The details are in the output above; the error names the figures, for a CI log's last line.
    const failed = comparison.figures.filter((f) => f.failed).map((f) => f.label);
    throw new BenchRegressedError(
      `bench compare: ${plural(failed.length, 'figure')} failed (threshold ${formatThreshold(thresholdRatio)}): ${failed.join(', ')}`,
    );
  }
  return comparison;
}

/** A bench JSON report from disk; an unreadable file or one that is not a report is a usage error naming it. */
function readReport(path: string): NamedReport {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`bench compare: ${path}: not a readable JSON file (${(err as Error).message})`);
  }
  const problem = benchReportProblem(raw);
  if (problem) throw new UsageError(`bench compare: ${path}: not a txsim bench report (${problem})`);
  return { name: basename(path), report: raw as BenchJsonValue };
}

/** Registers `compare` under `txsim bench`. */
export function registerBenchCompare(bench: Command): void {
  bench
    .command('compare')
    .description('compare two saved bench --json reports figure by figure; exit 8 when one got worse past the threshold')
    .argument('<before>', 'the baseline report (txsim bench --json)')
    .argument('<after>', 'the report to judge against it')
    .option('--threshold <change>', 'how much worse a figure may get before it fails: 5% or 0.05', '5%')
    .option('--json', 'print the comparison as JSON')
    .addHelpText(
      'after',
      `
Within the threshold (or within one step of the report's rounding) a figure counts as "same". Lost or
duplicated above 0, or a run that did not drain or verify, in <after> always fails. Runs with different
settings (workers, count, batch size …) are compared with a warning naming what differs.

Exit codes: 0 nothing worse past the threshold, 8 something is, 2 bad arguments or not a bench report.

Example:
  $ txsim bench --workers 3 --count 50000 --json > before.json
  $ git switch my-change && npm run build
  $ txsim bench --workers 3 --count 50000 --json > after.json
  $ txsim bench compare before.json after.json --threshold 10%

Global flags (--amqp-url, --database-url, --namespace, --retry-delays, --log-level, …): see txsim --help`,
    )
    .action((before: string, after: string, _opts: unknown, command: Command) => {
      // `bench` has a --json of its own, and commander hands a flag shared by both to the parent.
      const opts = command.optsWithGlobals<{ threshold?: string; json?: boolean }>();
      const text = opts.threshold ?? '5%';
      const thresholdRatio = parseThreshold(text);
      if (thresholdRatio === null) {
        throw new UsageError(`--threshold: "${text}" must be a percentage like 5% or a fraction between 0 and 1 like 0.05`);
      }
      handleBenchCompare(contextFor(command), { before, after }, thresholdRatio, opts.json ? 'json' : 'table');
    });
}
