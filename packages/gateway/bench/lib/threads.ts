/** Helpers shared by the benches that run the local service on a worker thread of their own process. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

/**
 * The local fine-tuning service on a worker thread (its own event loop, like a remote API), on a fresh database in
 * a temporary folder. `url` is its origin (`http://127.0.0.1:port`).
 */
export async function startUpstreamWorker(stepMs: number): Promise<{ port: number; url: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-upstream-'));
  const worker = new Worker(new URL('./worker-bootstrap.mjs', import.meta.url), {
    workerData: { entry: new URL('./upstream-worker.ts', import.meta.url).href, dbPath: join(dir, 'emulator.db'), stepMs },
  });
  const port = await new Promise<number>((r) => worker.once('message', (m: { port: number }) => r(m.port)));
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      await new Promise<void>((r) => {
        worker.once('message', () => r());
        worker.postMessage('close');
      });
      await worker.terminate();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * CPU time (user + system) of this process's main thread in ms, from /proc (Linux; clock ticks of 10 ms). The
 * local service runs on a worker thread of the same process, so process.cpuUsage() would count it too.
 */
export function mainThreadCpuMs(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}
