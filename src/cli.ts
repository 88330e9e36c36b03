import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { redactSecrets } from './config/redact.js';
import { registerAccounting } from './commands/accounting.js';
import { registerAccounts } from './commands/accounts.js';
import { registerBench } from './commands/bench.js';
import { registerGen } from './commands/gen.js';
import { registerInspectErrors } from './commands/inspect-errors.js';
import { registerReplayDead } from './commands/replay-dead.js';
import { registerReset } from './commands/reset.js';
import { registerServe } from './commands/serve.js';
import { registerSetup } from './commands/setup.js';
import { registerTx } from './commands/tx.js';
import { registerVerify } from './commands/verify.js';
import { registerWatch } from './commands/watch.js';
import { registerWorker } from './commands/worker.js';
import { ExitCode, FatalError } from './errors.js';

/** The version of the package this program was built from (src/ and dist/ both sit one folder below package.json). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Builds the commander program: global connection flags, then one sub-command per file. */
export function buildProgram(): Command {
  const program = new Command('txsim')
    .description('Simulate, load-test and prove asynchronous payment processing on RabbitMQ and MySQL')
    .version(packageVersion())
    .addOption(new Option('--amqp-url <url>', 'RabbitMQ URL').env('AMQP_URL'))
    .addOption(
      new Option('--database-url <url>', 'MySQL/MariaDB URL; its path names the database (default: the namespace)').env('DATABASE_URL'),
    )
    .addOption(new Option('--rabbitmq-api-url <url>', 'RabbitMQ management API URL').env('RABBITMQ_API_URL'))
    .addOption(
      new Option('--namespace <prefix>', 'prefix of every exchange and queue, and the default database name').env('TXSIM_NAMESPACE'),
    )
    .addOption(new Option('--retry-delays <ms,...>', 'delay of each retry step in ms, one delay queue each').env('TXSIM_RETRY_DELAYS'))
    .addOption(new Option('--log-level <level>', 'trace, debug, info, warn, error, fatal or silent').env('LOG_LEVEL'))
    .option('--verbose', 'print stack traces of errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.addHelpText(
    'after',
    `
Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 service unreachable, 4 verification failed,
            5 not found, 6 publish incomplete, 7 verification pending (verify --wait ran out),
            8 bench compare: a figure got worse past the threshold, 130 interrupted.

Example, end to end:
  $ txsim setup && txsim accounts seed --count 100
  $ txsim worker --id w1 &  txsim worker --id w2 &  txsim worker --id w3 &
  $ txsim gen 20000 --seed 7 --invalid 0.02
  $ txsim verify --run <run id printed by gen> --wait 60`,
  );
  registerSetup(program);
  registerAccounts(program);
  registerGen(program);
  registerWorker(program);
  registerTx(program);
  registerVerify(program);
  registerWatch(program);
  registerInspectErrors(program);
  registerReplayDead(program);
  registerReset(program);
  registerAccounting(program);
  registerBench(program);
  registerServe(program);
  for (const command of program.commands) command.exitOverride();
  return program;
}

/** The one error boundary: maps error classes to stable exit codes; stacks only with --verbose. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv);
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version "errors" are normal exits; everything else commander throws is a usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.ok;
      return ExitCode.usage;
    }
    const secrets = secretsFromArgv(argv);
    const message = redactSecrets(err instanceof Error ? err.message : String(err), secrets);
    process.stderr.write(`txsim: ${message}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${redactSecrets(err.stack, secrets)}\n`);
    return err instanceof FatalError ? err.exitCode : ExitCode.unexpected;
  }
}

/** Passwords from URLs in env and argv, and bearer tokens, so no error message can echo one. */
function secretsFromArgv(argv: string[]): string[] {
  const candidates = [...argv, process.env.AMQP_URL, process.env.DATABASE_URL, process.env.RABBITMQ_API_URL].filter(
    (v): v is string => typeof v === 'string',
  );
  const out: string[] = [];
  // Bearer tokens (TXSIM_TOKEN, and one given as `--token`, which gen refuses) are secrets whole.
  for (const [i, arg] of argv.entries()) {
    const token = arg === '--token' ? argv[i + 1] : arg.startsWith('--token=') ? arg.slice('--token='.length) : undefined;
    if (token && token.length >= 3) out.push(token);
  }
  if (process.env.TXSIM_TOKEN && process.env.TXSIM_TOKEN.length >= 3) out.push(process.env.TXSIM_TOKEN);
  for (const c of candidates) {
    try {
      const password = decodeURIComponent(new URL(c).password);
      if (password.length >= 3) out.push(password);
    } catch {
      // not a URL
    }
  }
  return out;
}

// `txsim ... | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(ExitCode.ok);
});

const isEntryPoint = process.argv[1] !== undefined && /(?:cli\.js|txsim)$/.test(process.argv[1]);
if (isEntryPoint) {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
      // Long-running commands exit by themselves once closed; one-shot commands may hold timers
      // from libraries (pools), so end explicitly after stdout drains.
      setTimeout(() => process.exit(code), 50).unref();
      if (code !== ExitCode.ok) process.stdout.write('', () => process.exit(code));
    },
    (err) => {
      process.stderr.write(`txsim: ${String(err)}\n`);
      process.exit(ExitCode.unexpected);
    },
  );
}
