/**
 * Tenant isolation in AUTH_MODE=passthrough with two tenants of the local service (each key is its own
 * organisation there). Alice first warms every cache the server has — the finished-job cache, the node()
 * index of events and checkpoints, the upstream client per credential, a live poller — then Bob asks for
 * her objects by id through every entry point: queries, node(), nodes(), mutations, idempotency keys and
 * subscriptions (graphql-ws and SSE). Bob never gets Alice's data, and his requests reach the upstream
 * under his own organisation instead of being answered from her cache entries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, trainingJsonl, type RunningEmulator, waitFor } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';
import { sse, wsOperation, wsSession } from './helpers.js';

const ALICE = 'sk-tenant-alice-0123456789';
const BOB = 'sk-tenant-bob-0123456789abc';
const MODEL = 'gpt-4o-mini-2024-07-18';

let emu: RunningEmulator;
let api: ApiHandle;

const alice = {
  jobId: '',
  pausedJobId: '',
  fileId: '',
  eventId: '',
  checkpointId: '',
  org: '',
};

const CREATE = `mutation($input: CreateFineTuningJobInput!) {
  createFineTuningJob(input: $input) { __typename ... on CreateFineTuningJobSuccess { job { id organizationId status } } ... on Error { message } ... on ValidationError { field } }
}`;

const as = (token: string) => ({ token });

async function create(token: string, input: Record<string, unknown>) {
  const r = await api.gql(CREATE, { input: { model: MODEL, ...input } }, as(token));
  return r.data.createFineTuningJob;
}

beforeAll(async () => {
  emu = await startEmulator({ stepMs: 5 });
  api = await startApi({ baseURL: emu.baseURL, apiKey: 'sk-server-key-not-used-01', env: { AUTH_MODE: 'passthrough' } });

  const up = await api.upload(trainingJsonl(12), 'alice.jsonl', 'FINE_TUNE', as(ALICE));
  alice.fileId = up.data.uploadFile.file.id;
  const created = await create(ALICE, { trainingFile: alice.fileId, hyperparameters: { nEpochs: 2 }, idempotencyKey: 'same-key-for-both' });
  expect(created.__typename).toBe('CreateFineTuningJobSuccess');
  alice.jobId = created.job.id;
  alice.org = created.job.organizationId;
  await waitFor(async () => {
    const r = await api.gql('query($id: ID!) { fineTuningJob(id: $id) { status } }', { id: alice.jobId }, as(ALICE));
    return r.data?.fineTuningJob?.status === 'SUCCEEDED';
  });
  // Warm the caches: the finished job with its events, checkpoints and metrics, and the node() index.
  const full = await api.gql(
    `query($id: ID!) { fineTuningJob(id: $id) { id status events(first: 100) { edges { node { id } } } checkpoints(first: 10) { edges { node { id } } } metrics { step } trainingFile { id } } }`,
    { id: alice.jobId },
    as(ALICE),
  );
  expect(full.errors).toBeUndefined();
  alice.eventId = full.data.fineTuningJob.events.edges[0].node.id;
  alice.checkpointId = full.data.fineTuningJob.checkpoints.edges[0].node.id;
  const viaNode = await api.gql('query($ids: [ID!]!) { nodes(ids: $ids) { id } }', { ids: [alice.eventId, alice.checkpointId] }, as(ALICE));
  expect(viaNode.data.nodes.map((n: any) => n?.id)).toEqual([alice.eventId, alice.checkpointId]);

  // A second job, paused, for the live tests.
  const second = await create(ALICE, { trainingFile: alice.fileId, hyperparameters: { nEpochs: 3 } });
  alice.pausedJobId = second.job.id;
  await waitFor(async () => {
    const r = await api.gql('mutation($id: ID!) { pauseFineTuningJob(id: $id) { __typename } }', { id: alice.pausedJobId }, as(ALICE));
    return r.data?.pauseFineTuningJob?.__typename === 'PauseFineTuningJobSuccess';
  });
});

afterAll(async () => {
  await api?.close();
  await emu?.close();
});

describe("Bob cannot reach Alice's data", () => {
  it('queries by id: NOT_FOUND, answered by the upstream under his organisation, not from her cache', async () => {
    const since = emu.requests.length;
    const r = await api.gql(
      'query($job: ID!, $file: ID!) { fineTuningJob(id: $job) { id status } file(id: $file) { id filename } }',
      { job: alice.jobId, file: alice.fileId },
      as(BOB),
    );
    expect(r.data).toEqual({ fineTuningJob: null, file: null });
    expect(r.errors!.map((e) => [e.path?.join('.'), e.extensions!.code]).sort()).toEqual([
      ['file', 'NOT_FOUND'],
      ['fineTuningJob', 'NOT_FOUND'],
    ]);
    const bobCalls = emu.requests.slice(since);
    expect(bobCalls.map((c) => c.path).sort()).toEqual([`/v1/files/${alice.fileId}`, `/v1/fine_tuning/jobs/${alice.jobId}`]);
    expect(bobCalls.every((c) => c.orgId !== alice.org && c.status === 404)).toBe(true);

    // Alice's own repeat is served from her finished-job cache: no upstream call for the job.
    const again = emu.requests.length;
    const mine = await api.gql('query($id: ID!) { fineTuningJob(id: $id) { id status } }', { id: alice.jobId }, as(ALICE));
    expect(mine.data.fineTuningJob).toEqual({ id: alice.jobId, status: 'SUCCEEDED' });
    expect(emu.requests.slice(again).filter((c) => c.path === `/v1/fine_tuning/jobs/${alice.jobId}`)).toEqual([]);
  });

  it('lists are his own (empty)', async () => {
    const r = await api.gql('{ fineTuningJobs(first: 100) { edges { node { id } } } files(first: 100) { edges { node { id } } } }', undefined, as(BOB));
    expect(r.errors).toBeUndefined();
    expect(r.data).toEqual({ fineTuningJobs: { edges: [] }, files: { edges: [] } });
    const hers = await api.gql('{ fineTuningJobs(first: 100) { edges { node { id } } } }', undefined, as(ALICE));
    expect(hers.data.fineTuningJobs.edges.map((e: any) => e.node.id).sort()).toEqual([alice.jobId, alice.pausedJobId].sort());
  });

  it('node() and nodes(): every prefix, including the events and checkpoints Alice has indexed', async () => {
    const ids = [alice.jobId, alice.eventId, alice.checkpointId, alice.fileId];
    for (const id of ids) {
      const r = await api.gql('query($id: ID!) { node(id: $id) { id } }', { id }, as(BOB));
      expect(r.data.node, id).toBeNull();
      expect(r.errors![0]!.extensions!.code, id).toBe('NOT_FOUND');
    }
    const many = await api.gql('query($ids: [ID!]!) { nodes(ids: $ids) { id } }', { ids }, as(BOB));
    expect(many.data.nodes).toEqual([null, null, null, null]);
    expect(new Set(many.errors!.map((e) => e.extensions!.code))).toEqual(new Set(['NOT_FOUND']));
    // Alice still finds them.
    const hers = await api.gql('query($ids: [ID!]!) { nodes(ids: $ids) { id } }', { ids }, as(ALICE));
    expect(hers.data.nodes.map((n: any) => n?.id)).toEqual(ids);
  });

  it('mutations on her job and file: NotFoundError, and nothing of hers changes', async () => {
    for (const action of ['cancelFineTuningJob', 'pauseFineTuningJob', 'resumeFineTuningJob']) {
      const r = await api.gql(`mutation($id: ID!) { ${action}(id: $id) { __typename ... on Error { message } } }`, { id: alice.pausedJobId }, as(BOB));
      expect(r.data[action].__typename, action).toBe('NotFoundError');
    }
    const del = await api.gql('mutation($id: ID!) { deleteFile(id: $id) { __typename } }', { id: alice.fileId }, as(BOB));
    expect(del.data.deleteFile.__typename).toBe('NotFoundError');
    const withHerFile = await create(BOB, { trainingFile: alice.fileId });
    expect(withHerFile.__typename).toBe('ValidationError');
    expect(withHerFile.field).toBe('input.trainingFile');

    const hers = await api.gql(
      'query($job: ID!, $file: ID!) { fineTuningJob(id: $job) { status } file(id: $file) { id } }',
      { job: alice.pausedJobId, file: alice.fileId },
      as(ALICE),
    );
    expect(hers.data).toEqual({ fineTuningJob: { status: 'PAUSED' }, file: { id: alice.fileId } });
  });

  it("the same idempotency key makes Bob his own job, not a replay of Alice's", async () => {
    const up = await api.upload(trainingJsonl(12), 'bob.jsonl', 'FINE_TUNE', as(BOB));
    const bobFile = up.data.uploadFile.file.id as string;
    const bobJob = await create(BOB, { trainingFile: bobFile, hyperparameters: { nEpochs: 2 }, idempotencyKey: 'same-key-for-both' });
    expect(bobJob.__typename).toBe('CreateFineTuningJobSuccess');
    expect(bobJob.job.id).not.toBe(alice.jobId);
    expect(bobJob.job.organizationId).not.toBe(alice.org);
    const again = await create(BOB, { trainingFile: bobFile, hyperparameters: { nEpochs: 2 }, idempotencyKey: 'same-key-for-both' });
    expect(again.job.id).toBe(bobJob.job.id);
    const list = await api.gql('{ fineTuningJobs(first: 100) { edges { node { id } } } }', undefined, as(BOB));
    expect(list.data.fineTuningJobs.edges.map((e: any) => e.node.id)).toEqual([bobJob.job.id]);
  });

  it('subscriptions to her job: NOT_FOUND over graphql-ws and SSE, while her own subscription goes on', async () => {
    const herSocket = wsSession(api.url, { authorization: `Bearer ${ALICE}` });
    const hisSocket = wsSession(api.url, { authorization: `Bearer ${BOB}` });
    try {
      const herUpdates: any[] = [];
      let herDone!: () => void;
      const herFinished = new Promise<void>((r) => (herDone = r));
      herSocket.client.subscribe(
        { query: 'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id status } }', variables: { id: alice.pausedJobId } },
        { next: (r) => herUpdates.push(r), error: (e) => (herUpdates.push({ error: e }), herDone()), complete: () => herDone() },
      );
      await waitFor(() => herUpdates.length > 0);
      expect(herUpdates[0].data.fineTuningJobUpdated).toEqual({ id: alice.pausedJobId, status: 'PAUSED' });

      // Bob subscribes to the same job while her poller runs: a poller of his own, which the upstream refuses.
      const since = emu.requests.length;
      for (const query of [
        'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id status } }',
        'subscription($id: ID!) { fineTuningJobEvents(jobId: $id) { id message } }',
      ]) {
        const ws = await wsOperation(hisSocket.client, query, { id: alice.pausedJobId });
        expect(
          ws.results.flatMap((r) => r.errors ?? []).map((e: any) => e.extensions?.code),
          query,
        ).toEqual(['NOT_FOUND']);
        expect(
          ws.results.some((r) => r.data && Object.values(r.data).some((v) => v !== null)),
          query,
        ).toBe(false);
        const overSse = await sse(api.url, query, { id: alice.pausedJobId }, { token: BOB });
        expect(
          overSse.events.flatMap((e) => e.errors ?? []).map((e: any) => e.extensions?.code),
          query,
        ).toEqual(['NOT_FOUND']);
        expect(overSse.events.some((e) => e.data && Object.values(e.data).some((v) => v !== null))).toBe(false);
      }
      // His pollers asked the upstream under his own organisation and were refused; none was served from hers.
      const his = emu.requests.slice(since).filter((c) => c.orgId !== alice.org && c.path.startsWith(`/v1/fine_tuning/jobs/${alice.pausedJobId}`));
      expect(his.length).toBeGreaterThanOrEqual(4);
      expect(his.every((c) => c.status === 404)).toBe(true);

      // Her resume reaches her subscription, which follows the job to the end; Bob received nothing of it.
      const resumed = await api.gql('mutation($id: ID!) { resumeFineTuningJob(id: $id) { __typename } }', { id: alice.pausedJobId }, as(ALICE));
      expect(resumed.data.resumeFineTuningJob.__typename).toBe('ResumeFineTuningJobSuccess');
      await herFinished;
      const statuses = herUpdates.map((u) => u.data?.fineTuningJobUpdated?.status);
      expect(statuses[0]).toBe('PAUSED');
      expect(statuses.at(-1)).toBe('SUCCEEDED');
      expect(herUpdates.every((u) => u.data?.fineTuningJobUpdated?.id === alice.pausedJobId)).toBe(true);
    } finally {
      await herSocket.dispose();
      await hisSocket.dispose();
    }
  });
});
