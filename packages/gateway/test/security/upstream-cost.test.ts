/**
 * One request's upstream work is bounded before it starts (issue 10, findings 3, 6 and 12): `nodes(ids:)` takes at
 * most GRAPHQL_MAX_NODES ids, an operation whose estimated upstream calls (with its variables) exceed
 * GRAPHQL_MAX_UPSTREAM_CALLS is refused before anything is sent, the calls a request really makes are capped at
 * the same number, and JSON-scalar inputs have a depth and size limit. Upstream calls are counted at the upstream
 * (the local service's request log), over real HTTP and websockets.
 */
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/config.js';
import { parse, Kind } from 'graphql/index.js';
import { estimateUpstreamCalls } from '../../src/resolvers/upstream-cost.js';
import { EXAMPLES } from '../../src/schema/examples.js';
import { getSchema } from '../../src/schema/index.js';
import { startEmulator, trainingJsonl, type RunningEmulator, uploadTraining, waitFor, waitForStatus } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, type GqlResult, startApi } from '../helpers/server.js';
import { storedCounts, wsOperation, wsSession, writesAt } from './helpers.js';

const KEY = 'sk-server-key-upstream-cost-01';
const MODEL = 'gpt-4o-mini-2024-07-18';
const MAX_CALLS = DEFAULT_LIMITS.maxUpstreamCalls;
const MAX_NODES = DEFAULT_LIMITS.maxNodes;

let emu: RunningEmulator;
let rest: OpenAI;
let api: ApiHandle;
/** yoga's own HTTP layer for everything (no JSON fast path). */
let yogaOnly: ApiHandle;
let fileId: string;
let finishedJob: string;
let runningJob: string;

/** What the upstream saw while `fn` ran. */
async function upstreamDuring<T>(fn: () => Promise<T>): Promise<{ result: T; calls: number }> {
  const before = emu.requests.length;
  const result = await fn();
  return { result, calls: emu.requests.length - before };
}

const ids = (n: number, prefix = 'ftjob-') => Array.from({ length: n }, (_, i) => `${prefix}nosuch${String(i).padStart(6, '0')}`);

function expectRefused(r: GqlResult, extensions: Record<string, unknown>) {
  expect(r.data ?? null, JSON.stringify(r.errors)).toBeNull();
  expect(r.errors).toHaveLength(1);
  expect(r.errors![0]!.extensions).toMatchObject(extensions);
}

beforeAll(async () => {
  emu = await startEmulator({ stepMs: 20 });
  rest = emu.client(KEY);
  api = await startApi({ baseURL: emu.baseURL, apiKey: KEY });
  yogaOnly = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { GRAPHQL_FAST_PATH: '0' } });
  fileId = await uploadTraining(rest, trainingJsonl(10));
  finishedJob = (await rest.fineTuning.jobs.create({ model: MODEL, training_file: fileId, hyperparameters: { n_epochs: 1 } })).id;
  await waitForStatus(rest, finishedJob, ['succeeded']);
  // A long job that stays running for the whole file (its data is never cached).
  runningJob = (await rest.fineTuning.jobs.create({ model: MODEL, training_file: fileId, hyperparameters: { n_epochs: 50, batch_size: 1 } })).id;
  for (let i = 0; i < 6; i++) await rest.fineTuning.jobs.create({ model: MODEL, training_file: fileId, metadata: { n: String(i) } });
});

afterAll(async () => {
  await api?.close();
  await yogaOnly?.close();
  await emu?.close();
});

const NODES = 'query Nodes($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }';

describe('nodes(ids:) takes at most GRAPHQL_MAX_NODES ids', () => {
  it('1,000 ids in a variable are refused (BAD_USER_INPUT on ids) with no upstream call, on both HTTP paths', async () => {
    for (const server of [api, yogaOnly]) {
      const { result, calls } = await upstreamDuring(() => server.gql(NODES, { ids: ids(1000) }));
      expectRefused(result, { code: 'BAD_USER_INPUT', field: 'ids', limit: 'nodes', max: MAX_NODES });
      expect(result.errors![0]!.message).toMatch(/at most 100 ids.*got 1000/);
      expect(calls).toBe(0);
    }
  });

  it('as a literal too, and one id over the limit is enough', async () => {
    const literal = `{ nodes(ids: [${ids(MAX_NODES + 1)
      .map((id) => JSON.stringify(id))
      .join(', ')}]) { id } }`;
    const { result, calls } = await upstreamDuring(() => api.gql(literal));
    expectRefused(result, { code: 'BAD_USER_INPUT', field: 'ids', limit: 'nodes', max: MAX_NODES });
    expect(calls).toBe(0);
  });

  it('exactly GRAPHQL_MAX_NODES ids run, with at most one upstream call each', async () => {
    const { result, calls } = await upstreamDuring(() => api.gql(NODES, { ids: ids(MAX_NODES) }));
    expect(result.data.nodes).toHaveLength(MAX_NODES);
    expect(new Set(result.errors!.map((e) => e.extensions!.code))).toEqual(new Set(['NOT_FOUND']));
    expect(calls).toBe(MAX_NODES);
  });

  it('in AUTH_MODE=passthrough, 10,000 ids with an invented key make no upstream call at all', async () => {
    const pass = await startApi({ baseURL: emu.baseURL, apiKey: 'sk-unused-server-key-cost-0', env: { AUTH_MODE: 'passthrough' } });
    try {
      for (const n of [1000, 10_000]) {
        const { result, calls } = await upstreamDuring(() => pass.gql(NODES, { ids: ids(n) }, { token: 'sk-invented-key-nobody-has-000' }));
        expectRefused(result, { code: 'BAD_USER_INPUT', field: 'ids', limit: 'nodes' });
        expect(calls).toBe(0);
      }
    } finally {
      await pass.close();
    }
  });
});

/** Nested connections whose size is in variables: GraphQL Armor's static cost rule sees no number. */
const BOMB = `query Bomb($n: Int, $m: Int = 100) {
  fineTuningJobs(first: $n) {
    edges { node {
      id
      metrics { step }
      trainingFile { id }
      events(first: $m) { edges { node { id } } }
      checkpoints(first: $m) { edges { node { id job { id metrics { step } events(first: $m) { edges { node { id message } } } } } } }
    } }
  }
}`;

describe('an operation whose estimated upstream calls exceed GRAPHQL_MAX_UPSTREAM_CALLS is refused before it runs', () => {
  it('a variable-driven cost bomb (first: $n with nested connections): QUERY_LIMIT_EXCEEDED, no upstream call', async () => {
    for (const server of [api, yogaOnly]) {
      const { result, calls } = await upstreamDuring(() => server.gql(BOMB, { n: 100 }));
      expectRefused(result, { code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', max: MAX_CALLS });
      // 1 list + per job: metrics, training file, events page, checkpoints page, one job of the checkpoints (its
      // metrics and events page): 1 + 100 × 7.
      expect(result.errors![0]!.extensions!.estimate).toBe(701);
      expect(calls).toBe(0);
    }
    // The default page size (no $n) is counted too: 1 + 20 × 7.
    const byDefault = await upstreamDuring(() => api.gql(BOMB, {}));
    expectRefused(byDefault.result, { code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', estimate: 141 });
    expect(byDefault.calls).toBe(0);
  });

  it('over graphql-ws as well', async () => {
    const ws = wsSession(api.url);
    try {
      const before = emu.requests.length;
      const out = await wsOperation(ws.client, BOMB, { n: 100 });
      const errors = (out.results[0]?.errors ?? out.error) as { extensions?: Record<string, unknown> }[];
      expect(errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', estimate: 701 });
      expect(emu.requests.length - before).toBe(0);
    } finally {
      await ws.dispose();
    }
  });

  it('a subscription is estimated per event: over the limit it does not start (no poller, no upstream call)', async () => {
    const strict = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { GRAPHQL_MAX_UPSTREAM_CALLS: '2' } });
    const ws = wsSession(strict.url);
    try {
      const SUB = 'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id trainingFile { id } resultFiles { id } metrics { step } } }';
      const before = emu.requests.length;
      const out = await wsOperation(ws.client, SUB, { id: runningJob }, 1);
      const errors = (out.results[0]?.errors ?? out.error) as { extensions?: Record<string, unknown> }[];
      expect(errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', estimate: 3, max: 2 });
      await new Promise((r) => setTimeout(r, 300));
      expect(emu.requests.length - before).toBe(0);
      // Within the limit it runs: the job's current state first.
      const ok = await wsOperation(ws.client, 'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id trainingFile { id } } }', { id: runningJob }, 1);
      expect(ok.results[0]?.errors).toBeUndefined();
      expect(ok.results[0]?.data?.fineTuningJobUpdated.trainingFile.id).toBe(fileId);
    } finally {
      await ws.dispose();
      await strict.close();
    }
  });

  it('fineTuningJobs(first: 100) { … metrics } (83 bytes, 141 upstream calls before) is refused; first: 20 runs within the bound', async () => {
    const q = (n: number) => `{fineTuningJobs(first:${n}){edges{node{metrics{step}}}}}`;
    expect(Buffer.byteLength(q(100))).toBeLessThan(90);
    const refused = await upstreamDuring(() => api.gql(q(100)));
    expectRefused(refused.result, { code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', estimate: 101, max: MAX_CALLS });
    expect(refused.calls).toBe(0);
    const ok = await upstreamDuring(() => api.gql(q(20)));
    expect(ok.result.errors).toBeUndefined();
    expect(ok.result.data.fineTuningJobs.edges.length).toBeGreaterThanOrEqual(8);
    expect(ok.calls).toBeGreaterThan(0);
    expect(ok.calls).toBeLessThanOrEqual(MAX_CALLS);
  });

  it('aliases add up: 15 × files(first: 20) { … } is fine, the same with a per-item lookup is not', async () => {
    const aliases = (sel: string) =>
      `query($n: Int) { ${Array.from({ length: 15 }, (_, i) => `a${i}: fineTuningJobs(first: $n) { edges { node { ${sel} } } }`).join(' ')} }`;
    const cheap = await upstreamDuring(() => api.gql(aliases('id status'), { n: 20 }));
    expect(cheap.result.errors).toBeUndefined();
    expect(cheap.calls).toBe(15);
    const dear = await upstreamDuring(() => api.gql(aliases('id trainingFile { id }'), { n: 20 }));
    expectRefused(dear.result, { code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', estimate: 15 * 21 });
    expect(dear.calls).toBe(0);
  });

  it('the refusal is counted in /metrics by its code', async () => {
    await api.gql(BOMB, { n: 100 });
    const text = await (await fetch(`${api.url}/metrics`)).text();
    expect(text).toMatch(/ftgql_graphql_errors_total\{[^}]*code="QUERY_LIMIT_EXCEEDED"[^}]*\} [1-9]/);
  });
});

describe('legitimate requests still work', () => {
  const FOLLOW = EXAMPLES.find((e) => /query FollowJob/.test(e.query))!;
  const post = async (server: ApiHandle, query: string, variables: Record<string, unknown>, operationName: string): Promise<GqlResult> => {
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query, variables, operationName }),
    });
    return { status: res.status, ...(await res.json()) };
  };

  it("the README's FollowJob (a finished job and a running one) and first: 20 lists", async () => {
    expect(FOLLOW, 'the FollowJob example').toBeDefined();
    for (const id of [finishedJob, runningJob]) {
      const { result, calls } = await upstreamDuring(() => post(api, FOLLOW.query, { id }, 'FollowJob'));
      expect(result.errors, id).toBeUndefined();
      expect(result.data.fineTuningJob.id).toBe(id);
      expect(calls).toBeLessThanOrEqual(6);
    }
    const jobs = await post(api, FOLLOW.query, { after: null }, 'Jobs');
    expect(jobs.errors).toBeUndefined();
    expect(jobs.data.fineTuningJobs.edges.length).toBeGreaterThanOrEqual(8);
    const lists = await api.gql(
      '{ fineTuningJobs(first: 20) { edges { node { id status trainingFile { filename } } } } files(first: 20) { edges { node { id } } } }',
    );
    expect(lists.errors).toBeUndefined();
    const pages = await api.gql(
      'query($id: ID!) { fineTuningJob(id: $id) { events(first: 100) { edges { node { id } } } checkpoints(first: 10) { edges { node { id job { id status } } } } } }',
      { id: finishedJob },
    );
    expect(pages.errors).toBeUndefined();
    expect(pages.data.fineTuningJob.checkpoints.edges.length).toBeGreaterThan(0);
  });

  it('every operation of the GraphiQL examples is well under the limit', () => {
    for (const example of EXAMPLES) {
      const document = parse(example.query);
      for (const def of document.definitions) {
        if (def.kind !== Kind.OPERATION_DEFINITION) continue;
        const variables = {
          id: runningJob,
          jobId: runningJob,
          trainingFile: fileId,
          file: { name: 'train.jsonl', arrayBuffer: async () => new ArrayBuffer(0) },
        };
        const estimate = estimateUpstreamCalls({ schema: getSchema(), document, operationName: def.name?.value, variableValues: variables }, DEFAULT_LIMITS);
        expect('calls' in estimate && estimate.calls, `${example.title} ${def.name?.value}`).toBeLessThanOrEqual(10);
      }
    }
  });
});

describe('the calls a request really makes are capped at GRAPHQL_MAX_UPSTREAM_CALLS', () => {
  // The estimate counts one page for `metrics` of an unfinished job; walking its events takes one call per 100.
  let emu2: RunningEmulator;
  let low: ApiHandle;
  let high: ApiHandle;
  const JOBS = 4;
  const METRICS = `{ fineTuningJobs(first: ${JOBS}) { edges { node { id metrics { step } } } } }`;

  beforeAll(async () => {
    emu2 = await startEmulator({ stepMs: 2 });
    const client = emu2.client(KEY);
    const file = await uploadTraining(client, trainingJsonl(20));
    const jobs: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      jobs.push((await client.fineTuning.jobs.create({ model: MODEL, training_file: file, hyperparameters: { n_epochs: 50, batch_size: 1 } })).id);
    }
    // Paused once each has more than 200 events (3 pages of 100): not finished, so nothing is cached.
    for (const id of jobs) {
      await waitFor(async () => (await countEvents(client, id)) > 200, 60_000, 20);
      await client.fineTuning.jobs.pause(id);
    }
    low = await startApi({ baseURL: emu2.baseURL, apiKey: KEY, env: { GRAPHQL_MAX_UPSTREAM_CALLS: '8' } });
    high = await startApi({ baseURL: emu2.baseURL, apiKey: KEY, env: { GRAPHQL_MAX_UPSTREAM_CALLS: '1000' } });
  }, 90_000);

  afterAll(async () => {
    await low?.close();
    await high?.close();
    await emu2?.close();
  });

  async function countEvents(client: OpenAI, id: string): Promise<number> {
    let n = 0;
    for await (const _ of client.fineTuning.jobs.listEvents(id, { limit: 100 })) n++;
    return n;
  }

  const during = async <T>(fn: () => Promise<T>) => {
    const before = emu2.requests.length;
    const result = await fn();
    return { result, calls: emu2.requests.length - before };
  };

  it('an estimate under the limit (1 + 4) but a walk over it (1 + 4 × 3): calls stop at the limit, the rest are errors', async () => {
    const unbounded = await during(() => high.gql<any>(METRICS));
    expect(unbounded.result.errors).toBeUndefined();
    expect(unbounded.calls).toBeGreaterThanOrEqual(1 + JOBS * 3);

    const capped = await during(() => low.gql<any>(METRICS));
    expect(capped.calls).toBe(8);
    const refusals = capped.result.errors!.filter((e) => e.extensions?.limit === 'upstreamCalls');
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals[0]!.extensions).toMatchObject({ code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', max: 8 });
    expect(refusals[0]!.path).toEqual(['fineTuningJobs', 'edges', expect.any(Number), 'node', 'metrics']);
    // `metrics` is non-null, so the error nulls its parents up to the (non-null) root field: no data.
    expect(capped.result.data).toBeNull();
    // Expected errors: not masked, not logged as errors.
    expect(low.logs()).not.toMatch(/"level":50/);
    // Another request has its own allowance.
    const next = await during(() => low.gql<any>(`{ fineTuningJobs(first: ${JOBS}) { edges { node { id } } } }`));
    expect(next.result.errors).toBeUndefined();
    expect(next.calls).toBe(1);
  });
});

describe('JSON-scalar inputs have a depth and a size limit', () => {
  const CREATE = `mutation Create($input: CreateFineTuningJobInput!) {
    createFineTuningJob(input: $input) { __typename ... on ValidationError { field message } ... on Error { message } }
  }`;
  const nested = (levels: number): unknown => {
    let v: unknown = { type: 'string_check' };
    for (let i = 1; i < levels; i++) v = { grader: v };
    return v;
  };
  const input = (reinforcement: unknown) => ({ model: MODEL, trainingFile: fileId, method: { type: 'REINFORCEMENT', reinforcement } });

  it('a deeply nested method.reinforcement is BAD_USER_INPUT on input.method.reinforcement: nothing stored, no error-level log', async () => {
    const stored = await storedCounts(rest);
    const writes = writesAt(emu);
    for (const server of [api, yogaOnly]) {
      for (const levels of [DEFAULT_LIMITS.maxJsonDepth + 1, 60_000]) {
        // Written by hand: JSON.stringify itself cannot write 60,000 levels.
        const reinforcement = `${'{"grader":'.repeat(levels - 1)}{"type":"string_check"}${'}'.repeat(levels - 1)}`;
        const body = `{"query":${JSON.stringify(CREATE)},"variables":{"input":{"model":"${MODEL}","trainingFile":"${fileId}","idempotencyKey":"deep-${levels}","method":{"type":"REINFORCEMENT","reinforcement":${reinforcement}}}}}`;
        const res = await fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        const r: GqlResult = { status: res.status, ...(await res.json()) };
        expect(r.status, r.errors?.[0]?.message).toBeLessThan(500);
        expectRefused(r, { code: 'BAD_USER_INPUT', field: 'input.method.reinforcement', limit: 'jsonDepth', max: DEFAULT_LIMITS.maxJsonDepth });
      }
      expect(server.logs()).not.toMatch(/"level":50/);
      expect(server.logs()).not.toMatch(/RangeError|Maximum call stack/);
    }
    expect(writesAt(emu)).toBe(writes);
    expect(await storedCounts(rest)).toEqual(stored);
    // At the limit it is accepted (the local service then judges the method).
    const atLimit = await api.gql(CREATE, { input: input(nested(DEFAULT_LIMITS.maxJsonDepth)) });
    expect(atLimit.errors?.filter((e) => e.extensions?.limit) ?? []).toEqual([]);
  });

  it('written as a literal: a validation error naming the field', async () => {
    let literal = '{ type: "string_check" }';
    for (let i = 1; i <= DEFAULT_LIMITS.maxJsonDepth; i++) literal = `{ grader: ${literal} }`;
    const r = await api.gql(
      `mutation { createFineTuningJob(input: { model: "${MODEL}", trainingFile: "${fileId}", method: { type: REINFORCEMENT, reinforcement: ${literal} } }) { __typename } }`,
    );
    expectRefused(r, { code: 'BAD_USER_INPUT', field: 'input.method.reinforcement', limit: 'jsonDepth' });
  });

  it('a reinforcement or metadata filter larger than GRAPHQL_MAX_JSON_BYTES is refused (jsonBytes)', async () => {
    const big = { type: 'string_check', text: 'x'.repeat(DEFAULT_LIMITS.maxJsonBytes) };
    const writes = writesAt(emu);
    const r = await api.gql(CREATE, { input: input(big) });
    expectRefused(r, { code: 'BAD_USER_INPUT', field: 'input.method.reinforcement', limit: 'jsonBytes', max: DEFAULT_LIMITS.maxJsonBytes });
    expect(writesAt(emu)).toBe(writes);
    const { result, calls } = await upstreamDuring(() =>
      api.gql('query($m: JSON) { fineTuningJobs(metadata: $m) { edges { node { id } } } }', { m: { team: 'y'.repeat(DEFAULT_LIMITS.maxJsonBytes) } }),
    );
    expectRefused(result, { code: 'BAD_USER_INPUT', field: '$m', limit: 'jsonBytes' });
    expect(calls).toBe(0);
  });

  it('the limits are configurable (GRAPHQL_MAX_JSON_DEPTH)', async () => {
    const strict = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { GRAPHQL_MAX_JSON_DEPTH: '2' } });
    try {
      const r = await strict.gql(CREATE, { input: input(nested(3)) });
      expectRefused(r, { code: 'BAD_USER_INPUT', field: 'input.method.reinforcement', limit: 'jsonDepth', max: 2 });
      const ok = await strict.gql('query($m: JSON) { fineTuningJobs(first: 1, metadata: $m) { edges { node { id } } } }', { m: { n: '1' } });
      expect(ok.errors).toBeUndefined();
    } finally {
      await strict.close();
    }
  });
});
