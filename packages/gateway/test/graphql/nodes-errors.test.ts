/**
 * node/nodes with each id prefix; error codes UNAUTHENTICATED, NOT_FOUND, BAD_USER_INPUT (validation before any
 * upstream call, and the upstream's own 400s naming the field); the JSON fast path and yoga answer alike.
 */
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, trainingJsonl, uploadTraining, type RunningEmulator, waitForStatus } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';

const KEY = 'sk-test-nodes-and-errors';
let emu: RunningEmulator;
let api: ApiHandle;
let rest: OpenAI;
let fileId: string;
let jobId: string;

beforeAll(async () => {
  emu = await startEmulator({ stepMs: 5 });
  api = await startApi({ baseURL: emu.baseURL, apiKey: KEY });
  rest = emu.client(KEY);
  fileId = await uploadTraining(rest, trainingJsonl(10));
  const job = await rest.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: fileId, hyperparameters: { n_epochs: 3 } });
  jobId = job.id;
  await waitForStatus(rest, jobId, ['succeeded']);
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

const NODE = `query($id: ID!) { node(id: $id) { __typename id
  ... on FineTuningJob { status model }
  ... on File { filename purpose }
  ... on FineTuningJobEvent { message level }
  ... on FineTuningJobCheckpoint { stepNumber fineTuningJobId }
} }`;

describe('node / nodes: the global id is the OpenAI id, its prefix names the type', () => {
  it('resolves ftjob-, file-, ftevent- and ftckpt_ ids', async () => {
    const job = await api.gql(NODE, { id: jobId });
    expect(job.data.node).toEqual({ __typename: 'FineTuningJob', id: jobId, status: 'SUCCEEDED', model: 'gpt-4o-mini-2024-07-18' });
    const file = await api.gql(NODE, { id: fileId });
    expect(file.data.node).toEqual({ __typename: 'File', id: fileId, filename: 'train.jsonl', purpose: 'FINE_TUNE' });

    // Events and checkpoints cannot be fetched alone upstream: they are found once seen through their job.
    const listed = await api.gql(
      'query($id: ID!) { fineTuningJob(id: $id) { events(first: 3) { edges { node { id message } } } checkpoints(first: 1) { edges { node { id stepNumber } } } } }',
      { id: jobId },
    );
    const event = listed.data.fineTuningJob.events.edges[2].node;
    const ckpt = listed.data.fineTuningJob.checkpoints.edges[0].node;
    expect(event.id).toMatch(/^ftevent-/);
    expect(ckpt.id).toMatch(/^ftckpt_/);
    const e = await api.gql(NODE, { id: event.id });
    expect(e.errors).toBeUndefined();
    expect(e.data.node).toEqual({ __typename: 'FineTuningJobEvent', id: event.id, message: event.message, level: 'INFO' });
    const c = await api.gql(NODE, { id: ckpt.id });
    expect(c.data.node).toEqual({ __typename: 'FineTuningJobCheckpoint', id: ckpt.id, stepNumber: ckpt.stepNumber, fineTuningJobId: jobId });

    const many = await api.gql('query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }', {
      ids: [jobId, fileId, event.id, ckpt.id, 'ftjob-missing0000000000000000', 'file-missing00000000000'],
    });
    expect(many.data.nodes).toEqual([
      { __typename: 'FineTuningJob', id: jobId },
      { __typename: 'File', id: fileId },
      { __typename: 'FineTuningJobEvent', id: event.id },
      { __typename: 'FineTuningJobCheckpoint', id: ckpt.id },
      null,
      null,
    ]);
    expect(many.errors!.map((x) => [x.path, x.extensions!.code])).toEqual([
      [['nodes', 4], 'NOT_FOUND'],
      [['nodes', 5], 'NOT_FOUND'],
    ]);
  });

  it('an unknown prefix is BAD_USER_INPUT; an unseen event is NOT_FOUND', async () => {
    for (const id of ['xyz', 'ft-abc', 'user-123', '']) {
      const r = await api.gql(NODE, { id });
      expect(r.data.node).toBeNull();
      expect(r.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'id' });
    }
    const unseen = await api.gql(NODE, { id: 'ftevent-neverlistedhere000000000' });
    expect(unseen.data.node).toBeNull();
    expect(unseen.errors![0]!.extensions!.code).toBe('NOT_FOUND');
  });
});

describe('error codes', () => {
  it('NOT_FOUND: fineTuningJob and file of an unknown id are null with NOT_FOUND', async () => {
    const r = await api.gql('{ fineTuningJob(id: "ftjob-doesnotexist000000000") { id } file(id: "file-doesnotexist0000000") { id } }');
    expect(r.data).toEqual({ fineTuningJob: null, file: null });
    expect(r.errors!.map((e) => [e.path![0], e.extensions!.code]).sort()).toEqual([
      ['file', 'NOT_FOUND'],
      ['fineTuningJob', 'NOT_FOUND'],
    ]);
  });

  it('BAD_USER_INPUT: an id of the wrong type for fineTuningJob/file', async () => {
    const r = await api.gql(`query($a: ID!, $b: ID!) { fineTuningJob(id: $a) { id } file(id: $b) { id } }`, { a: fileId, b: jobId });
    expect(r.errors!.map((e) => e.extensions)).toEqual([
      { code: 'BAD_USER_INPUT', field: 'id' },
      { code: 'BAD_USER_INPUT', field: 'id' },
    ]);
  });

  it('createFineTuningJob: out-of-range input is a ValidationError naming the field, with no upstream call', async () => {
    const base = { model: 'gpt-4o-mini-2024-07-18', trainingFile: fileId };
    const cases: [Record<string, unknown>, string][] = [
      [{ hyperparameters: { nEpochs: 0 } }, 'input.hyperparameters.nEpochs'],
      [{ hyperparameters: { nEpochs: 51 } }, 'input.hyperparameters.nEpochs'],
      [{ hyperparameters: { batchSize: 257 } }, 'input.hyperparameters.batchSize'],
      [{ hyperparameters: { learningRateMultiplier: 0 } }, 'input.hyperparameters.learningRateMultiplier'],
      [{ method: { type: 'SUPERVISED', supervised: { hyperparameters: { nEpochs: 99 } } } }, 'input.method.supervised.hyperparameters.nEpochs'],
      [{ method: { type: 'DPO', dpo: { hyperparameters: { beta: 2.5 } } } }, 'input.method.dpo.hyperparameters.beta'],
      [{ suffix: '' }, 'input.suffix'],
      [{ suffix: 'x'.repeat(65) }, 'input.suffix'],
      [{ seed: -1 }, 'input.seed'],
      [{ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'input.metadata'],
      [{ trainingFile: 'not-a-file' }, 'input.trainingFile'],
      [{ validationFile: 'ftjob-abc' }, 'input.validationFile'],
      [{ model: '   ' }, 'input.model'],
      [{ idempotencyKey: '' }, 'input.idempotencyKey'],
    ];
    for (const [patch, field] of cases) {
      const before = emu.requests.length;
      const r = await api.gql(
        `mutation($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { __typename ... on ValidationError { field message } ... on Error { message } } }`,
        { input: { ...base, ...patch } },
      );
      expect(r.errors, JSON.stringify(patch)).toBeUndefined();
      expect(r.data.createFineTuningJob, JSON.stringify(patch)).toMatchObject({ __typename: 'ValidationError', field });
      expect(emu.requests.length, JSON.stringify(patch)).toBe(before);
    }
  });

  it("createFineTuningJob: the upstream's own 400 becomes a ValidationError naming the GraphQL field", async () => {
    const r = await api.gql(
      `mutation($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { __typename ... on ValidationError { field message } } }`,
      { input: { model: 'no-such-model', trainingFile: fileId } },
    );
    expect(r.data.createFineTuningJob).toMatchObject({ __typename: 'ValidationError', field: 'input.model' });
    const missing = await api.gql(
      `mutation($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { __typename ... on ValidationError { field message } } }`,
      { input: { model: 'gpt-4o-mini-2024-07-18', trainingFile: 'file-doesnotexist0000000' } },
    );
    expect(missing.data.createFineTuningJob).toMatchObject({ __typename: 'ValidationError', field: 'input.trainingFile' });
  });

  it('UNAUTHENTICATED: an empty key (no upstream call) and a key the upstream rejects', async () => {
    const empty = await startApi({ baseURL: emu.baseURL, apiKey: '' });
    try {
      const before = emu.requests.length;
      const r = await empty.gql('{ fineTuningJobs { edges { cursor } } }');
      expect(r.data).toBeNull();
      expect(r.errors![0]!.extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
      expect(emu.requests.length).toBe(before);
      expect((await fetch(`${empty.url}/ready`)).status).toBe(503);
    } finally {
      await empty.close();
    }
    const longKey = `sk-${'x'.repeat(600)}`;
    const bad = await startApi({ baseURL: emu.baseURL, apiKey: longKey });
    try {
      const r = await bad.gql('query($id: ID!) { fineTuningJob(id: $id) { id } }', { id: jobId });
      expect(r.errors![0]!.extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
      expect(emu.requests.at(-1)!.status).toBe(401);
      const m = await bad.gql('mutation { cancelFineTuningJob(id: "ftjob-abc") { __typename } }');
      expect(m.errors![0]!.extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
      for (const text of [...bad.bodies, bad.logs()]) expect(text).not.toContain('x'.repeat(40));
    } finally {
      await bad.close();
    }
  });

  it('each key is its own organisation upstream: another key does not see these jobs', async () => {
    const other = await startApi({ baseURL: emu.baseURL, apiKey: 'sk-test-someone-else' });
    try {
      const r = await other.gql('query($id: ID!) { fineTuningJob(id: $id) { id } fineTuningJobs { edges { cursor } } }', { id: jobId });
      expect(r.data.fineTuningJob).toBeNull();
      expect(r.errors![0]!.extensions!.code).toBe('NOT_FOUND');
      expect(r.data.fineTuningJobs.edges).toEqual([]);
    } finally {
      await other.close();
    }
  });
});

describe('the JSON fast path and yoga give the same answers', () => {
  const queries: [string, Record<string, unknown> | undefined][] = [
    ['query($id: ID!) { fineTuningJob(id: $id) { id status createdAt hyperparameters { nEpochs } trainingFile { filename } } }', undefined],
    ['{ fineTuningJob(id: "ftjob-doesnotexist000000000") { id } }', undefined],
    ['{ fineTuningJobs(first: 101) { edges { cursor } } }', undefined],
    ['{ node(id: "bogus") { id } }', undefined],
    ['mutation { cancelFineTuningJob(id: "ftjob-doesnotexist000000000") { __typename ... on Error { message } } }', undefined],
    ['{ fineTuningJob { id } }', undefined],
    ['{ nope }', undefined],
    ['{ fineTuningJob(id: ', undefined],
    ['query($first: Int) { fineTuningJobs(first: $first) { edges { cursor } } }', { first: 'many' }],
    // A subscription in a plain POST: handed to yoga, which answers over SSE.
    ['subscription { fineTuningJobUpdated(id: "ftjob-doesnotexist000000000") { id } }', undefined],
  ];
  let yogaOnly: ApiHandle;
  beforeAll(async () => {
    yogaOnly = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { GRAPHQL_FAST_PATH: '0' } });
  });
  afterAll(async () => {
    await yogaOnly?.close();
  });

  // A script (no Origin), and a browser: GraphiQL's own requests (same origin, its Accept header).
  const clients: [string, Record<string, string>][] = [
    ['script', { 'content-type': 'application/json' }],
    [
      'GraphiQL',
      {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json, multipart/mixed',
        origin: 'http://127.0.0.1:4000',
        'sec-fetch-site': 'same-origin',
      },
    ],
  ];
  it('for data, field errors, validation errors, syntax errors and bad variables, from scripts and browsers', async () => {
    for (const [client, headers] of clients) {
      for (const [query, vars] of queries) {
        const variables = vars ?? { id: jobId };
        const body = JSON.stringify({ query, variables });
        const fast = await fetch(`${api.url}/graphql`, { method: 'POST', headers, body });
        const viaYoga = await fetch(`${yogaOnly.url}/graphql`, { method: 'POST', headers, body });
        // yoga drops `locations` of errors raised while graphql-jit executes; the fast path keeps them.
        const strip = (r: any) => ({ ...r, ...(r.errors ? { errors: r.errors.map(({ locations: _l, ...e }: any) => e) } : {}) });
        const json = (fast.headers.get('content-type') ?? '').includes('json');
        const a = json ? strip(await fast.json()) : await fast.text();
        const b = json ? strip(await viaYoga.json()) : await viaYoga.text();
        expect(a, `${client}: ${query}`).toEqual(b);
        expect(fast.status, `${client}: ${query}`).toBe(viaYoga.status);
        expect(fast.headers.get('content-type'), `${client}: ${query}`).toBe(viaYoga.headers.get('content-type'));
      }
    }
  });

  it("a browser's JSON POST gets the answer and the CORS headers yoga gives (CORS_ORIGINS), allowed origin or not", async () => {
    const env = { CORS_ORIGINS: 'https://app.example.com' };
    const fastCors = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env });
    const yogaCors = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { ...env, GRAPHQL_FAST_PATH: '0' } });
    try {
      const corsOf = (res: Response) => {
        const out: Record<string, string> = {};
        res.headers.forEach((v, k) => {
          if (k.startsWith('access-control-') || k === 'vary') out[k] = v;
        });
        return out;
      };
      const body = JSON.stringify({ query: 'query Probe { fineTuningJobs(first: 1) { edges { cursor } } }' });
      for (const origin of ['https://app.example.com', 'https://evil.example']) {
        const headers = { 'content-type': 'application/json', origin };
        const a = await fetch(`${fastCors.url}/graphql`, { method: 'POST', headers, body });
        const b = await fetch(`${yogaCors.url}/graphql`, { method: 'POST', headers, body });
        expect(a.status).toBe(200);
        expect(corsOf(a), origin).toEqual(corsOf(b));
        expect(await a.json()).toEqual(await b.json());
      }
      const allowed = await fetch(`${fastCors.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin: 'https://app.example.com' },
        body,
      });
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    } finally {
      await fastCors.close();
      await yogaCors.close();
    }
  });
});
