/**
 * A small HTTP load generator (undici Pool, keep-alive), meant to run in its own process so that it does not
 * share an event loop with the server under test. Usage (child process):
 *   tsx bench/lib/load.ts '{"url":"http://127.0.0.1:1234/x","method":"GET","connections":32,"durationMs":4000}'
 * Prints one JSON line: { requests, errors, rps, p50, p99, mean, statuses }.
 */
import { Pool } from 'undici';

export interface LoadSpec {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  durationMs: number;
  warmupMs?: number;
  /** A string every response body must contain (checked on a sample of responses). */
  expect?: string;
}

export interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
  mean: number;
  statuses: Record<string, number>;
  badBodies: number;
  /** Every request answered, warm-up and the requests still in flight at the end included. */
  total: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url);
  const pool = new Pool(url.origin, { connections: spec.connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const path = url.pathname + url.search;
  const method = spec.method ?? 'GET';
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let badBodies = 0;
  let n = 0;
  let total = 0;
  let recording = false;
  let stop = false;

  const one = async () => {
    const t0 = performance.now();
    try {
      const res = await pool.request({ path, method, headers: spec.headers, body: spec.body });
      const text = await res.body.text();
      total++;
      if (recording) {
        latencies.push(performance.now() - t0);
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        if (spec.expect && n++ % 50 === 0 && !text.includes(spec.expect)) badBodies++;
      }
    } catch {
      if (recording) errors++;
    }
  };

  const loops = Array.from({ length: spec.connections }, async () => {
    while (!stop) await one();
  });
  await new Promise((r) => setTimeout(r, spec.warmupMs ?? 1000));
  recording = true;
  const start = performance.now();
  await new Promise((r) => setTimeout(r, spec.durationMs));
  recording = false;
  const elapsed = performance.now() - start;
  stop = true;
  await Promise.all(loops);
  await pool.close();

  const sorted = Float64Array.from(latencies).sort();
  const sum = latencies.reduce((a, b) => a + b, 0);
  return {
    requests: latencies.length,
    errors,
    rps: (latencies.length / elapsed) * 1000,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: latencies.length ? sum / latencies.length : NaN,
    statuses,
    badBodies,
    total,
  };
}

// As a child process: run the spec given as argv[2] and print the result.
if (process.argv[1]?.endsWith('load.ts') && process.argv[2]) {
  const result = await runLoad(JSON.parse(process.argv[2]) as LoadSpec);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
