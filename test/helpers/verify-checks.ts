import { runTxsim } from './txsim.js';

/** The part of `txsim verify --json` the check tests read. */
export interface VerifyChecksJson {
  readonly status: string;
  readonly checks: { name: string; violations: number; examples: string[] }[];
}

/** Checks that found something: name → violations. */
export function failedChecks(report: VerifyChecksJson): Record<string, number> {
  return Object.fromEntries(report.checks.filter((c) => c.violations > 0).map((c) => [c.name, c.violations]));
}

/** The examples one check printed (none when it found nothing). */
export function examplesOf(report: VerifyChecksJson, name: string): string[] {
  return report.checks.find((c) => c.name === name)?.examples ?? [];
}

/** `txsim verify --json` in the namespace of `env`: its exit code, its report, and everything it printed. */
export async function verifyJson(env: NodeJS.ProcessEnv): Promise<{ code: number | null; report: VerifyChecksJson; out: string }> {
  const json = await runTxsim(['verify', '--json'], env);
  return { code: json.code, report: JSON.parse(json.stdout) as VerifyChecksJson, out: json.stdout + json.stderr };
}
