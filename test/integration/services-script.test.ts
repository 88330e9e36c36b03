import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { spawnProcess, type RunResult } from '../helpers/txsim.js';

/**
 * scripts/services.sh against the real services this machine runs. Only the paths that change nothing are
 * exercised here: "already reachable" (twice, for idempotence) and "unreachable, and not allowed to fix it".
 * The Docker and apt paths install or start daemons, which no test may do to a shared machine.
 */

const ROOT = new URL('../../', import.meta.url).pathname;
const SCRIPT_TIMEOUT_MS = 60_000;

/** Runs `bash scripts/services.sh` to completion with `env` added to this process's environment. */
function runServicesScript(env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return spawnProcess('bash', ['scripts/services.sh'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    timeoutMs: SCRIPT_TIMEOUT_MS,
    label: 'scripts/services.sh',
  }).done;
}

/** host:port of a URL as the script prints it, defaulting like txsim's config. */
function endpointOf(url: string | undefined, fallback: string, defaultPort: number): string {
  const parsed = new URL(url ?? fallback);
  return `${parsed.hostname}:${parsed.port || defaultPort}`;
}

const amqpAt = endpointOf(process.env.AMQP_URL, 'amqp://guest:guest@127.0.0.1:5672', 5672);
const databaseAt = endpointOf(process.env.DATABASE_URL, 'mysql://root@127.0.0.1:3306', 3306);
const hasDatabaseClient = spawnSync('sh', ['-c', 'command -v mariadb || command -v mysql']).status === 0;
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('scripts/services.sh', () => {
  it('reports both services reachable and changes nothing, twice in a row', async () => {
    for (const attempt of [1, 2]) {
      const result = await runServicesScript();
      const output = result.stdout + result.stderr;
      expect(result.code, `run ${attempt}:\n${output}`).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^services: RabbitMQ: reachable at ${escapeRegExp(amqpAt)} \\(AMQP_URL\\)`, 'm'));
      expect(result.stdout).toMatch(new RegExp(`^services: Database: reachable at ${escapeRegExp(databaseAt)} \\(DATABASE_URL\\)`, 'm'));
      // Nothing was missing, so nothing was installed, started or enabled (each would be announced on stdout).
      expect(result.stdout).not.toMatch(/apt-get|installing|starting|enabling|docker compose/);
    }
  });

  it('exits 3 and says where RabbitMQ is missing when it may not start it, without printing the password', async () => {
    const result = await runServicesScript({
      AMQP_URL: 'amqp://guest:s3cret-amqp-pw@127.0.0.1:5999',
      TXSIM_SERVICES_NO_INSTALL: '1',
    });
    const output = result.stdout + result.stderr;
    expect(result.code, output).toBe(3);
    expect(result.stderr).toMatch(/^services: RabbitMQ is not reachable at 127\.0\.0\.1:5999 \(AMQP_URL\): TXSIM_SERVICES_NO_INSTALL=1/m);
    // What to do about it: each way in, by name.
    expect(result.stderr).toContain('docker compose up -d rabbitmq');
    expect(result.stderr).toContain('apt-get install rabbitmq-server');
    // The database still answers, and says so; the script tried to fix nothing.
    expect(result.stdout).toMatch(/^services: Database: reachable at /m);
    expect(result.stdout).not.toMatch(/apt-get|installing|starting|enabling|docker compose/);
    expect(output).not.toContain('s3cret-amqp-pw');
  });

  it('exits 2 naming the key when a URL is malformed, without printing the password', async () => {
    const result = await runServicesScript({ DATABASE_URL: 'mysql://root:s3cret-db-pw@127.0.0.1:33o6', TXSIM_SERVICES_NO_INSTALL: '1' });
    expect(result.code, result.stdout + result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^services: DATABASE_URL: "mysql:\/\/root:\*\*\*@127\.0\.0\.1:33o6" is not a URL/m);
    expect(result.stdout + result.stderr).not.toContain('s3cret-db-pw');
  });

  it.skipIf(!hasDatabaseClient)('exits 3 when the database answers but refuses the login, without printing the password', async () => {
    const result = await runServicesScript({
      DATABASE_URL: `mysql://txsim_no_such_user:s3cret-db-pw@${databaseAt}/txsim`,
      TXSIM_SERVICES_NO_INSTALL: '1',
    });
    const output = result.stdout + result.stderr;
    expect(result.code, output).toBe(3);
    expect(result.stderr).toContain(`refuses user 'txsim_no_such_user' with DATABASE_URL's password over TCP`);
    expect(output).not.toContain('s3cret-db-pw');
  });
});
