/**
 * One websocket floods the server with subscribe frames; how long does another client wait?
 *
 *   npm run bench:flood
 *   FRAMES=10000 WINDOW_S=8 POLL_INTERVAL_MS=200 npm run bench:flood
 *
 * Three runs in one go, each on a fresh server process (`node --import tsx src/server.ts`, as `npm start` runs it,
 * with RATE_LIMIT_PER_MINUTE=0 so that only the per-socket limit is at work):
 *   - quiet:  no flood (the victim's baseline);
 *   - before: MAX_SUBSCRIPTIONS_PER_SOCKET=1000000, i.e. the limit effectively off;
 *   - after:  the defaults (MAX_SUBSCRIPTIONS_PER_SOCKET=100).
 * In each, one socket subscribes to a running job's events, then sends FRAMES-1 more subscribe frames in one burst;
 * for WINDOW_S seconds from the burst, the victim (its own process) sends one query at a time (`{ __typename }` and a
 * jobs page, 50 ms apart) and times each. A query still unanswered at the end counts with the time it has waited.
 *
 * Processes: this one (the local fine-tuning service, the flooding socket), the server, the victim. Loopback only.
 * Prints a table: the victim's queries, p50 / p99 / max latency, the job's polls in the window against one per
 * POLL_INTERVAL_MS (counted at the local service), and how the flood's frames were answered in the window.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const KEY = 'sk-bench-flood';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const progress = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const env = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const FRAMES = env('FRAMES', 10_000);
const WINDOW_MS = env('WINDOW_S', 8) * 1000;
const POLL_MS = env('POLL_INTERVAL_MS', 200);
const EVENTS = 'subscription($id: ID!) { fineTuningJobEvents(jobId: $id) { id message } }';
/** Past this, the victim stops waiting for a query (it is counted with this latency). */
const VICTIM_TIMEOUT_MS = 30_000;

interface VictimResult {
  latencies: number[];
  failed: number;
}

// ---------------------------------------------------------------------------------------------
// Victim process: `bench/subscription-flood.ts victim <graphql url> <duration ms>`.
// ---------------------------------------------------------------------------------------------
async function runVictim(url: string, durationMs: number): Promise<void> {
  const queries = ['{ __typename }', '{ fineTuningJobs(first: 1) { edges { node { id status } } } }'];
  const ask = async (query: string) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ query }),
      signal: AbortSignal.timeout(VICTIM_TIMEOUT_MS),
    });
    const body = (await res.json()) as { data?: unknown; errors?: unknown[] };
    return res.status === 200 && body.data != null && !body.errors;
  };
  await ask(queries[0]!); // warm-up: the connection is open before the flood
  process.stdout.write('ready\n');
  const out: VictimResult = { latencies: [], failed: 0 };
  const end = performance.now() + durationMs;
  for (let i = 0; performance.now() < end; i++) {
    const t0 = performance.now();
    const ok = await ask(queries[i % queries.length]!).catch(() => false);
    out.latencies.push(performance.now() - t0);
    if (!ok) out.failed++;
    await sleep(50);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Starts the victim; resolves once it is warmed up, with the promise of its results. */
async function startVictim(graphqlUrl: string): Promise<{ results: Promise<VictimResult>; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'victim', graphqlUrl, String(WINDOW_MS)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (let waited = 0; !output.startsWith('ready'); waited += 10) {
    if (child.exitCode !== null || waited > 30_000) throw new Error(`victim did not start: ${output}`);
    await sleep(10);
  }
  return { child, results: exited.then(() => JSON.parse(output.split('\n')[1] ?? '{"latencies":[],"failed":0}') as VictimResult) };
}

// ---------------------------------------------------------------------------------------------
// The server under test.
// ---------------------------------------------------------------------------------------------
async function startGateway(upstreamBaseURL: string, extra: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, 'src/server.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      AUTH_MODE: 'none',
      OPENAI_BASE_URL: upstreamBaseURL,
      OPENAI_API_KEY: KEY,
      POLL_INTERVAL_MS: String(POLL_MS),
      RATE_LIMIT_PER_MINUTE: '0',
      LOG_LEVEL: 'warn',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  for (let waited = 0; ; waited += 20) {
    const m = /GraphQL API at (http:\/\/[^\s/]+)\/graphql/.exec(output);
    if (m) return { url: m[1]!, child };
    if (child.exitCode !== null || waited > 30_000) throw new Error(`server did not start:\n${output}`);
    await sleep(20);
  }
}

async function stopGateway(child: ChildProcess) {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await exited;
}

// ---------------------------------------------------------------------------------------------
// The flooding socket.
// ---------------------------------------------------------------------------------------------
interface Attacker {
  socket: WebSocket;
  counts: { next: Set<string>; refused: number; otherErrors: number };
  send(frames: string[]): void;
}

async function openAttacker(httpUrl: string, jobId: string): Promise<Attacker> {
  const socket = new WebSocket(`${httpUrl.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  const counts = { next: new Set<string>(), refused: 0, otherErrors: 0 };
  let acked!: () => void;
  const ack = new Promise<void>((r) => (acked = r));
  socket.on('message', (data) => {
    const m = JSON.parse(String(data)) as { id?: string; type: string; payload?: { extensions?: { code?: string } }[] };
    if (m.type === 'connection_ack') acked();
    else if (m.type === 'next') counts.next.add(m.id!);
    else if (m.type === 'error') {
      if (m.payload?.[0]?.extensions?.code === 'LIMIT_EXCEEDED') counts.refused++;
      else counts.otherErrors++;
    }
  });
  socket.on('error', () => undefined);
  await new Promise<void>((r, j) => {
    socket.once('open', () => r());
    socket.once('error', j);
  });
  socket.send(JSON.stringify({ type: 'connection_init' }));
  await ack;
  socket.send(JSON.stringify({ id: '0', type: 'subscribe', payload: { query: EVENTS, variables: { id: jobId } } }));
  for (let waited = 0; !counts.next.has('0'); waited += 10) {
    if (waited > 20_000) throw new Error('the first subscription got no event');
    await sleep(10);
  }
  return { socket, counts, send: (frames) => frames.forEach((f) => socket.send(f)) };
}

// ---------------------------------------------------------------------------------------------
// Main: the local service here, then the three runs.
// ---------------------------------------------------------------------------------------------
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface Row {
  run: string;
  queries: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
  polls: number;
  opened: number;
  refused: number;
}

async function main(): Promise<void> {
  const { createEmulator, requestListener } = await import('@finetune-graphql/emulator');
  const OpenAI = (await import('openai')).default;
  const { createTrainingJob } = await import('@finetune-graphql/emulator/testing');
  const retrieves: { path: string; at: number }[] = [];
  const emulator = createEmulator({
    dbPath: ':memory:',
    stepMs: 25,
    onRequest: (info) => {
      if (info.route === 'GET /v1/fine_tuning/jobs/:id') retrieves.push({ path: info.path, at: Date.now() });
    },
  });
  const upstream = createServer(requestListener(emulator));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  emulator.start();
  const baseURL = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  const client = new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0 });
  // 100 examples (batch size 1) × 50 epochs = 5000 steps of 25 ms: running for the whole bench.
  const jobId = await createTrainingJob(client, 50, 100);
  while ((await client.fineTuning.jobs.retrieve(jobId)).status !== 'running') await sleep(50);
  const frames: string[] = [];
  for (let i = 1; i < FRAMES; i++) frames.push(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: EVENTS, variables: { id: jobId } } }));
  const pollsBetween = (from: number, to: number) => retrieves.filter((r) => r.path.endsWith(jobId) && r.at >= from && r.at < to).length;

  const rows: Row[] = [];
  const runs: { run: string; env: Record<string, string>; flood: boolean }[] = [
    { run: 'quiet (no flood)', env: {}, flood: false },
    { run: 'before (MAX_SUBSCRIPTIONS_PER_SOCKET=1000000)', env: { MAX_SUBSCRIPTIONS_PER_SOCKET: '1000000' }, flood: true },
    { run: 'after (defaults: 100)', env: {}, flood: true },
  ];
  for (const { run, env: extra, flood } of runs) {
    progress(`${run}: starting the server`);
    const server = await startGateway(baseURL, extra);
    const attacker = await openAttacker(server.url, jobId);
    const victim = await startVictim(`${server.url}/graphql`);
    const start = Date.now();
    if (flood) attacker.send(frames);
    const result = await victim.results;
    await sleep(Math.max(0, start + WINDOW_MS - Date.now()));
    const sorted = [...result.latencies].sort((a, b) => a - b);
    rows.push({
      run,
      queries: sorted.length,
      failed: result.failed,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted[sorted.length - 1] ?? NaN,
      polls: pollsBetween(start, start + WINDOW_MS),
      opened: attacker.counts.next.size,
      refused: attacker.counts.refused,
    });
    progress(`${run}: done`);
    attacker.socket.terminate();
    await stopGateway(server.child);
  }
  await client.fineTuning.jobs.cancel(jobId).catch(() => undefined);
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
  await emulator.close();

  const ms = (v: number) => (Number.isFinite(v) ? `${Math.round(v).toLocaleString('en-US')} ms` : '–');
  const expected = Math.round(WINDOW_MS / POLL_MS);
  console.log(
    `\nOne socket, ${FRAMES.toLocaleString('en-US')} subscribe frames in one burst to a running job; victim window ${WINDOW_MS / 1000} s; polls expected ${expected} (one per ${POLL_MS} ms)\n`,
  );
  console.log('| run | victim queries (failed) | p50 | p99 | max | job polls in window | flood: opened / refused (in window) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.run} | ${r.queries} (${r.failed}) | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.max)} | ${r.polls} / ${expected} | ${r.run.startsWith('quiet') ? '–' : `${r.opened.toLocaleString('en-US')} / ${r.refused.toLocaleString('en-US')}`} |`,
    );
  }
}

if (process.argv[2] === 'victim') await runVictim(process.argv[3]!, Number(process.argv[4]));
else await main();
