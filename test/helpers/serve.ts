import { startTxsim, type TxsimProcess } from '../integration/accounting-helpers.js';
import { runTxsim, waitFor } from './txsim.js';

/** A `txsim serve` child on a free port, with where it listens. */
export interface ServeProcess extends TxsimProcess {
  readonly url: string;
}

/** Starts `txsim serve --port 0` (plus `args`) and waits until it listens. */
export async function startServe(env: NodeJS.ProcessEnv, args: readonly string[] = []): Promise<ServeProcess> {
  const serve = startTxsim(['serve', '--port', '0', '--rate-limit', '0', ...args], env);
  const listening = /listening on (http:\/\/\S+) /;
  try {
    await waitFor(
      () => listening.test(serve.stdout()) || serve.child.exitCode !== null,
      30_000,
      `serve to listen: ${serve.stdout()}${serve.stderr()}`,
    );
  } catch (err) {
    await serve.kill();
    throw err;
  }
  const match = listening.exec(serve.stdout());
  if (!match) throw new Error(`serve exited ${serve.child.exitCode}: ${serve.stderr()}`);
  return { ...serve, url: match[1]! };
}

/** A new admin token of the namespace (`txsim tokens create --admin --json`). */
export async function createAdminToken(env: NodeJS.ProcessEnv): Promise<string> {
  const created = await runTxsim(['tokens', 'create', '--admin', '--json'], env);
  if (created.code !== 0) throw new Error(`tokens create: ${created.stderr}`);
  return (JSON.parse(created.stdout) as { token: string }).token;
}
