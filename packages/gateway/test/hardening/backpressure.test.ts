/**
 * Backpressure on every streaming transport (issue 10, finding 5): 50 subscribers that never read their stream
 * (raw sockets that stop reading) to a running job whose events flow, over the JSON fast path (a subscription in
 * a plain JSON POST), SSE (yoga's own path) and graphql-ws. The server runs as a child process (`node --import tsx
 * src/server.ts`), its memory read from /proc/<pid>/status (VmRSS). While one reading client receives enough
 * bytes that 50 unbounded copies would hold well over 200 MiB, the non-readers add less than 200 MiB to the
 * server's RSS, another client's queries stay fast, and the server stays up; once they go, their subscriptions
 * are released. A stream client whose unsent bytes pass STREAM_MAX_BUFFER_BYTES is cut, which ends its
 * subscription although it never closed its socket.
 *
 * Each event is made large (the same `data` under 14 aliases, about 1.6 KB) so that the kernel's socket buffers
 * (a few MiB per connection on loopback) fill within seconds.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainingJsonl, uploadTraining, waitUntil } from '@finetune-graphql/emulator/testing';
import { sseEvents } from '../helpers/subscriptions.js';
import { jsonLines, sleep, spawnServer, type SpawnedServer, startUpstream, type Upstream } from './helpers.js';

const KEY = 'sk-backpressure-secret-0123456789';
const CLIENTS = 50;
const MiB = 1024 * 1024;
/** What the reading client must have received before the window ends: 50 unbounded copies, less what the kernel holds (~4.5 MiB each), are ~400 MiB. */
const TARGET_BYTES = 12.5 * MiB;
const MAX_GROWTH = 200 * MiB;

const ALIASES = Array.from({ length: 14 }, (_, i) => `d${i}: data`).join(' ');
const EVENTS = `subscription($id: ID!) { fineTuningJobEvents(jobId: $id) { id createdAt level message type data ${ALIASES} } }`;

let up: Upstream;
let server: SpawnedServer;
let fileId: string;

const startGateway = (env: Record<string, string> = {}) =>
  spawnServer({
    OPENAI_BASE_URL: up.baseURL,
    OPENAI_API_KEY: KEY,
    POLL_INTERVAL_MS: '200',
    LOG_LEVEL: 'warn',
    // Only the transports' bounds are under test here.
    RATE_LIMIT_PER_MINUTE: '0',
    ...env,
  });

async function stopGateway(s: SpawnedServer | undefined) {
  if (s && s.child.exitCode === null) {
    s.child.kill('SIGKILL');
    await s.exited;
  }
}

beforeAll(async () => {
  up = await startUpstream({ stepMs: 1 });
  fileId = await uploadTraining(up.client(KEY), trainingJsonl(1000));
  server = await startGateway();
});
afterAll(async () => {
  await stopGateway(server);
  await up?.close();
});

const rssBytes = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;

/** A job of 25,000 steps (1000 examples, batch size 2, 50 epochs), running. */
async function runningJob(): Promise<string> {
  const job = await up.client(KEY).fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: fileId, hyperparameters: { n_epochs: 50 } });
  await waitUntil(async () => (await up.client(KEY).fineTuning.jobs.retrieve(job.id)).status === 'running', 30_000, 50);
  return job.id;
}

/** Open subscription streams, from the server's /metrics. */
async function liveSubscriptions(): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(/^ftgql_live_subscriptions (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** An HTTP subscription on a raw socket that never reads its answer (it reads nothing once its buffer is full). */
function silentHttpSubscriber(jobId: string, accept: string): Promise<Socket> {
  const url = new URL(server.url);
  const body = JSON.stringify({ query: EVENTS, variables: { id: jobId } });
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(
        `POST /graphql HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nAccept: ${accept}\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      socket.pause();
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** A graphql-ws subscriber that stops reading once subscribed (its socket is paused). */
async function silentWsSubscriber(jobId: string): Promise<WebSocket> {
  const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'connection_init' }));
  await new Promise((r) => ws.once('message', r));
  ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: EVENTS, variables: { id: jobId } } }));
  ws.pause();
  return ws;
}

/** A subscriber that reads everything (over SSE), counting bytes. */
function readingSubscriber(jobId: string) {
  const controller = new AbortController();
  const out = { bytes: 0, events: 0, stop: () => controller.abort() };
  void (async () => {
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: EVENTS, variables: { id: jobId } }),
      signal: controller.signal,
    });
    const counted = (async function* () {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        out.bytes += chunk.byteLength;
        yield chunk;
      }
    })();
    for await (const e of sseEvents(counted)) if (e.event === 'next') out.events++;
  })().catch(() => undefined);
  return out;
}

/** One query of another client, timed. */
async function probe(jobId: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query: `{ fineTuningJob(id: "${jobId}") { id status trainedTokens } }` }),
    signal: AbortSignal.timeout(15_000),
  });
  const body = (await res.json()) as { data?: { fineTuningJob?: { id: string } } };
  expect(body.data?.fineTuningJob?.id).toBe(jobId);
  return performance.now() - t0;
}

/**
 * Opens 50 silent subscribers with `open`, then watches the server until the reading client has TARGET_BYTES
 * (at most 90 s): RSS growth over the baseline, query latencies.
 */
async function measure(open: (jobId: string) => Promise<{ close(): void }>) {
  const jobId = await runningJob();
  const reader = readingSubscriber(jobId);
  await waitUntil(() => reader.events > 0, 20_000, 20);
  await sleep(500);
  const baseline = rssBytes();
  const silent: { close(): void }[] = [];
  for (let i = 0; i < CLIENTS; i++) silent.push(await open(jobId));
  const startBytes = reader.bytes;
  let peak = baseline;
  const latencies: number[] = [];
  const deadline = Date.now() + 90_000;
  let nextProbe = 0;
  while (reader.bytes - startBytes < TARGET_BYTES && Date.now() < deadline && server.child.exitCode === null) {
    peak = Math.max(peak, rssBytes());
    if (Date.now() >= nextProbe) {
      latencies.push(await probe(jobId));
      nextProbe = Date.now() + 500;
    }
    await sleep(100);
  }
  peak = Math.max(peak, rssBytes());
  const received = reader.bytes - startBytes;
  const alive = server.child.exitCode === null;
  for (const s of silent) s.close();
  reader.stop();
  // Every stream of this job is released once its clients are gone.
  await waitUntil(async () => (await liveSubscriptions()) === 0, 20_000, 100);
  await up
    .client(KEY)
    .fineTuning.jobs.cancel(jobId)
    .catch(() => undefined);
  return { growth: peak - baseline, received, latencies, alive };
}

function check(r: Awaited<ReturnType<typeof measure>>) {
  const summary = `RSS +${(r.growth / MiB).toFixed(0)} MiB while the reading client got ${(r.received / MiB).toFixed(1)} MiB; query latencies (ms): ${r.latencies.map(Math.round).join(', ')}`;
  console.log(summary);
  expect(r.alive, summary).toBe(true);
  expect(r.received, summary).toBeGreaterThanOrEqual(TARGET_BYTES);
  expect(r.growth, summary).toBeLessThan(MAX_GROWTH);
  expect(r.latencies.length, summary).toBeGreaterThanOrEqual(5);
  expect(Math.max(...r.latencies), summary).toBeLessThan(1500);
}

describe(`${CLIENTS} subscribers that never read, while events flow`, () => {
  it('subscriptions in plain JSON POSTs (the JSON fast path): bounded memory, others served', async () => {
    check(
      await measure(async (jobId) => {
        const s = await silentHttpSubscriber(jobId, '*/*');
        return { close: () => s.destroy() };
      }),
    );
  }, 150_000);

  it('SSE (POST with Accept: text/event-stream, yoga’s own path): bounded memory, others served', async () => {
    check(
      await measure(async (jobId) => {
        const s = await silentHttpSubscriber(jobId, 'text/event-stream');
        return { close: () => s.destroy() };
      }),
    );
  }, 150_000);

  it('graphql-ws: bounded memory, others served', async () => {
    check(
      await measure(async (jobId) => {
        const ws = await silentWsSubscriber(jobId);
        return { close: () => ws.terminate() };
      }),
    );
  }, 150_000);
});

describe('the slow-consumer guard of a stream in a plain JSON POST', () => {
  let small: SpawnedServer | undefined;
  afterAll(async () => stopGateway(small));

  it('a client whose unsent bytes pass STREAM_MAX_BUFFER_BYTES is cut, which ends its subscription; another client keeps receiving', async () => {
    // Below what the socket buffers before it reports itself full (16 KiB), so the first full socket passes it.
    small = await startGateway({ STREAM_MAX_BUFFER_BYTES: '4096' });
    // The helpers above talk to `server`: point it at this one for the test.
    const previous = server;
    server = small;
    try {
      const jobId = await runningJob();
      const reader = readingSubscriber(jobId);
      const silent = await silentHttpSubscriber(jobId, '*/*');
      await waitUntil(() => /SLOW_CONSUMER/.test(small!.output()), 30_000, 50);
      const line = jsonLines(small.output()).find((l) => /SLOW_CONSUMER/.test(l.msg))!;
      expect(line).toMatchObject({ level: 40, limit: 4096 });
      expect(line.unsentBytes).toBeGreaterThan(4096);
      expect(typeof line.reqId).toBe('string');
      // The silent client never closed its socket, yet only the reader's stream is left.
      await waitUntil(async () => (await liveSubscriptions()) === 1, 10_000, 50);
      const before = reader.events;
      await waitUntil(() => reader.events > before + 10, 10_000, 20);
      // The silent client, reading at last, finds its connection closed by the server.
      const ended = new Promise<void>((r) => silent.once('close', () => r()));
      silent.on('error', () => undefined);
      silent.resume();
      await ended;
      reader.stop();
      await up
        .client(KEY)
        .fineTuning.jobs.cancel(jobId)
        .catch(() => undefined);
    } finally {
      server = previous;
    }
  }, 90_000);
});

describe('STREAM_STALL_TIMEOUT_MS: HTTP stream clients that stop reading and never close', () => {
  let stall: SpawnedServer | undefined;
  afterAll(async () => stopGateway(stall));

  it('are cut once nothing of their waiting bytes was sent for the timeout, which releases their subscriptions; a reader on a quiet stream is not', async () => {
    stall = await startGateway({ STREAM_STALL_TIMEOUT_MS: '2000' });
    const previous = server;
    server = stall;
    try {
      const jobId = await runningJob();
      // A quiet stream: a paused job has no new events; its reader must outlive the timeout.
      const quietJob = { id: await runningJob() };
      await up.client(KEY).fineTuning.jobs.pause(quietJob.id);
      await waitUntil(async () => (await up.client(KEY).fineTuning.jobs.retrieve(quietJob.id)).status === ('paused' as string), 10_000, 50);
      const quiet = readingSubscriber(quietJob.id);
      const silent = await Promise.all([silentHttpSubscriber(jobId, 'text/event-stream'), silentHttpSubscriber(jobId, '*/*')]);
      const closed = silent.map((s) => new Promise<void>((r) => s.once('close', () => r())));
      for (const s of silent) s.on('error', () => undefined);
      await waitUntil(async () => (await liveSubscriptions()) === 3, 10_000, 50);
      const t0 = Date.now();
      await waitUntil(() => (stall!.output().match(/STREAM_STALL_TIMEOUT_MS/g) ?? []).length >= 2, 30_000, 50);
      // Both silent streams released, the quiet reader still there.
      await waitUntil(async () => (await liveSubscriptions()) === 1, 10_000, 50);
      expect(Date.now() - t0).toBeLessThan(20_000);
      const lines = jsonLines(stall.output()).filter((l) => /STREAM_STALL_TIMEOUT_MS/.test(l.msg));
      expect(lines).toHaveLength(2);
      for (const l of lines) expect(l).toMatchObject({ level: 40, limit: 2000 });
      const metrics = await (await fetch(`${stall.url}/metrics`)).text();
      expect(metrics).toMatch(/^ftgql_limit_refusals_total\{limit="streamStall"\} 2$/m);
      // The silent clients, reading at last, find their connections closed by the server.
      for (const s of silent) s.resume();
      await Promise.all(closed);
      await sleep(2_500);
      expect(await liveSubscriptions()).toBe(1);
      quiet.stop();
      await up
        .client(KEY)
        .fineTuning.jobs.cancel(jobId)
        .catch(() => undefined);
      await up
        .client(KEY)
        .fineTuning.jobs.cancel(quietJob.id)
        .catch(() => undefined);
    } finally {
      server = previous;
    }
  }, 90_000);
});
