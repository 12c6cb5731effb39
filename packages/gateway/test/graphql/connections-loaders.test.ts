/**
 * Connections (first/after, limits, metadata filter) and DataLoader batching, with upstream calls counted at
 * the upstream (the local service's request hook).
 */
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, trainingJsonl, uploadTraining, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';

const KEY = 'sk-test-connections';
let emu: RunningEmulator;
let api: ApiHandle;
let rest: OpenAI;
let files: string[];
let restJobs: OpenAI.FineTuning.Jobs.FineTuningJob[];

/** Routes the upstream saw while `fn` ran. */
async function routesDuring<T>(fn: () => Promise<T>): Promise<{ result: T; routes: string[]; paths: string[] }> {
  const before = emu.requests.length;
  const result = await fn();
  const seen = emu.requests.slice(before);
  return { result, routes: seen.map((r) => r.route), paths: seen.map((r) => r.path) };
}

beforeAll(async () => {
  // A very long step: the jobs stay in validating_files, so nothing is finished (and nothing cached).
  emu = await startEmulator({ stepMs: 600_000 });
  api = await startApi({ baseURL: emu.baseURL, apiKey: KEY });
  rest = emu.client(KEY);
  files = [];
  for (let i = 0; i < 3; i++) files.push(await uploadTraining(rest, trainingJsonl(10, i * 10), `train-${i}.jsonl`));
  for (let i = 0; i < 23; i++) {
    await rest.fineTuning.jobs.create({
      model: 'gpt-4o-mini-2024-07-18',
      training_file: files[i % 3]!,
      metadata: { batch: i % 4 === 0 ? 'a' : 'b', n: String(i) },
    });
  }
  restJobs = [];
  for await (const j of rest.fineTuning.jobs.list({ limit: 100 })) restJobs.push(j);
});

afterAll(async () => {
  const host = emu.url.replace('http://', '');
  for (const text of [...api.bodies, api.logs()]) {
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(host);
  }
  await api.close();
  await emu.close();
});

const PAGE = `query($first: Int, $after: String, $metadata: JSON) {
  fineTuningJobs(first: $first, after: $after, metadata: $metadata) {
    edges { cursor node { id status metadata } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

describe('fineTuningJobs connection', () => {
  it('walking every page with first/after returns each job once, in the upstream order', async () => {
    const ids: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const { result: r, paths } = await routesDuring(() => api.gql(PAGE, { first: 5, after }));
      expect(r.errors).toBeUndefined();
      // first → limit, after → after; one upstream call per page.
      expect(paths).toHaveLength(1);
      expect(paths[0]).toBe('/v1/fine_tuning/jobs');
      const conn = r.data.fineTuningJobs;
      expect(conn.pageInfo.hasPreviousPage).toBe(after !== null);
      expect(conn.pageInfo.startCursor).toBe(conn.edges[0]?.cursor ?? null);
      expect(conn.pageInfo.endCursor).toBe(conn.edges.at(-1)?.cursor ?? null);
      ids.push(...conn.edges.map((e: any) => e.cursor));
      pages++;
      if (!conn.pageInfo.hasNextPage) break;
      after = conn.pageInfo.endCursor;
    }
    expect(ids).toEqual(restJobs.map((j) => j.id));
    expect(new Set(ids).size).toBe(23);
    expect(pages).toBe(5);
  });

  it('defaults to 20, accepts 100, and rejects more than 100 or less than 0 before any upstream call', async () => {
    const d = await api.gql(PAGE, {});
    expect(d.data.fineTuningJobs.edges).toHaveLength(20);
    expect(d.data.fineTuningJobs.pageInfo.hasNextPage).toBe(true);
    const all = await api.gql(PAGE, { first: 100 });
    expect(all.data.fineTuningJobs.edges).toHaveLength(23);
    expect(all.data.fineTuningJobs.pageInfo.hasNextPage).toBe(false);

    for (const first of [101, 1000, -1]) {
      const { result: r, routes } = await routesDuring(() => api.gql(PAGE, { first }));
      expect(routes).toEqual([]);
      expect(r.data).toBeNull();
      expect(r.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'first' });
      expect(r.errors![0]!.message).toMatch(/first/);
    }
  });

  it('first: 0 returns no edges and tells whether there is a next page', async () => {
    const { result: r, paths } = await routesDuring(() => api.gql(PAGE, { first: 0 }));
    expect(r.data.fineTuningJobs).toEqual({
      edges: [],
      pageInfo: { hasNextPage: true, hasPreviousPage: false, startCursor: null, endCursor: null },
    });
    expect(paths).toEqual(['/v1/fine_tuning/jobs']);
    const last = restJobs.at(-1)!.id;
    const end = await api.gql(PAGE, { first: 0, after: last });
    expect(end.data.fineTuningJobs.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
  });

  it('filters by metadata, and rejects a bad filter before any upstream call', async () => {
    const r = await api.gql(PAGE, { first: 100, metadata: { batch: 'a' } });
    expect(r.errors).toBeUndefined();
    const expected = restJobs.filter((j) => (j.metadata as Record<string, string>).batch === 'a').map((j) => j.id);
    expect(r.data.fineTuningJobs.edges.map((e: any) => e.node.id)).toEqual(expected);
    expect(expected).toHaveLength(6);

    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    for (const metadata of [tooMany, { k: 1 }, { ['x'.repeat(65)]: 'v' }]) {
      const { result: bad, routes } = await routesDuring(() => api.gql(PAGE, { metadata }));
      expect(routes).toEqual([]);
      expect(bad.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
      expect(bad.errors![0]!.extensions!.field).toMatch(/^metadata/);
    }
  });

  it('an unknown cursor is BAD_USER_INPUT naming `after`', async () => {
    const r = await api.gql(PAGE, { first: 5, after: 'ftjob-doesnotexist00000000000' });
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'after' });
  });
});

describe('DataLoader (per request), counted at the upstream', () => {
  it('20 jobs with their trainingFile: 1 list call + 1 retrieve per distinct file', async () => {
    const {
      result: r,
      routes,
      paths,
    } = await routesDuring(() =>
      api.gql('{ fineTuningJobs(first: 20) { edges { node { id trainingFileId trainingFile { id filename } validationFile { id } } } } }'),
    );
    expect(r.errors).toBeUndefined();
    const edges = r.data.fineTuningJobs.edges;
    expect(edges).toHaveLength(20);
    for (const e of edges) expect(e.node.trainingFile.id).toBe(e.node.trainingFileId);
    const distinct = new Set(edges.map((e: any) => e.node.trainingFileId));
    expect(distinct.size).toBe(3);
    expect(routes.filter((x) => x === 'GET /v1/fine_tuning/jobs')).toHaveLength(1);
    expect(routes.filter((x) => x === 'GET /v1/files/:id')).toHaveLength(3);
    expect(routes).toHaveLength(4);
    expect(new Set(paths.filter((p) => p.startsWith('/v1/files/')))).toEqual(new Set([...distinct].map((id) => `/v1/files/${id}`)));
  });

  it('the same job asked for several times in one operation is retrieved once', async () => {
    const id = restJobs[3]!.id;
    const { result: r, routes } = await routesDuring(() =>
      api.gql(
        `query($id: ID!) {
          a: fineTuningJob(id: $id) { id status }
          b: fineTuningJob(id: $id) { id model trainingFile { id } }
          n: node(id: $id) { id ... on FineTuningJob { seed } }
          ns: nodes(ids: [$id, $id]) { id }
        }`,
        { id },
      ),
    );
    expect(r.errors).toBeUndefined();
    expect(r.data.a.id).toBe(id);
    expect(r.data.b.id).toBe(id);
    expect(r.data.n.id).toBe(id);
    expect(r.data.ns).toEqual([{ id }, { id }]);
    expect(routes.filter((x) => x === 'GET /v1/fine_tuning/jobs/:id')).toHaveLength(1);
    expect(routes.filter((x) => x === 'GET /v1/files/:id')).toHaveLength(1);
    expect(routes).toHaveLength(2);
  });

  it('loaders are per request: the next request asks the upstream again (the jobs are not finished)', async () => {
    const id = restJobs[5]!.id;
    const q = 'query($id: ID!) { fineTuningJob(id: $id) { id status } }';
    const first = await routesDuring(() => api.gql(q, { id }));
    const second = await routesDuring(() => api.gql(q, { id }));
    expect(first.routes).toEqual(['GET /v1/fine_tuning/jobs/:id']);
    expect(second.routes).toEqual(['GET /v1/fine_tuning/jobs/:id']);
  });
});

describe('DataLoader priming from list results', () => {
  it('a job listed in the request is not retrieved again when a checkpoint points back to it', async () => {
    // Jobs that finished, on a server without the finished-job cache, so only the loader can spare calls.
    const fast = await startEmulator({ stepMs: 5 });
    const fastApi = await startApi({ baseURL: fast.baseURL, apiKey: KEY, env: { FINISHED_JOB_CACHE_SIZE: '0' } });
    try {
      const c = fast.client(KEY);
      const file = await uploadTraining(c, trainingJsonl(10));
      const jobs = [];
      for (let i = 0; i < 3; i++) {
        jobs.push(await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: file, hyperparameters: { n_epochs: 3, batch_size: 5 } }));
      }
      for (const j of jobs) {
        for (let t = 0; t < 2000; t++) {
          if ((await c.fineTuning.jobs.retrieve(j.id)).status === 'succeeded') break;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      const before = fast.requests.length;
      const r = await fastApi.gql('{ fineTuningJobs(first: 3) { edges { node { id checkpoints(first: 5) { edges { node { id job { id status } } } } } } } }');
      expect(r.errors).toBeUndefined();
      const routes = fast.requests.slice(before).map((x) => x.route);
      for (const e of r.data.fineTuningJobs.edges) {
        expect(e.node.checkpoints.edges.length).toBeGreaterThan(0);
        for (const c2 of e.node.checkpoints.edges) expect(c2.node.job).toEqual({ id: e.node.id, status: 'SUCCEEDED' });
      }
      expect(routes.filter((x) => x === 'GET /v1/fine_tuning/jobs')).toHaveLength(1);
      expect(routes.filter((x) => x === 'GET /v1/fine_tuning/jobs/:id/checkpoints')).toHaveLength(3);
      expect(routes.filter((x) => x === 'GET /v1/fine_tuning/jobs/:id')).toHaveLength(0);
    } finally {
      await fastApi.close();
      await fast.close();
    }
  });
});
