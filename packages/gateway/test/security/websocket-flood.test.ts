/**
 * One websocket cannot take the server down (issue 10, finding 1): 10,000 subscribe frames sent in one burst on
 * one socket to a running job on the local service. The server (a child process, `node --import tsx
 * src/server.ts`) opens at most MAX_SUBSCRIPTIONS_PER_SOCKET of them and answers every other one with an `error`
 * message (LIMIT_EXCEEDED, naming the limit) while the first ones keep receiving; another client's queries stay
 * fast, and the job's poller keeps its interval (its polls are counted at the local service). Refused frames cost
 * nothing of the rate budget (RATE_LIMIT_PER_MINUTE, default on) that the flooding client shares with others.
 * A flooding client that does not read its answers is cut once they pass STREAM_MAX_BUFFER_BYTES. A client that
 * resets its connection mid-delivery leaves one JSON warning, not a stack trace on stderr.
 */
import { spawn } from 'node:child_process';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrainingJob, waitUntil } from '@finetune-graphql/emulator/testing';
import { jsonLines, sleep, spawnServer, type SpawnedServer, startUpstream, type Upstream } from '../hardening/helpers.js';

const KEY = 'sk-flood-secret-0123456789abcdef';
const POLL_MS = 200;
const FRAMES = 10_000;
const LIMIT = 100; // MAX_SUBSCRIPTIONS_PER_SOCKET's default
const EVENTS = 'subscription($id: ID!) { fineTuningJobEvents(jobId: $id) { id message } }';

let up: Upstream;
let jobId: string;

beforeAll(async () => {
  // 100 examples (batch size 1) × 20 epochs: 2000 steps of 25 ms, so the job runs through every test below.
  up = await startUpstream({ stepMs: 25 });
  jobId = await createTrainingJob(up.client(KEY), 20, 100);
  await waitUntil(async () => (await up.client(KEY).fineTuning.jobs.retrieve(jobId)).status === 'running', 30_000, 50);
});
afterAll(async () => {
  await up
    ?.client(KEY)
    .fineTuning.jobs.cancel(jobId)
    .catch(() => undefined);
  await up?.close();
});

async function startGateway(env: Record<string, string> = {}): Promise<SpawnedServer> {
  return spawnServer({ OPENAI_BASE_URL: up.baseURL, OPENAI_API_KEY: KEY, POLL_INTERVAL_MS: String(POLL_MS), LOG_LEVEL: 'warn', ...env });
}

async function stop(server: SpawnedServer | undefined) {
  if (!server || server.child.exitCode !== null) return;
  server.child.kill('SIGKILL');
  await server.exited;
}

interface RawSocket {
  socket: WebSocket;
  /** Messages by operation id, in order. */
  byId: Map<string, { type: string; payload?: any; at: number }[]>;
  closed: Promise<{ code: number; reason: string }>;
  subscribe(id: string, query: string, variables?: Record<string, unknown>): void;
}

/** A graphql-transport-ws connection by hand, acknowledged, that records every message by operation id. */
async function rawSocket(httpUrl: string): Promise<RawSocket> {
  const socket = new WebSocket(`${httpUrl.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  const byId: RawSocket['byId'] = new Map();
  let acked!: () => void;
  const ack = new Promise<void>((r) => (acked = r));
  socket.on('message', (data) => {
    const m = JSON.parse(String(data)) as { id?: string; type: string; payload?: unknown };
    if (m.type === 'connection_ack') return acked();
    if (m.id === undefined) return;
    let list = byId.get(m.id);
    if (!list) byId.set(m.id, (list = []));
    list.push({ type: m.type, payload: m.payload, at: Date.now() });
  });
  const closed = new Promise<{ code: number; reason: string }>((r) => socket.once('close', (code, reason) => r({ code, reason: String(reason) })));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  socket.send(JSON.stringify({ type: 'connection_init' }));
  await ack;
  return {
    socket,
    byId,
    closed,
    subscribe: (id, query, variables = { id: jobId }) => socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } })),
  };
}

/**
 * Another client, in its own process (so that the test's own work, sending the burst, does not delay it):
 * sequential queries for `durationMs` after its first (warm-up) query, each timed. Resolves when it is ready (warmed
 * up) with the promise of its results.
 */
async function startVictim(httpUrl: string, durationMs: number) {
  // A list, not the job itself: the job's own GETs are the poller's, counted by the tests.
  const queries = ['{ __typename }', '{ fineTuningJobs(first: 1) { edges { node { id status } } } }'];
  const code = `
    const [url, duration, queries] = [process.argv[1], Number(process.argv[2]), JSON.parse(process.argv[3])];
    const ask = async (query) => {
      const t0 = performance.now();
      try {
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify({ query }), signal: AbortSignal.timeout(10000) });
        const body = await res.json();
        return { ms: performance.now() - t0, ok: res.status === 200 && !body.errors && body.data != null, query };
      } catch (err) {
        return { ms: performance.now() - t0, ok: false, query, error: String(err) };
      }
    };
    await ask(queries[0]);
    console.log('ready');
    const out = [];
    const end = performance.now() + duration;
    for (let i = 0; performance.now() < end; i++) {
      out.push(await ask(queries[i % queries.length]));
      await new Promise((r) => setTimeout(r, 50));
    }
    console.log(JSON.stringify(out));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, `${httpUrl}/graphql`, String(durationMs), JSON.stringify(queries)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitUntil(() => output.startsWith('ready') || child.exitCode !== null, 20_000, 10);
  const results = exited.then(() => JSON.parse(output.split('\n')[1] ?? '[]') as { ms: number; ok: boolean; query: string; error?: string }[]);
  return { results };
}

/** Retrieves of the job (one per poll) answered by the local service in [from, to). */
const pollsBetween = (from: number, to: number) =>
  up.timed.filter((r) => r.method === 'GET' && r.path === `/v1/fine_tuning/jobs/${jobId}` && r.at >= from && r.at < to).length;

/** Sends the burst, runs the victim and counts polls over `windowMs` from the burst's start. */
async function flood(server: SpawnedServer, windowMs: number) {
  const attacker = await rawSocket(server.url);
  // The poller is running (one subscription) before the burst, so the window counts a steady poller.
  attacker.subscribe('0', EVENTS);
  await waitUntil(() => attacker.byId.get('0')?.some((m) => m.type === 'next'), 10_000, 10);
  const frames: string[] = [];
  for (let i = 1; i < FRAMES; i++) frames.push(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: EVENTS, variables: { id: jobId } } }));
  const victim = await startVictim(server.url, windowMs);
  const start = Date.now();
  for (const f of frames) attacker.socket.send(f);
  const latencies = await victim.results;
  await sleep(Math.max(0, start + windowMs - Date.now()));
  return { attacker, latencies, polls: pollsBetween(start, start + windowMs) };
}

/** The p-th quantile (nearest rank) of `values`. */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

describe('10,000 subscribe frames on one websocket', () => {
  let server: SpawnedServer | undefined;
  afterAll(async () => stop(server));

  it('opens the first MAX_SUBSCRIPTIONS_PER_SOCKET, refuses the rest with LIMIT_EXCEEDED; the first ones keep receiving, another client stays under 500 ms, the poller keeps its interval', async () => {
    server = await startGateway({ RATE_LIMIT_PER_MINUTE: '0' });
    const WINDOW = 4000;
    const { attacker, latencies, polls } = await flood(server, WINDOW);

    // Another client: every query answered, 9 in 10 under 500 ms and none over 1.5 s, even with the rest of the
    // suite loading this 2-core machine (alone, the worst is ~150–300 ms; bench:flood has the figures; without the
    // limit the victim waited 2.4 s to over 10 s).
    const timings = `victim latencies (ms): ${latencies.map((l) => Math.round(l.ms)).join(', ')}`;
    expect(latencies.length, timings).toBeGreaterThanOrEqual(10);
    expect(
      percentile(
        latencies.map((l) => l.ms),
        0.9,
      ),
      timings,
    ).toBeLessThan(500);
    expect(Math.max(...latencies.map((l) => l.ms)), timings).toBeLessThan(1_500);
    expect(latencies.every((l) => l.ok)).toBe(true);

    // The job's poller: one retrieve per interval over the window (the grid may gain or lose one at each end, and a
    // loaded machine delays a few ticks: at least 80 %; without the limit it made 3 of 20).
    const expected = WINDOW / POLL_MS;
    expect(polls, `polls in ${WINDOW} ms`).toBeGreaterThanOrEqual(Math.floor(expected * 0.8));
    expect(polls).toBeLessThanOrEqual(expected + 2);

    // Every frame got its answer: the first LIMIT are open (each got its first event or is waiting for the next
    // one), every other one an error that names the limit.
    await waitUntil(() => attacker.byId.size >= FRAMES, 20_000, 50);
    const refused: string[] = [];
    const open: string[] = [];
    for (const [id, messages] of attacker.byId) {
      if (messages[0]!.type === 'error') refused.push(id);
      else open.push(id);
    }
    expect(refused.length).toBe(FRAMES - LIMIT);
    expect(open.length).toBe(LIMIT);
    const error = attacker.byId.get(refused[0]!)![0]!.payload[0];
    expect(error.extensions).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'subscriptionsPerSocket', max: LIMIT });
    expect(error.message).toMatch(/at most 100 .*MAX_SUBSCRIPTIONS_PER_SOCKET/);
    // The open ones are the first frames (the burst's first 99 plus the one opened before it).
    expect(open.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: LIMIT }, (_, i) => i));

    // … and they keep receiving: each gets events that the job produces after the whole burst was answered.
    const answered = Math.max(...refused.map((id) => attacker.byId.get(id)![0]!.at));
    await waitUntil(() => open.every((id) => attacker.byId.get(id)!.some((m) => m.type === 'next' && m.at > answered)), 10_000, 50);
    for (const id of open) expect(attacker.byId.get(id)!.every((m) => m.type === 'next')).toBe(true);

    // Still so after the flood (nothing left behind that keeps the server busy).
    const after = Date.now();
    await sleep(2000);
    expect(pollsBetween(after, after + 2000)).toBeGreaterThanOrEqual(2000 / POLL_MS - 2);

    // A slot frees when an operation completes: one more subscribe is then accepted.
    attacker.socket.send(JSON.stringify({ id: '0', type: 'complete' }));
    await sleep(200);
    attacker.subscribe('again', EVENTS);
    await waitUntil(() => attacker.byId.get('again')?.length, 10_000, 20);
    await waitUntil(() => attacker.byId.get('again')!.some((m) => m.type === 'next'), 10_000, 20);
    expect(attacker.byId.get('again')!.every((m) => m.type === 'next')).toBe(true);

    attacker.socket.close();
    expect(server.child.exitCode).toBeNull();
  });

  it('with the rate limit on (its default), refused frames cost no budget: another client with the same credential is still served', async () => {
    await stop(server);
    server = await startGateway();
    const WINDOW = 3000;
    const { attacker, latencies } = await flood(server, WINDOW);
    await waitUntil(() => attacker.byId.size >= FRAMES, 20_000, 50);
    const codes = new Map<string, number>();
    for (const messages of attacker.byId.values()) {
      const first = messages[0]!;
      const code = first.type === 'error' ? first.payload[0].extensions.code : first.type;
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    // AUTH_MODE=none: the attacker and the victim are the same principal, so they share one budget of 3000 per
    // minute. Only the opened operations took from it.
    expect(Object.fromEntries(codes)).toEqual({ next: LIMIT, LIMIT_EXCEEDED: FRAMES - LIMIT });
    expect(latencies.every((l) => l.ok)).toBe(true);
    expect(
      percentile(
        latencies.map((l) => l.ms),
        0.9,
      ),
    ).toBeLessThan(500);
    expect(Math.max(...latencies.map((l) => l.ms))).toBeLessThan(1_500);
    attacker.socket.close();
  });

  it('a flooding client that does not read its answers is cut once they pass STREAM_MAX_BUFFER_BYTES (SLOW_CONSUMER)', async () => {
    await stop(server);
    server = await startGateway({ RATE_LIMIT_PER_MINUTE: '0' });
    const attacker = await rawSocket(server.url);
    // ~9 MB of frames; their refusals (~300 bytes each, ~18 MB) pass what the kernel holds for a socket that is not
    // read (a few MiB) plus STREAM_MAX_BUFFER_BYTES (4 MiB by default).
    attacker.socket.pause();
    const N = 60_000;
    for (let i = 0; i < N; i++) attacker.subscribe(String(i), EVENTS);
    await waitUntil(() => /SLOW_CONSUMER/.test(server!.output()), 30_000, 50);
    const line = jsonLines(server.output()).find((l) => /SLOW_CONSUMER/.test(l.msg))!;
    expect(line).toMatchObject({ level: 40, limit: 4 * 1024 * 1024 });
    expect(line.bufferedBytes).toBeGreaterThan(4 * 1024 * 1024);
    // The client reads again: it gets what had reached its side, then the connection ends (the close frame, 1008 with
    // the reason, if it got out before the socket was cut; 1006 if not).
    attacker.socket.resume();
    const { code, reason } = await attacker.closed;
    expect([1006, 1008]).toContain(code);
    if (code === 1008) expect(reason).toMatch(/^SLOW_CONSUMER: over STREAM_MAX_BUFFER_BYTES/);
    let answered = 0;
    for (const messages of attacker.byId.values()) answered += messages.length;
    expect(answered).toBeLessThan(N);
    // Others are served.
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(res.status).toBe(200);
  });

  it('a client that resets its connection mid-delivery: one JSON warning, nothing printed to stderr', async () => {
    await stop(server);
    server = await startGateway({ RATE_LIMIT_PER_MINUTE: '0' });
    const BIG = `{ fineTuningJob(id: "${jobId}") { id events(first: 100) { edges { node { id message data } } } } }`;
    for (let round = 0; round < 6; round++) {
      const client = await rawSocket(server.url);
      for (let i = 0; i < LIMIT / 2; i++) client.subscribe(`s${i}`, EVENTS);
      for (let i = 0; i < LIMIT / 2; i++) client.subscribe(`q${i}`, BIG);
      await waitUntil(() => client.byId.size >= LIMIT / 4, 10_000, 5);
      // TCP RST while answers are being written: the server's writes fail with ECONNRESET/EPIPE.
      (client.socket as unknown as { _socket: import('node:net').Socket })._socket.resetAndDestroy();
      await sleep(100);
    }
    await sleep(500);
    const lines = server.output().split('\n').filter(Boolean);
    const other = lines.filter((l) => !l.startsWith('{') && !l.startsWith('GraphQL API at'));
    expect(other, other.slice(0, 10).join('\n')).toEqual([]);
    const warnings = jsonLines(server.output()).filter((l) => /websocket client went away/.test(l.msg));
    // (How many rounds hit a failed write depends on timing; each that did left one line, with the upgrade's id.)
    expect(warnings.every((w) => w.level === 40 && typeof w.code === 'string' && typeof w.reqId === 'string' && !w.stack && !w.err)).toBe(true);
    // The server is up and serves.
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(res.status).toBe(200);
  });
});
