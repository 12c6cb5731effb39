/**
 * The GraphQL API as a child process: `node --import tsx src/server.ts` (so that a signal reaches the server
 * itself, not a wrapper), ready once its start-up line names the address.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the child exited. */
  at: number;
}

export interface ServerProcess {
  /** http://host:port, from the start-up line. */
  url: string;
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  exited: Promise<ChildExit>;
}

/**
 * Spawns the server with `env` over this process's environment, capturing stdout and stderr. Resolves once the
 * line "GraphQL API at http://…/graphql" is out; rejects after 30 s, or if the child exits first. `label` names
 * the process in those errors.
 */
export async function spawnServerProcess(env: Record<string, string>, label = 'server'): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, 'src/server.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<ChildExit>((r) => child.once('exit', (code, signal) => r({ code, signal, at: Date.now() })));
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label} did not start:\n${output}`)), 30_000);
    const check = () => {
      const m = /GraphQL API at (http:\/\/[^\s/]+)\/graphql/.exec(output);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolveUrl(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code ?? signal}) before start-up:\n${output}`));
    });
  });
  return { url, child, output: () => output, exited };
}
