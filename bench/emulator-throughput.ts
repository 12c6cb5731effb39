/**
 * Throughput of the local fine-tuning service: retrieve-job and list-jobs, over HTTP with keep-alive
 * concurrent clients, against a baseline measured in the same run (a request rejected by auth, which
 * costs HTTP + routing but no database work).
 *
 *   npm run bench:emulator            (BENCH_SECONDS=3 BENCH_CONCURRENCY=16 BENCH_JOBS=200)
 *
 * The service runs as its own process (`tsx src/emulator/main.ts`, a temporary SQLite file), so that
 * the load generator does not share its event loop.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const JOBS = Number(process.env.BENCH_JOBS ?? 200);
const KEY = 'sk-bench';

async function startService(dbPath: string) {
  const child = spawn(resolve(ROOT, 'node_modules/.bin/tsx'), [resolve(ROOT, 'src/emulator/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', EMULATOR_DB: dbPath, EMULATOR_STEP_MS: '100000' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((res, rej) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (http:\/\/\S+?)\/v1/.exec(out);
      if (m) res(m[1]);
    });
    child.once('exit', (code) => rej(new Error(`service exited early (${code})`)));
  });
  return { url, child };
}

function trainingFile(n: number): string {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      messages: [
        { role: 'user', content: `What is ${i} plus ${i + 1}?` },
        { role: 'assistant', content: `${i} plus ${i + 1} is ${2 * i + 1}.` },
      ],
    }),
  ).join('\n');
}

interface Result {
  name: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function measure(name: string, makeRequest: () => Promise<Response>, expectStatus: number): Promise<Result> {
  // Warm-up.
  for (let i = 0; i < 50; i++) await (await makeRequest()).arrayBuffer();
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const res = await makeRequest();
        await res.arrayBuffer();
        latencies.push(performance.now() - t0);
        if (res.status !== expectStatus) errors++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  return { name, requests: latencies.length, rps: latencies.length / elapsed, p50: q(0.5), p99: q(0.99), errors };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'emu-bench-'));
  const { url, child } = await startService(join(dir, 'bench.db'));
  const auth = { authorization: `Bearer ${KEY}` };
  try {
    // Data: one training file and JOBS jobs (they stay in validating_files: the step time is huge).
    const form = new FormData();
    form.set('purpose', 'fine-tune');
    form.set('file', new File([trainingFile(20)], 'bench.jsonl'));
    const file = (await (await fetch(`${url}/v1/files`, { method: 'POST', headers: auth, body: form })).json()) as { id: string };
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const res = await fetch(`${url}/v1/fine_tuning/jobs`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', training_file: file.id, metadata: { i: String(i) } }),
      });
      ids.push(((await res.json()) as { id: string }).id);
    }
    let next = 0;
    const results = [
      await measure('baseline: 401 (no key)', () => fetch(`${url}/v1/fine_tuning/jobs`), 401),
      await measure('GET /v1/fine_tuning/jobs/:id', () => fetch(`${url}/v1/fine_tuning/jobs/${ids[next++ % ids.length]}`, { headers: auth }), 200),
      await measure('GET /v1/fine_tuning/jobs (limit 20)', () => fetch(`${url}/v1/fine_tuning/jobs`, { headers: auth }), 200),
      await measure('GET /v1/fine_tuning/jobs?limit=100', () => fetch(`${url}/v1/fine_tuning/jobs?limit=100`, { headers: auth }), 200),
      await measure('GET /v1/fine_tuning/jobs/:id/events', () => fetch(`${url}/v1/fine_tuning/jobs/${ids[next++ % ids.length]}/events`, { headers: auth }), 200),
    ];
    const base = results[0].rps;
    console.log(`\nemulator throughput: ${CONCURRENCY} keep-alive clients, ${SECONDS} s per row, ${JOBS} jobs in the database\n`);
    console.log('| request | req/s | p50 ms | p99 ms | vs baseline | errors |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const r of results) {
      console.log(
        `| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${(r.rps / base).toFixed(2)}× | ${r.errors} |`,
      );
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
