import { fork, type ChildProcess } from 'node:child_process';

/**
 * Starts one of bench's helper processes (the relay process, a ceiling consumer): `modulePath` run by
 * Node with its settings as JSON in the environment variable `envName`, stdout ignored, stderr shown,
 * an IPC channel for its messages.
 */
export function forkWithSettings(modulePath: string, envName: string, settings: object): ChildProcess {
  return fork(modulePath, [], {
    env: { ...process.env, [envName]: JSON.stringify(settings) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
}

/**
 * Resolves on the helper's first message (each sends one once it runs); rejects, and kills it, when it
 * exits first or sends nothing within `timeoutMs`.
 */
export function firstMessageOf(child: ChildProcess, timeoutMs: number, what: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.removeListener('message', onMessage);
      child.kill('SIGKILL');
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`${what} did not start within ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null) => fail(new Error(`${what} exited with code ${code} before it ran`));
    const onMessage = () => {
      clearTimeout(timer);
      child.removeListener('exit', onExit);
      resolve();
    };
    child.once('exit', onExit);
    child.once('message', onMessage);
  });
}
