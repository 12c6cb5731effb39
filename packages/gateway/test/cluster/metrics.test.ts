/**
 * /metrics (Prometheus) and /ready: operations counted on the JSON fast path as on yoga's path, HTTP requests,
 * upstream calls by route and status, live pollers, subscriptions and poll lag; /ready with each check, 503 when
 * Redis is unreachable (an instance pointed at a closed port) while the rest of the API keeps working.
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  collect,
  createJob,
  deletePrefix,
  EVENTS_SUB,
  gql,
  type Instance,
  instanceEnv,
  KEY,
  newPrefix,
  redisClient,
  scrape,
  startInstance,
  startUpstream,
  sum,
  type Upstream,
  waitUntil,
  wsClient,
} from './helpers.js';
import { uploadTraining } from '@finetune-graphql/emulator/testing';

const prefix = newPrefix();
const redis = redisClient();
let up: Upstream;
let inst: Instance;

beforeAll(async () => {
  up = await startUpstream({ stepMs: 200 });
  inst = await startInstance(instanceEnv(up, prefix, 'metrics-1', { POLL_INTERVAL_MS: '100' }));
});
afterAll(async () => {
  await inst?.close();
  await up?.close();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('/metrics', () => {
  it("counts operations on the JSON fast path and on yoga's path, HTTP requests and upstream calls", async () => {
    const before = await scrape(inst);
    for (let i = 0; i < 5; i++) {
      // A JSON POST without Origin: served by the fast path (src/http/fast-path.ts).
      const r = await gql(inst, 'query FastJobs { fineTuningJobs(first: 2) { edges { node { id } } } }');
      expect(r.errors).toBeUndefined();
    }
    for (let i = 0; i < 3; i++) {
      // A GET: served by yoga.
      const q = encodeURIComponent('query YogaJobs { fineTuningJobs(first: 2) { edges { node { id } } } }');
      const res = await fetch(`${inst.url}/graphql?query=${q}`, { headers: { accept: 'application/json' } });
      expect(res.status).toBe(200);
    }
    const missing = await gql(inst, 'query Missing { fineTuningJob(id: "ftjob-doesnotexist") { id } }');
    expect(missing.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    // Refused documents, on both paths: a syntax error and a field that does not exist.
    expect((await gql(inst, 'query Broken { fineTuningJobs(')).errors?.[0]?.extensions?.code).toBe('GRAPHQL_PARSE_FAILED');
    const q = encodeURIComponent('query Invalid { noSuchField }');
    const invalid = await (await fetch(`${inst.url}/graphql?query=${q}`, { headers: { accept: 'application/json' } })).json();
    expect(invalid.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');

    const after = await scrape(inst);
    const delta = (name: string, ...labels: string[]) => sum(after, name, ...labels) - sum(before, name, ...labels);
    expect(delta('ftgql_graphql_operations_total', 'operationType="query"', 'operationName="FastJobs"')).toBe(5);
    expect(delta('ftgql_graphql_operations_total', 'operationName="YogaJobs"')).toBe(3);
    expect(delta('ftgql_graphql_operation_duration_seconds_count', 'operationName="FastJobs"')).toBe(5);
    expect(delta('ftgql_graphql_operation_duration_seconds_count', 'operationName="YogaJobs"')).toBe(3);
    expect(delta('ftgql_graphql_errors_total', 'operationName="Missing"', 'code="NOT_FOUND"')).toBe(1);
    expect(delta('ftgql_graphql_errors_total', 'operationName="FastJobs"')).toBe(0);
    expect(delta('ftgql_graphql_errors_total', 'code="GRAPHQL_PARSE_FAILED"')).toBe(1);
    expect(delta('ftgql_graphql_errors_total', 'operationName="Invalid"', 'code="GRAPHQL_VALIDATION_FAILED"')).toBe(1);
    expect(delta('ftgql_http_requests_total', 'route="/graphql"', 'status="200"')).toBe(11);
    expect(delta('ftgql_http_request_duration_seconds_count', 'route="/graphql"')).toBe(11);
    expect(delta('ftgql_upstream_requests_total', 'route="/v1/fine_tuning/jobs"', 'method="GET"', 'status="200"')).toBe(8);
    expect(delta('ftgql_upstream_requests_total', 'route="/v1/fine_tuning/jobs/{id}"', 'status="404"')).toBe(1);
    expect(sum(after, 'ftgql_upstream_request_duration_seconds_count')).toBeGreaterThan(0);
    expect(sum(after, 'process_resident_memory_bytes')).toBeGreaterThan(0);

    const text = await (await fetch(`${inst.url}/metrics`)).text();
    expect(text).not.toContain('ftjob-doesnotexist'); // ids are folded into {id}
    expect(text).not.toContain(KEY);
  });

  it('reports live pollers, subscriptions and poll lag', async () => {
    const jobId = await createJob(up, 2);
    const client = wsClient(inst);
    const sub = collect(client, EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    await waitUntil(async () => sum(await scrape(inst), 'ftgql_live_subscriptions') === 1, 5000, 50);
    await waitUntil(async () => sum(await scrape(inst), 'ftgql_live_poll_lag_seconds_count') >= 3, 5000, 50);
    const m = await scrape(inst);
    expect(sum(m, 'ftgql_live_pollers')).toBe(1);
    expect(sum(m, 'ftgql_live_watched_jobs')).toBe(1);
    expect(sum(m, 'ftgql_live_lease_acquired_total')).toBeGreaterThanOrEqual(1);
    sub.stop();
    await waitUntil(
      async () => {
        const s = await scrape(inst);
        return sum(s, 'ftgql_live_subscriptions') === 0 && sum(s, 'ftgql_live_pollers') === 0;
      },
      5000,
      50,
    );
    // A subscription is counted once, when it starts.
    expect(sum(await scrape(inst), 'ftgql_graphql_operations_total', 'operationType="subscription"', 'operationName="Events"')).toBe(1);
    await client.dispose();
  });

  // Last of this block: it fills the registry's room for operation names.
  it('keeps client-chosen operation names from growing the registry without bound', async () => {
    await Promise.all(Array.from({ length: 260 }, (_, i) => gql(inst, `query Probe${i} { fineTuningJobs(first: 1) { edges { node { id } } } }`)));
    const m = await scrape(inst);
    const names = new Set<string>();
    for (const k of m.keys()) {
      if (!k.startsWith('ftgql_graphql_operations_total{')) continue;
      const name = /operationName="([^"]*)"/.exec(k)?.[1];
      if (name) names.add(name);
    }
    expect(names.size).toBeLessThanOrEqual(201);
    expect(names.has('other')).toBe(true);
    expect(sum(m, 'ftgql_graphql_operations_total', 'operationName="other"')).toBeGreaterThanOrEqual(60);
  });
});

describe('/ready', () => {
  it('lists each check and is ready when the upstream and Redis answer', async () => {
    const res = await fetch(`${inst.url}/ready`);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({ status: 'ready', checks: { upstream: { ok: true }, redis: { ok: true } } });
    expect(typeof body.checks.redis.latencyMs).toBe('number');
  });

  it('answers 503 when Redis is unreachable, while the API itself still answers', async () => {
    const port = await freePort();
    const broken = await startInstance(instanceEnv(up, newPrefix(), 'no-redis', { REDIS_URL: `redis://127.0.0.1:${port}` }));
    try {
      const res = await fetch(`${broken.url}/ready`);
      expect(res.status).toBe(503);
      const body = await res.json();
      expect(body).toMatchObject({ status: 'unavailable', code: 'REDIS_UNAVAILABLE', checks: { upstream: { ok: true }, redis: { ok: false } } });
      expect(JSON.stringify(body)).not.toContain(String(port)); // no address in the answer
      expect((await fetch(`${broken.url}/health`)).status).toBe(200);
      const r = await gql(broken, '{ fineTuningJobs(first: 1) { edges { node { id } } } }');
      expect(r.errors).toBeUndefined();
      // An idempotent create needs the shared key store: refused with a code, and nothing reaches the upstream.
      const file = await uploadTraining(up.client(KEY));
      const posts = up.timed.filter((t) => t.route === 'POST /v1/fine_tuning/jobs').length;
      const create = await gql(broken, `mutation($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { __typename } }`, {
        input: { model: 'gpt-4o-mini-2024-07-18', trainingFile: file, idempotencyKey: 'no-redis-key' },
      });
      expect(create.errors?.[0]?.extensions?.code).toBe('UPSTREAM_UNAVAILABLE');
      expect(create.errors?.[0]?.message).toMatch(/idempotency-key store/);
      expect(up.timed.filter((t) => t.route === 'POST /v1/fine_tuning/jobs').length).toBe(posts);
      // A subscription cannot be served without Redis: it ends with an error rather than hanging.
      const jobId = await createJob(up, 1);
      const client = wsClient(broken);
      const sub = collect(client, EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
      await Promise.race([sub.done, new Promise((r) => setTimeout(r, 10_000))]);
      expect(sub.errors.length).toBeGreaterThan(0);
      await client.dispose();
    } finally {
      await broken.close();
    }
  });
});
