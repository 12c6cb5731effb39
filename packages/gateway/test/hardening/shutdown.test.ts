/**
 * Graceful shutdown of the real process (`node --import tsx src/server.ts`): SIGTERM during load lets every
 * in-flight request finish with 200 (the upstream answers slowly, by fault injection), refuses new
 * connections, closes websockets with 1001, and exits 0 within 10 s, logging each phase. SIGINT on the
 * embedded service closes its database too.
 */
import { connect } from 'node:net';
import { createClient } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { uploadTraining } from '@finetune-graphql/emulator/testing';
import { collectSse } from '../live/helpers.js';
import { jsonLines, KEY, sleep, spawnServer, type SpawnedServer, startGateway, startUpstream, type Upstream } from './helpers.js';

let up: Upstream | undefined;
let server: SpawnedServer | undefined;
afterEach(async () => {
  if (server && server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  server = undefined;
  await up?.close();
  up = undefined;
});

/** Resolves with the error code of a new TCP connection to `url`, or 'connected'. */
function tryConnect(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

const SLOW_MS = 1500;

describe('graceful shutdown', () => {
  it('SIGTERM during load: in-flight requests complete with 200, new connections are refused, websockets get 1001, exit 0 within 10 s', async () => {
    up = await startUpstream({ stepMs: 500 });
    const c = up.client(KEY);
    const jobId = (await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: await uploadTraining(c) })).id;
    // The upstream answers job reads slowly.
    up.emulator.setFaults({ latencyMs: SLOW_MS, routes: ['GET /v1/fine_tuning/jobs/:id'] });
    server = await spawnServer({
      OPENAI_BASE_URL: up.baseURL,
      OPENAI_API_KEY: KEY,
      LOG_LEVEL: 'info',
      POLL_INTERVAL_MS: '200',
      FINISHED_JOB_CACHE_SIZE: '0',
    });
    const wsUrl = `${server.url.replace(/^http/, 'ws')}/graphql`;

    // Three websocket subscribers.
    const closeCodes: number[] = [];
    let connected = 0;
    const clients = Array.from({ length: 3 }, () =>
      createClient({
        url: wsUrl,
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        lazy: false,
        // Closing with 1001 is expected here; graphql-ws would print it.
        onNonLazyError: () => undefined,
        on: {
          connected: () => connected++,
          closed: (e) => closeCodes.push((e as { code: number }).code),
        },
      }),
    );
    for (const client of clients) {
      client.subscribe(
        { query: 'subscription($id: ID!) { fineTuningJobEvents(jobId: $id) { id } }', variables: { id: jobId } },
        { next: () => undefined, error: () => undefined, complete: () => undefined },
      );
    }
    while (connected < 3) await sleep(10);

    // A batch of slow requests.
    const N = 20;
    const started = Date.now();
    const inflight = Array.from({ length: N }, (_, i) =>
      fetch(`${server!.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': `inflight-${i}` },
        body: JSON.stringify({ query: 'query Slow($id: ID!) { fineTuningJob(id: $id) { id status } }', variables: { id: jobId } }),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as { data?: any; errors?: unknown[] } })),
    );
    await sleep(400);
    const signalledAt = Date.now();
    server.child.kill('SIGTERM');
    await sleep(150);

    // New connections are refused while the in-flight requests are still running.
    expect(await tryConnect(server.url)).toBe('ECONNREFUSED');
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();

    const results = await Promise.all(inflight);
    expect(Date.now() - started).toBeGreaterThanOrEqual(SLOW_MS);
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(r.body.errors).toBeUndefined();
      expect(r.body.data.fineTuningJob.id).toBe(jobId);
    }

    const exit = await server.exited;
    expect(exit.code).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(10_000);
    expect(closeCodes).toEqual([1001, 1001, 1001]);

    // Each phase is logged, in order.
    const lines = jsonLines(server.output());
    const phases = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('shutdown:')).map((l) => l.msg);
    expect(phases).toEqual([
      'shutdown: signal received',
      'shutdown: stopped accepting connections',
      'shutdown: websockets closed with 1001',
      'shutdown: live pollers stopped',
      'shutdown: in-flight requests finished',
      'shutdown: http server closed',
      'shutdown: upstream pool closed',
      'shutdown: done',
    ]);
    expect(lines.find((l) => l.msg === 'shutdown: stopped accepting connections')).toMatchObject({ inflight: N, websockets: 3 });
    expect(lines.find((l) => l.msg === 'shutdown: websockets closed with 1001')).toMatchObject({ websockets: 3 });
    // One access line per in-flight request, all 200.
    const access = lines.filter((l) => l.msg === 'request' && String(l.reqId).startsWith('inflight-'));
    expect(access).toHaveLength(N);
    expect(access.every((l) => l.status === 200 && l.operation === 'Slow')).toBe(true);
    expect(server.output()).not.toContain(KEY);
    await Promise.all(clients.map((client) => client.dispose()));
  });

  it('SIGINT on an idle server with the embedded service: exit 0 at once, database closed', async () => {
    server = await spawnServer({ OPENAI_BASE_URL: '', OPENAI_API_KEY: '', EMULATOR_DB: ':memory:', LOG_LEVEL: 'info' });
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    const signalledAt = Date.now();
    server.child.kill('SIGINT');
    const exit = await server.exited;
    expect(exit.code).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(3_000);
    const phases = jsonLines(server.output())
      .map((l) => l.msg as string)
      .filter((m) => m?.startsWith('shutdown:'));
    expect(phases).toContain('shutdown: no requests in flight');
    expect(phases).toContain('shutdown: local service and database closed');
    expect(phases.at(-1)).toBe('shutdown: done');
  });

  it('in-process close(): SSE streams end with SHUTTING_DOWN; a request past SHUTDOWN_TIMEOUT_MS is cut at the deadline', async () => {
    up = await startUpstream({ stepMs: 500 });
    const c = up.client(KEY);
    const jobId = (await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: await uploadTraining(c) })).id;
    const gw = await startGateway(up.baseURL, { SHUTDOWN_TIMEOUT_MS: '600' }, { live: { pollIntervalMs: 100 } });
    const sse = collectSse<{ id: string }>(
      { httpUrl: gw.endpoint } as never,
      'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id status } }',
      { id: jobId },
      'fineTuningJobUpdated',
    );
    while (sse.items.length === 0) await sleep(10);
    // The upstream stops answering job reads: this request can only end by being cut.
    up.emulator.setFaults({ hangRate: 1, routes: ['GET /v1/fine_tuning/jobs/:id'] });
    const stuck = fetch(gw.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query($id: ID!) { fineTuningJob(id: $id) { id } }', variables: { id: jobId } }),
    }).then(
      (r) => `answered ${r.status}`,
      () => 'cut',
    );
    await sleep(200);
    const t0 = Date.now();
    await gw.close();
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(590);
    expect(took).toBeLessThan(600 + 2_500);
    expect(await stuck).toBe('cut');
    await sse.done;
    expect(sse.items[0]).toMatchObject({ id: jobId });
    expect(JSON.stringify(sse.errors)).toContain('SHUTTING_DOWN');
    const lines = gw.logLines();
    expect(lines.find((l) => l.msg === 'shutdown: deadline reached; cutting the remaining requests')).toMatchObject({ level: 40, cut: 1 });
    expect(lines.at(-1)).toMatchObject({ msg: 'shutdown: done' });
    // close() is idempotent.
    await gw.close();
  });
});
