/**
 * `npm run bench:graphql`: what the GraphQL API costs over a bare reverse proxy, in one run on one upstream.
 *
 *   (a) GET /v1/fine_tuning/jobs/{id} straight to the local service;
 *   (b) the same GET through a bare node:http reverse proxy with a keep-alive agent;
 *   (c) the GraphQL `fineTuningJob` query for the same fields, for a running job and for a finished one
 *       (c: a JSON POST, which the JSON fast path serves; and the same query as a GET, which yoga's own HTTP
 *       layer serves).
 *
 * The local service runs as a standalone listener on a worker thread (its own event loop, like a remote API);
 * the proxy and the GraphQL server share the main thread (one at a time is loaded); the load generator runs
 * in a child process with BENCH_CONNECTIONS keep-alive connections (default 32) for BENCH_DURATION_MS
 * (default 4000) after a 1 s warm-up, BENCH_ROUNDS interleaved rounds (default 5); the server logs at
 * BENCH_LOG_LEVEL (default warn: no access lines). Targets: c/b ≥ 0.4 for a finished job, ≥ 0.3 for a running one.
 * One client makes every request, so the per-client rate limit is set far above what it sends (RATE_LIMIT_PER_MINUTE
 * 1e9): its check still runs on every request and is measured, it just never refuses.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI, { toFile } from 'openai';
import { startServer } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import type { LoadResult, LoadSpec } from './lib/load.js';
import { startBareProxy } from './lib/proxy.js';
import { mainThreadCpuMs, startUpstreamWorker } from './lib/threads.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const KEY = 'sk-bench';
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 4000);
const STEP_MS = 200;
/** Each measurement is repeated this many times (interleaved) and the median is reported: other work on a 2-core machine makes single runs noisy. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** Length of the unrecorded warm-up run of each target before the rounds. */
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 3000);

function runLoadInChild(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/load.ts'), JSON.stringify(spec)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      try {
        resolvePromise(JSON.parse(out.trim().split('\n').at(-1)!) as LoadResult);
      } catch {
        reject(new Error(`load generator exited ${code}: ${out}`));
      }
    });
  });
}

function chatJsonl(n: number): string {
  const rows = [];
  for (let i = 0; i < n; i++) {
    rows.push({
      messages: [
        { role: 'system', content: 'You answer arithmetic questions briefly.' },
        { role: 'user', content: `What is ${i} plus ${i + 7}?` },
        { role: 'assistant', content: `${i} plus ${i + 7} is ${2 * i + 7}.` },
      ],
    });
  }
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

const JOB_FIELDS = `id createdAt finishedAt estimatedFinish status rawStatus model fineTunedModel organizationId
  userProvidedSuffix trainingFileId validationFileId resultFileIds trainedTokens seed metadata
  hyperparameters { nEpochs batchSize learningRateMultiplier }
  method { type supervised { hyperparameters { nEpochs batchSize learningRateMultiplier } } }
  error { code message param } integrations { type }`;

async function main() {
  const upstreamWorker = await startUpstreamWorker(STEP_MS);
  const upstreamUrl = upstreamWorker.url;
  const rest = new OpenAI({ apiKey: KEY, baseURL: `${upstreamUrl}/v1`, maxRetries: 0 });

  // A job that runs for minutes (2,500 steps of 200 ms) and one that finishes in seconds.
  const big = await rest.files.create({ file: await toFile(Buffer.from(chatJsonl(50)), 'big.jsonl'), purpose: 'fine-tune' });
  const small = await rest.files.create({ file: await toFile(Buffer.from(chatJsonl(10)), 'small.jsonl'), purpose: 'fine-tune' });
  const running = await rest.fineTuning.jobs.create({
    model: 'gpt-4o-mini-2024-07-18',
    training_file: big.id,
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 50, batch_size: 1 } } },
  });
  const finished = await rest.fineTuning.jobs.create({
    model: 'gpt-4o-mini-2024-07-18',
    training_file: small.id,
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 1, batch_size: 10 } } },
  });
  for (;;) {
    const [r, f] = await Promise.all([rest.fineTuning.jobs.retrieve(running.id), rest.fineTuning.jobs.retrieve(finished.id)]);
    if (r.status === 'running' && f.status === 'succeeded') break;
    if (f.status === 'failed') throw new Error(`the small job failed: ${JSON.stringify(f.error)}`);
    await new Promise((res) => setTimeout(res, 100));
  }

  const proxy = await startBareProxy(upstreamUrl, CONNECTIONS * 2);
  const api = await startServer(
    loadConfig({
      ...process.env,
      OPENAI_BASE_URL: `${upstreamUrl}/v1`,
      OPENAI_API_KEY: KEY,
      PORT: '0',
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      RATE_LIMIT_PER_MINUTE: process.env.RATE_LIMIT_PER_MINUTE ?? '1000000000',
    }),
  );

  const auth = { authorization: `Bearer ${KEY}` };
  const query = `query Job($id: ID!) { fineTuningJob(id: $id) { ${JOB_FIELDS} } }`;
  const gql = (id: string): Omit<LoadSpec, 'connections' | 'durationMs'> => ({
    url: `${api.url}/graphql`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables: { id } }),
    expect: '"organizationId"',
  });
  // The same query as a GET, which yoga's own HTTP layer (Fetch API) serves.
  const gqlGet = (id: string): Omit<LoadSpec, 'connections' | 'durationMs'> => ({
    url: `${api.url}/graphql?query=${encodeURIComponent(query)}&variables=${encodeURIComponent(JSON.stringify({ id }))}`,
    method: 'GET',
    headers: { accept: 'application/json' },
    expect: '"organizationId"',
  });
  // BENCH_ONLY=c-running (comma-separated keys) runs only those measurements, e.g. for profiling.
  const only = process.env.BENCH_ONLY?.split(',');
  const specs: { key: string; name: string; spec: Omit<LoadSpec, 'connections' | 'durationMs'> }[] = [];
  for (const [label, id] of [
    ['running', running.id],
    ['finished', finished.id],
  ] as const) {
    specs.push(
      {
        key: `a-${label}`,
        name: `(a) direct REST GET, ${label}`,
        spec: { url: `${upstreamUrl}/v1/fine_tuning/jobs/${id}`, headers: auth, expect: '"organization_id"' },
      },
      {
        key: `b-${label}`,
        name: `(b) bare proxy GET, ${label}`,
        spec: { url: `${proxy.url}/v1/fine_tuning/jobs/${id}`, headers: auth, expect: '"organization_id"' },
      },
      { key: `c-${label}`, name: `(c) GraphQL fineTuningJob, ${label}`, spec: gql(id) },
      { key: `y-${label}`, name: `(c) same as a GET (yoga's HTTP layer)`, spec: gqlGet(id) },
    );
  }
  const selected = specs.filter((s) => !only || only.includes(s.key));
  console.log(
    `${CONNECTIONS} keep-alive connections from a separate process, ${DURATION_MS} ms per run after a 1 s warm-up, ${ROUNDS} interleaved rounds (median shown) after an unrecorded ${WARMUP_MS} ms pass over every target; upstream: the local service on a worker thread\n`,
  );
  /** Upstream calls and GraphQL requests so far, from the server's own /metrics (counted where they are made). */
  const counts = async () => {
    const text = await (await fetch(`${api.url}/metrics`)).text();
    let upstreamCalls = 0;
    let graphqlRequests = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('ftgql_upstream_requests_total{')) upstreamCalls += Number(line.split(' ').at(-1));
      if (line.startsWith('ftgql_http_requests_total{') && line.includes('route="/graphql"')) graphqlRequests += Number(line.split(' ').at(-1));
    }
    return { upstreamCalls, graphqlRequests };
  };
  const callsPerRequest = new Map<string, number>();
  /** Main-thread (gateway or proxy) CPU time per request, µs: a figure that other load on the machine disturbs far less than req/s. */
  const busyPerRequest = new Map<string, number[]>();
  const runs = new Map<string, LoadResult[]>();
  // An unrecorded pass over every target first: the first seconds of load on a fresh server (JIT, compiled
  // queries, pools) are not what it serves later, and would weigh on whichever target comes first.
  for (const s of selected) await runLoadInChild({ ...s.spec, connections: CONNECTIONS, durationMs: WARMUP_MS, warmupMs: 0 });
  for (let round = 1; round <= ROUNDS; round++) {
    for (const s of selected) {
      const before = s.key.startsWith('c-') || s.key.startsWith('y-') ? await counts() : undefined;
      const cpu0 = mainThreadCpuMs();
      const r = await runLoadInChild({ ...s.spec, connections: CONNECTIONS, durationMs: DURATION_MS, warmupMs: 1000 });
      const cpu = mainThreadCpuMs() - cpu0;
      // The thread works through warm-up and measurement alike: divide by every request answered.
      if (!s.key.startsWith('a-')) busyPerRequest.set(s.key, [...(busyPerRequest.get(s.key) ?? []), (cpu * 1000) / r.total]);
      if (before) {
        const after = await counts();
        callsPerRequest.set(s.key, (after.upstreamCalls - before.upstreamCalls) / Math.max(1, after.graphqlRequests - before.graphqlRequests));
      }
      if (r.errors || r.badBodies || Object.keys(r.statuses).some((k) => k !== '200')) {
        console.log(`(!) ${s.name}: statuses ${JSON.stringify(r.statuses)}, errors ${r.errors}, bad bodies ${r.badBodies}`);
      }
      runs.set(s.key, [...(runs.get(s.key) ?? []), r]);
    }
    process.stderr.write(`round ${round}/${ROUNDS} done\n`);
  }
  const median = (xs: number[]) => {
    const v = [...xs].sort((a, b) => a - b);
    return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  };
  const results: Record<string, { rps: number; p50: number; p99: number; all: number[] }> = {};
  for (const s of selected) {
    const rs = runs.get(s.key)!;
    const m = { rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)), all: rs.map((r) => r.rps) };
    results[s.key] = m;
    console.log(
      `${s.name.padEnd(36)} ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50.toFixed(2).padStart(6)} ms  p99 ${m.p99.toFixed(2).padStart(6)} ms   (runs: ${m.all.map((x) => x.toFixed(0)).join(', ')})${
        busyPerRequest.has(s.key) ? `   CPU ${median(busyPerRequest.get(s.key)!).toFixed(0)} µs/req` : ''
      }${callsPerRequest.has(s.key) ? `   upstream calls/request ${callsPerRequest.get(s.key)!.toFixed(2)}` : ''}`,
    );
  }
  const still = await rest.fineTuning.jobs.retrieve(running.id);
  if (still.status !== 'running') console.log(`\n(!) the running job is ${still.status} now; the running figures are not for a running job`);

  const ratio = (c: string, b: string) => (results[c] && results[b] ? results[c]!.rps / results[b]!.rps : NaN);
  console.log('\nratios c/b (targets: finished ≥ 0.4, running ≥ 0.3)');
  for (const label of ['finished', 'running']) {
    const target = label === 'finished' ? 0.4 : 0.3;
    const r = ratio(`c-${label}`, `b-${label}`);
    // b and c of one round ran a few seconds apart: their ratio is less disturbed by the machine's drift.
    const perRound = (runs.get(`c-${label}`) ?? []).map((c, i) => c.rps / (runs.get(`b-${label}`)?.[i]?.rps ?? NaN));
    console.log(
      `  ${label.padEnd(9)} c/b = ${r.toFixed(2)} ${r >= target ? '(meets' : '(MISSES'} ${target})   per round: ${perRound.map((x) => x.toFixed(2)).join(', ')}   via yoga: ${ratio(`y-${label}`, `b-${label}`).toFixed(2)}   b/a = ${ratio(`b-${label}`, `a-${label}`).toFixed(2)}`,
    );
  }

  await api.close();
  await proxy.close();
  await upstreamWorker.close();
}

await main();
