/**
 * Throughput of the local fine-tuning service: retrieve-job and list-jobs, over HTTP with keep-alive
 * concurrent clients, against a baseline measured in the same run: a bare node:http server (its own
 * process too) answering every request with the same bytes as a retrieve-job response, i.e. the cost
 * of HTTP alone. "vs raw" is the service's throughput as a share of that.
 *
 *   npm run bench:emulator            (BENCH_SECONDS=3 BENCH_CONCURRENCY=16 BENCH_JOBS=200)
 *
 * The service runs as its own process (`node --import tsx src/main.ts`, a temporary SQLite file), so that
 * the load generator does not share its event loop.
 */
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
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
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, 'src/main.ts')], {
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

/** A bare node:http server in its own process that answers every request with `body`. */
async function startRawServer(body: string) {
  const code = `
    const http = require('node:http');
    const body = Buffer.from(process.env.BODY);
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body); });
    });
    server.keepAliveTimeout = 65000;
    server.listen(0, '127.0.0.1', () => console.log('raw listening on http://127.0.0.1:' + server.address().port + '/v1'));
  `;
  const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, BODY: body }, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((res, rej) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (http:\/\/\S+?)\/v1/.exec(out);
      if (m) res(m[1]);
    });
    child.once('exit', (code) => rej(new Error(`raw server exited early (${code})`)));
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

/** Keep-alive client on node:http (much cheaper per request than fetch, so the client is not the bottleneck). */
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Result {
  name: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function measure(name: string, makeRequest: () => Promise<number>, expectStatus: number, seconds = SECONDS): Promise<Result> {
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const status = await makeRequest();
        latencies.push(performance.now() - t0);
        if (status !== expectStatus) errors++;
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
  let raw: { child: ReturnType<typeof spawn> } | undefined;
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
    const sample = await (await fetch(`${url}/v1/fine_tuning/jobs/${ids[0]}`, { headers: auth })).text();
    const rawServer = await startRawServer(sample);
    raw = rawServer;
    const rawUrl = rawServer.url;
    let next = 0;
    const cases: [string, () => Promise<number>, number][] = [
      ['baseline: bare node:http, same bytes as a job', () => get(`${rawUrl}/v1/fine_tuning/jobs/x`, auth), 200],
      ['GET /v1/fine_tuning/jobs/:id', () => get(`${url}/v1/fine_tuning/jobs/${ids[next++ % ids.length]}`, auth), 200],
      ['GET /v1/fine_tuning/jobs (limit 20)', () => get(`${url}/v1/fine_tuning/jobs`, auth), 200],
      ['GET /v1/fine_tuning/jobs?limit=100', () => get(`${url}/v1/fine_tuning/jobs?limit=100`, auth), 200],
      ['GET /v1/fine_tuning/jobs/:id/events', () => get(`${url}/v1/fine_tuning/jobs/${ids[next++ % ids.length]}/events`, auth), 200],
      ['baseline again (drift check)', () => get(`${rawUrl}/v1/fine_tuning/jobs/x`, auth), 200],
    ];
    // Warm-up (JIT on both sides, connection pool): every case for a while, results discarded.
    for (const [name, make, status] of cases) await measure(name, make, status, 0.7);
    const results: Result[] = [];
    for (const [name, make, status] of cases) results.push(await measure(name, make, status));
    const base = results[0].rps;
    console.log(`\nemulator throughput: ${CONCURRENCY} keep-alive clients, ${SECONDS} s per row, ${JOBS} jobs in the database\n`);
    console.log('| request | req/s | p50 ms | p99 ms | vs raw | errors |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const r of results) {
      console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${(r.rps / base).toFixed(2)}× | ${r.errors} |`);
    }
  } finally {
    agent.destroy();
    raw?.child.kill('SIGTERM');
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
