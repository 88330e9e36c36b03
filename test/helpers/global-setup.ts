import { execFileSync } from 'node:child_process';
import { existsSync, statSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Integration tests run the real `txsim` binary (dist/). Build it when it is missing or older than
 * the sources, so `vitest` alone never tests stale code.
 */
export default function setup(): void {
  const root = new URL('../../', import.meta.url).pathname;
  const cli = join(root, 'dist/cli.js');
  if (!existsSync(cli) || newestMtime(join(root, 'src')) > statSync(cli).mtimeMs) {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  }
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}
