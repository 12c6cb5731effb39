/**
 * 10,000 concurrent graphql-ws subscriptions on one server process, spread over a few jobs.
 *
 *   npm run bench:subscriptions
 *   SUBSCRIPTIONS=10000 JOBS=4 SOCKETS=10000 POLL_INTERVAL_MS=1000 STEP_MS=2000 WINDOW_S=20 npm run bench:subscriptions
 *
 * STEP_MS is the upstream's training step: each job writes one event per step, so the server delivers
 * JOBS × 1000/STEP_MS events per second, each to SUBSCRIPTIONS/JOBS subscribers.
 *
 * Three processes:
 *   - the upstream: the local fine-tuning service (`bench/subscriptions.ts upstream`), whose request hook
 *     counts the polls and whose event inserts are timestamped (a hook around the store's insertEvent);
 *   - the server: `tsx src/server.ts` pointed at it (OPENAI_BASE_URL), as `npm start` runs it;
 *   - this process: the load client (raw graphql-transport-ws over the `ws` package, SOCKETS sockets,
 *     SUBSCRIPTIONS/SOCKETS subscriptions on each) and the measurements.
 *
 * Prints: upstream polls per poll interval (counted at the upstream), the server's RSS (/proc), and the
 * delay from an event's insertion upstream to its delivery to the last of its subscribers.
 * Targets: polls per interval = number of jobs; RSS < 1 GiB; delay < one interval + 250 ms.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const KEY = 'sk-bench-subscriptions';
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const progress = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const env = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};

type UpMsg =
  | { t: 'ready'; port: number }
  | { t: 'event'; job: string; id: string; at: number }
  | { t: 'poll'; job: string; at: number }
  | { t: 'counts'; counts: Record<string, number> };

// ---------------------------------------------------------------------------------------------
// Upstream process: the local fine-tuning service with an event-insert hook and request counts.
// ---------------------------------------------------------------------------------------------
async function runUpstream(): Promise<void> {
  const { createEmulator, requestListener } = await import('@finetune-graphql/emulator');
  const dir = mkdtempSync(join(tmpdir(), 'bench-subs-'));
  const counts: Record<string, number> = {};
  const emulator = createEmulator({
    dbPath: join(dir, 'emulator.db'),
    stepMs: env('STEP_MS', 2000),
    onRequest: (info) => {
      // Polls of a job: "GET /v1/fine_tuning/jobs/:id" and "GET /v1/fine_tuning/jobs/:id/events".
      counts[info.route] = (counts[info.route] ?? 0) + 1;
      // When each events page was answered: the moment the server could first see an event.
      const m = /^\/v1\/fine_tuning\/jobs\/([^/]+)\/events$/.exec(info.path);
      if (m && info.method === 'GET') process.send!({ t: 'poll', job: m[1]!, at: now() } satisfies UpMsg);
    },
  });
  const store = emulator.store as unknown as { insertEvent(e: { id: string; job_id: string }): void };
  const insert = store.insertEvent.bind(store);
  store.insertEvent = (e) => {
    insert(e);
    process.send!({ t: 'event', job: e.job_id, id: e.id, at: now() } satisfies UpMsg);
  };
  const server = createServer(requestListener(emulator));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  emulator.start();
  process.on('message', (m: { t: string }) => {
    if (m.t === 'counts') process.send!({ t: 'counts', counts: { ...counts } } satisfies UpMsg);
  });
  process.on('disconnect', () => {
    server.closeAllConnections();
    server.close();
    void emulator.close().then(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  });
  process.send!({ t: 'ready', port: (server.address() as AddressInfo).port } satisfies UpMsg);
}

// ---------------------------------------------------------------------------------------------
// Orchestrator + load client.
// ---------------------------------------------------------------------------------------------
function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function main(): Promise<void> {
  const SUBSCRIPTIONS = env('SUBSCRIPTIONS', 10_000);
  const JOBS = env('JOBS', 4);
  const SOCKETS = Math.min(env('SOCKETS', SUBSCRIPTIONS), SUBSCRIPTIONS);
  const INTERVAL = env('POLL_INTERVAL_MS', 1000);
  const WINDOW_MS = env('WINDOW_S', 20) * 1000;
  const STEP_MS = env('STEP_MS', 2000);
  const perSocket = Math.ceil(SUBSCRIPTIONS / SOCKETS);

  // 1. The upstream, in its own process.
  const upstream = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'upstream'], {
    cwd: ROOT,
    env: { ...process.env, STEP_MS: String(STEP_MS) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const inserted = new Map<string, { job: string; at: number }>();
  const polled = new Map<string, number[]>();
  let countsWaiter: ((c: Record<string, number>) => void) | undefined;
  const upReady = new Promise<number>((resolvePort) => {
    upstream.on('message', (m: UpMsg) => {
      if (m.t === 'ready') resolvePort(m.port);
      else if (m.t === 'event') inserted.set(m.id, { job: m.job, at: m.at });
      else if (m.t === 'poll') (polled.get(m.job) ?? polled.set(m.job, []).get(m.job)!).push(m.at);
      else if (m.t === 'counts') countsWaiter?.(m.counts);
    });
  });
  const upPort = await upReady;
  const baseURL = `http://127.0.0.1:${upPort}/v1`;
  const counts = () =>
    new Promise<Record<string, number>>((r) => {
      countsWaiter = r;
      upstream.send({ t: 'counts' });
    });

  // 2. Jobs that keep running through the measurement (long enough training).
  const { default: OpenAI, toFile } = await import('openai');
  const { trainingJsonl } = await import('@finetune-graphql/emulator/testing');
  const sdk = new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0 });
  const file = await sdk.files.create({ file: await toFile(Buffer.from(trainingJsonl(50)), 'train.jsonl'), purpose: 'fine-tune' });
  const jobs: string[] = [];
  for (let i = 0; i < JOBS; i++) {
    const job = await sdk.fineTuning.jobs.create({
      model: 'gpt-4o-mini-2024-07-18',
      training_file: file.id,
      hyperparameters: { n_epochs: 50, batch_size: 1 },
    });
    jobs.push(job.id);
  }

  // 3. The server, as `npm start` runs it, in its own process.
  const serverArgs = (process.env.SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean); // e.g. --cpu-prof
  const server: ChildProcess = spawn(process.execPath, [...serverArgs, '--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      OPENAI_BASE_URL: baseURL,
      OPENAI_API_KEY: KEY,
      PORT: '0',
      HOST: '127.0.0.1',
      POLL_INTERVAL_MS: String(INTERVAL),
      LOG_LEVEL: 'warn',
      // One load client opens every subscription: the per-client rate limit is set above what it sends.
      RATE_LIMIT_PER_MINUTE: '1000000000',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const serverUrl = await new Promise<string>((resolveUrl, reject) => {
    let out = '';
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /GraphQL API at (http:\/\/[^\s/]+)\/graphql/.exec(out);
      if (m) resolveUrl(m[1]!);
      else return;
      // From now on the server's output (warnings, --trace-gc, …) goes to this process's stderr.
      server.stdout!.removeAllListeners('data');
      server.stdout!.pipe(process.stderr);
    });
    server.once('exit', (code) => reject(new Error(`server exited (${code})`)));
  });
  const wsUrl = `${serverUrl.replace(/^http/, 'ws')}/graphql`;
  progress(`server at ${serverUrl} (pid ${server.pid}); upstream on port ${upPort}; jobs ${jobs.join(', ')}`);
  const rssIdle = rssMiB(server.pid!);

  // 4. The subscriptions: subscription k watches job k % JOBS.
  const received = new Map<string, { n: number; first: number; last: number }>();
  const expectedPerJob = new Map<string, number>(jobs.map((j) => [j, 0]));
  const sockets: WebSocket[] = [];
  let errors = 0;
  let acked = 0;
  const query = 'subscription Bench($jobId: ID!) { fineTuningJobEvents(jobId: $jobId) { id createdAt message } }';
  const openSocket = (first: number) =>
    new Promise<void>((resolveOpen, reject) => {
      const ws = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: false });
      sockets.push(ws);
      ws.on('error', reject);
      ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init' })));
      ws.on('message', (raw: Buffer) => {
        const msg = JSON.parse(raw.toString()) as { type: string; id?: string; payload?: any };
        if (msg.type === 'next') {
          const id = msg.payload?.data?.fineTuningJobEvents?.id as string | undefined;
          if (!id) {
            errors++;
            return;
          }
          const t = now();
          const r = received.get(id);
          if (r) {
            r.n++;
            r.last = t;
          } else received.set(id, { n: 1, first: t, last: t });
        } else if (msg.type === 'connection_ack') {
          acked++;
          for (let k = first; k < Math.min(first + perSocket, SUBSCRIPTIONS); k++) {
            const jobId = jobs[k % JOBS]!;
            expectedPerJob.set(jobId, expectedPerJob.get(jobId)! + 1);
            ws.send(JSON.stringify({ id: String(k), type: 'subscribe', payload: { query, variables: { jobId } } }));
          }
          resolveOpen();
        } else if (msg.type === 'error') errors++;
      });
    });
  const tOpen = now();
  for (let first = 0; first < SUBSCRIPTIONS; first += perSocket * 100) {
    const batch: Promise<void>[] = [];
    for (let f = first; f < Math.min(first + perSocket * 100, SUBSCRIPTIONS); f += perSocket) batch.push(openSocket(f));
    await Promise.all(batch);
    if ((first / perSocket) % 2000 === 0) progress(`${sockets.length} sockets open`);
  }
  const openMs = now() - tOpen;
  progress(`${sockets.length} sockets open, ${SUBSCRIPTIONS} subscriptions sent in ${(openMs / 1000).toFixed(1)} s`);

  // 5. Wait until every job trains (validating and queued jobs are polled 3× less often), let every
  //    poller settle to the running pace, then measure over the window.
  for (;;) {
    const states = await Promise.all(jobs.map((id) => sdk.fineTuning.jobs.retrieve(id)));
    if (states.every((j) => j.status === 'running')) break;
    if (states.some((j) => !['validating_files', 'queued', 'running'].includes(j.status))) throw new Error('a job ended early');
    await sleep(200);
  }
  await sleep(3 * INTERVAL);
  progress(`all jobs running; measuring for ${WINDOW_MS / 1000} s`);
  const c0 = await counts();
  const t0 = now();
  let rssMax = 0;
  const rssTimer = setInterval(() => (rssMax = Math.max(rssMax, rssMiB(server.pid!))), 500);
  await sleep(WINDOW_MS);
  const c1 = await counts();
  const t1 = now();
  await sleep(INTERVAL + 2000); // let the last events of the window reach everyone
  clearInterval(rssTimer);
  const rssEnd = rssMiB(server.pid!);
  rssMax = Math.max(rssMax, rssEnd);

  // 6. Figures.
  const diff = (route: string) => (c1[route] ?? 0) - (c0[route] ?? 0);
  const retrieves = diff('GET /v1/fine_tuning/jobs/:id');
  const eventPages = diff('GET /v1/fine_tuning/jobs/:id/events');
  const intervals = (t1 - t0) / INTERVAL;
  const delays: number[] = [];
  const firsts: number[] = [];
  const detections: number[] = [];
  const processing: number[] = [];
  const spreads: number[] = [];
  let incomplete = 0;
  let windowEvents = 0;
  for (const [id, ev] of inserted) {
    if (ev.at < t0 || ev.at > t1) continue;
    windowEvents++;
    const r = received.get(id);
    const expected = expectedPerJob.get(ev.job) ?? 0;
    if (!r || r.n < expected) {
      incomplete++;
      continue;
    }
    delays.push(r.last - ev.at);
    firsts.push(r.first - ev.at);
    const seenAt = (polled.get(ev.job) ?? []).find((t) => t >= ev.at);
    if (seenAt !== undefined) {
      detections.push(seenAt - ev.at);
      processing.push(r.first - seenAt);
    }
    spreads.push(r.last - r.first);
  }
  for (const a of [delays, firsts, spreads, detections, processing]) a.sort((x, y) => x - y);
  let duplicates = 0;
  for (const [id, r] of received) {
    const ev = inserted.get(id);
    if (ev && r.n > (expectedPerJob.get(ev.job) ?? 0)) duplicates++;
  }

  const pass = (ok: boolean) => (ok ? 'OK' : 'MISSED');
  const pollsPerInterval = retrieves / intervals;
  const maxDelay = delays.at(-1) ?? NaN;
  console.log(`\nLive subscriptions bench (${new Date().toISOString()})`);
  console.log(
    `  ${SUBSCRIPTIONS} subscriptions (fineTuningJobEvents) on ${SOCKETS} websockets (${perSocket} per socket), ${JOBS} jobs, ` +
      `POLL_INTERVAL_MS=${INTERVAL}, upstream step ${STEP_MS} ms, window ${(WINDOW_MS / 1000).toFixed(0)} s`,
  );
  const deliveriesPerS = (windowEvents * (SUBSCRIPTIONS / JOBS)) / ((t1 - t0) / 1000);
  console.log(`  load: ${(windowEvents / ((t1 - t0) / 1000)).toFixed(1)} events/s upstream → ${deliveriesPerS.toFixed(0)} deliveries/s to clients`);
  console.log(`  sockets opened and acknowledged: ${acked}/${SOCKETS} in ${(openMs / 1000).toFixed(1)} s; protocol errors: ${errors}`);
  console.log(
    `  upstream polls per interval: ${pollsPerInterval.toFixed(2)} job retrieves + ${(eventPages / intervals).toFixed(2)} events pages ` +
      `(target: ${JOBS}, one poll per job) ${pass(Math.abs(pollsPerInterval - JOBS) <= 0.15 * JOBS)}`,
  );
  console.log(`  server RSS: ${rssIdle.toFixed(0)} MiB idle, ${rssMax.toFixed(0)} MiB max with the subscriptions (target < 1024 MiB) ${pass(rssMax < 1024)}`);
  console.log(
    `  events inserted upstream in the window: ${windowEvents}; delivered to all their subscribers: ${delays.length}; ` +
      `incomplete: ${incomplete}; delivered twice: ${duplicates}`,
  );
  console.log(
    `  delay insert → last subscriber: p50 ${quantile(delays, 0.5).toFixed(0)} ms, p95 ${quantile(delays, 0.95).toFixed(0)} ms, ` +
      `max ${maxDelay.toFixed(0)} ms (target < ${INTERVAL + 250} ms) ${pass(maxDelay < INTERVAL + 250 && incomplete === 0)}`,
  );
  const fmt = (a: number[]) => `p50 ${quantile(a, 0.5).toFixed(0)} ms, p95 ${quantile(a, 0.95).toFixed(0)} ms, max ${(a.at(-1) ?? NaN).toFixed(0)} ms`;
  console.log(`    of which insert → the next events poll answered upstream: ${fmt(detections)}`);
  console.log(`    then that poll → first subscriber (server and client processing): ${fmt(processing)}`);
  console.log(`    and first → last subscriber (fan-out to ${Math.round(SUBSCRIPTIONS / JOBS)}): ${fmt(spreads)}`);

  for (const ws of sockets) ws.terminate();
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  upstream.disconnect();
  await new Promise((r) => upstream.once('exit', r));
}

if (process.argv[2] === 'upstream') await runUpstream();
else await main();
