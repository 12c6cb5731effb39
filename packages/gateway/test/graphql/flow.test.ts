/**
 * The whole product path over HTTP against the local service: uploadFile (multipart) → createFineTuningJob →
 * poll fineTuningJob to SUCCEEDED, then every field of the job, its files, events, checkpoints and metrics,
 * compared with what the REST API itself returns. Also pause/resume/cancel and file deletion.
 */
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatExamples, dpoJsonl, startEmulator, toJsonl, trainingJsonl, type RunningEmulator, waitFor } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';

const KEY = 'sk-test-flow-0123456789';
let emu: RunningEmulator;
let api: ApiHandle;
let rest: OpenAI;

beforeAll(async () => {
  emu = await startEmulator({ stepMs: 10 });
  api = await startApi({ baseURL: emu.baseURL, apiKey: KEY });
  rest = emu.client(KEY);
});

afterAll(async () => {
  // No response and no log line ever carries the key or the upstream's address.
  const host = emu.url.replace('http://', '');
  for (const text of [...api.bodies, api.logs()]) {
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(host);
  }
  await api.close();
  await emu.close();
});

const iso = (s: number | null | undefined) => (s == null ? null : new Date(s * 1000).toISOString());

const JOB_FIELDS = `
  __typename id createdAt finishedAt estimatedFinish status rawStatus model fineTunedModel organizationId userProvidedSuffix
  trainingFileId trainingFile { id filename bytes purpose rawPurpose createdAt expiresAt }
  validationFileId validationFile { id filename bytes purpose }
  resultFileIds resultFiles { id filename purpose rawPurpose bytes }
  hyperparameters { nEpochs batchSize learningRateMultiplier beta }
  method { type rawType supervised { hyperparameters { nEpochs batchSize learningRateMultiplier } } dpo { hyperparameters { beta } } reinforcement }
  error { code message param }
  metadata
  integrations { type wandb { project name entity tags } }
  seed trainedTokens
`;

async function uploadJsonl(content: string, name: string): Promise<{ id: string; bytes: number }> {
  const r = await api.upload(content, name, 'FINE_TUNE');
  expect(r.errors).toBeUndefined();
  expect(r.data.uploadFile.__typename).toBe('UploadFileSuccess');
  return r.data.uploadFile.file;
}

async function createJob(input: Record<string, unknown>) {
  const r = await api.gql(
    `mutation($input: CreateFineTuningJobInput!) {
      createFineTuningJob(input: $input) {
        __typename
        ... on CreateFineTuningJobSuccess { job { ${JOB_FIELDS} } }
        ... on ValidationError { message field }
        ... on Error { message }
      }
    }`,
    { input },
  );
  expect(r.errors).toBeUndefined();
  return r.data.createFineTuningJob;
}

async function jobStatus(id: string): Promise<string> {
  const r = await api.gql('query($id: ID!) { fineTuningJob(id: $id) { status } }', { id });
  expect(r.errors).toBeUndefined();
  return r.data.fineTuningJob.status;
}

/** Every page of a job connection field, `size` at a time. */
async function walk(id: string, field: 'events' | 'checkpoints', size: number, nodeFields: string) {
  const nodes: any[] = [];
  const pages: any[] = [];
  let after: string | null = null;
  for (;;) {
    const r: any = await api.gql(
      `query($id: ID!, $first: Int, $after: String) { fineTuningJob(id: $id) { ${field}(first: $first, after: $after) {
        edges { cursor node { ${nodeFields} } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }`,
      { id, first: size, after },
    );
    expect(r.errors).toBeUndefined();
    const conn = r.data.fineTuningJob[field];
    pages.push(conn.pageInfo);
    for (const e of conn.edges) {
      expect(e.cursor).toBe(e.node.id);
      nodes.push(e.node);
    }
    if (!conn.pageInfo.hasNextPage) return { nodes, pages };
    after = conn.pageInfo.endCursor;
  }
}

describe('upload → create → follow to SUCCEEDED', () => {
  let jobId: string;
  let trainingFile: { id: string; bytes: number };
  let validationFile: { id: string; bytes: number };
  const training = trainingJsonl(20);

  it('uploads training and validation files through the multipart request spec', async () => {
    const r = await api.upload(training, 'train.jsonl');
    expect(r.errors).toBeUndefined();
    const file = r.data.uploadFile.file;
    expect(r.data.uploadFile.__typename).toBe('UploadFileSuccess');
    expect(file).toMatchObject({ filename: 'train.jsonl', bytes: Buffer.byteLength(training), purpose: 'FINE_TUNE', rawPurpose: 'fine-tune' });
    expect(file.id).toMatch(/^file-/);
    const stored = await rest.files.retrieve(file.id);
    expect(file.createdAt).toBe(iso(stored.created_at));
    expect(file.expiresAt).toBe(iso(stored.expires_at));
    expect(await (await rest.files.content(file.id)).text()).toBe(training);
    trainingFile = file;
    validationFile = await uploadJsonl(toJsonl(chatExamples(12, 40)), 'valid.jsonl');
  });

  it('creates a job with every input field', async () => {
    const before = emu.requests.length;
    const result = await createJob({
      model: 'gpt-4o-mini-2024-07-18',
      trainingFile: trainingFile.id,
      validationFile: validationFile.id,
      method: { type: 'SUPERVISED', supervised: { hyperparameters: { nEpochs: 2, batchSize: 4, learningRateMultiplier: 1.5 } } },
      suffix: 'flow-test',
      seed: 42,
      metadata: { team: 'graphql', run: '1' },
      idempotencyKey: 'flow-create-1',
    });
    expect(result.__typename).toBe('CreateFineTuningJobSuccess');
    const job = result.job;
    jobId = job.id;
    expect(job).toMatchObject({
      __typename: 'FineTuningJob',
      model: 'gpt-4o-mini-2024-07-18',
      userProvidedSuffix: 'flow-test',
      seed: 42,
      metadata: { team: 'graphql', run: '1' },
      trainingFileId: trainingFile.id,
      validationFileId: validationFile.id,
      trainingFile: { id: trainingFile.id, filename: 'train.jsonl', purpose: 'FINE_TUNE' },
      validationFile: { id: validationFile.id, filename: 'valid.jsonl' },
      finishedAt: null,
      fineTunedModel: null,
      trainedTokens: null,
      error: null,
      resultFiles: [],
      method: {
        type: 'SUPERVISED',
        rawType: 'supervised',
        supervised: { hyperparameters: { nEpochs: 2, batchSize: 4, learningRateMultiplier: 1.5 } },
        dpo: null,
      },
    });
    expect(['VALIDATING_FILES', 'QUEUED', 'RUNNING']).toContain(job.status);
    // One create (after the lookup of its idempotency key), then one retrieve per file (training, validation); the
    // job itself came with the create.
    expect(
      emu.requests
        .slice(before)
        .map((r) => r.route)
        .sort(),
    ).toEqual(
      // The list is the idempotency key's lookup: a key this process does not know may have been used before it.
      ['GET /v1/files/:id', 'GET /v1/files/:id', 'GET /v1/fine_tuning/jobs', 'POST /v1/fine_tuning/jobs'].sort(),
    );

    // The same idempotency key returns the same job and creates nothing.
    const again = await createJob({
      model: 'gpt-4o-mini-2024-07-18',
      trainingFile: trainingFile.id,
      validationFile: validationFile.id,
      method: { type: 'SUPERVISED', supervised: { hyperparameters: { nEpochs: 2, batchSize: 4, learningRateMultiplier: 1.5 } } },
      suffix: 'flow-test',
      seed: 42,
      metadata: { team: 'graphql', run: '1' },
      idempotencyKey: 'flow-create-1',
    });
    expect(again.job.id).toBe(jobId);
    const all = await rest.fineTuning.jobs.list({ limit: 100 });
    expect(all.data.filter((j) => j.id === jobId)).toHaveLength(1);
  });

  it('is followed to SUCCEEDED by polling fineTuningJob', async () => {
    const seen = new Set<string>();
    await waitFor(
      async () => {
        const s = await jobStatus(jobId);
        seen.add(s);
        return s === 'SUCCEEDED' || s === 'FAILED' ? s : undefined;
      },
      30_000,
      20,
    );
    expect(await jobStatus(jobId)).toBe('SUCCEEDED');
    expect(seen.size).toBeGreaterThan(1);
  });

  it('has every field of the REST job, in camelCase, with ISO-8601 dates', async () => {
    const r = await api.gql(`query($id: ID!) { fineTuningJob(id: $id) { ${JOB_FIELDS} } }`, { id: jobId });
    expect(r.errors).toBeUndefined();
    const job = r.data.fineTuningJob;
    const raw = (await rest.fineTuning.jobs.retrieve(jobId)) as any;
    expect(job).toMatchObject({
      id: raw.id,
      createdAt: iso(raw.created_at),
      finishedAt: iso(raw.finished_at),
      estimatedFinish: iso(raw.estimated_finish),
      status: 'SUCCEEDED',
      rawStatus: 'succeeded',
      model: raw.model,
      fineTunedModel: raw.fine_tuned_model,
      organizationId: raw.organization_id,
      userProvidedSuffix: raw.user_provided_suffix,
      trainingFileId: raw.training_file,
      validationFileId: raw.validation_file,
      resultFileIds: raw.result_files,
      hyperparameters: {
        nEpochs: raw.hyperparameters.n_epochs,
        batchSize: raw.hyperparameters.batch_size,
        learningRateMultiplier: raw.hyperparameters.learning_rate_multiplier,
        beta: null,
      },
      error: null,
      metadata: raw.metadata,
      integrations: raw.integrations,
      seed: raw.seed,
      trainedTokens: raw.trained_tokens,
    });
    expect(job.fineTunedModel).toMatch(/^ft:gpt-4o-mini-2024-07-18:.*:flow-test:/);
    expect(job.trainedTokens).toBeGreaterThan(0);
    expect(job.resultFiles).toHaveLength(1);
    expect(job.resultFiles[0]).toMatchObject({ id: raw.result_files[0], purpose: 'FINE_TUNE_RESULTS', rawPurpose: 'fine-tune-results' });
    expect(new Date(job.finishedAt).getTime()).toBeGreaterThanOrEqual(new Date(job.createdAt).getTime());
  });

  it('walks every event page (first/after) in the REST order, each once', async () => {
    const restEvents: any[] = [];
    for await (const e of rest.fineTuning.jobs.listEvents(jobId, { limit: 100 })) restEvents.push(e);
    const { nodes, pages } = await walk(jobId, 'events', 7, 'id createdAt level message type data');
    expect(nodes.map((n) => n.id)).toEqual(restEvents.map((e) => e.id));
    expect(new Set(nodes.map((n) => n.id)).size).toBe(nodes.length);
    expect(pages[0].hasPreviousPage).toBe(false);
    expect(pages.slice(1).every((p) => p.hasPreviousPage)).toBe(true);
    expect(pages.length).toBe(Math.ceil(restEvents.length / 7));
    for (const [i, n] of nodes.entries()) {
      const e = restEvents[i];
      expect(n).toEqual({
        id: e.id,
        createdAt: iso(e.created_at),
        level: e.level.toUpperCase(),
        message: e.message,
        type: e.type.toUpperCase(),
        data: e.data,
      });
    }
    const messages = nodes.map((n) => n.message).reverse();
    expect(messages[0]).toMatch(/^Created fine-tuning job/);
    expect(messages.at(-1)).toBe('The job has successfully completed');
  });

  it('lists checkpoints with their metrics', async () => {
    const restCkpts = (await rest.fineTuning.jobs.checkpoints.list(jobId, { limit: 100 })).data as any[];
    const { nodes } = await walk(
      jobId,
      'checkpoints',
      2,
      'id createdAt fineTunedModelCheckpoint stepNumber fineTuningJobId job { id status } metrics { step trainLoss trainMeanTokenAccuracy validLoss validMeanTokenAccuracy fullValidLoss fullValidMeanTokenAccuracy }',
    );
    expect(restCkpts.length).toBeGreaterThan(0);
    expect(nodes.map((n) => n.id)).toEqual(restCkpts.map((c) => c.id));
    for (const [i, n] of nodes.entries()) {
      const c = restCkpts[i];
      expect(n).toEqual({
        id: c.id,
        createdAt: iso(c.created_at),
        fineTunedModelCheckpoint: c.fine_tuned_model_checkpoint,
        stepNumber: c.step_number,
        fineTuningJobId: jobId,
        job: { id: jobId, status: 'SUCCEEDED' },
        metrics: {
          step: c.metrics.step ?? null,
          trainLoss: c.metrics.train_loss ?? null,
          trainMeanTokenAccuracy: c.metrics.train_mean_token_accuracy ?? null,
          validLoss: c.metrics.valid_loss ?? null,
          validMeanTokenAccuracy: c.metrics.valid_mean_token_accuracy ?? null,
          fullValidLoss: c.metrics.full_valid_loss ?? null,
          fullValidMeanTokenAccuracy: c.metrics.full_valid_mean_token_accuracy ?? null,
        },
      });
    }
  });

  it('gives the training curve (metrics) equal to the metrics events, oldest first, with one upstream call', async () => {
    const restEvents: any[] = [];
    for await (const e of rest.fineTuning.jobs.listEvents(jobId, { limit: 100 })) restEvents.push(e);
    const steps = restEvents
      .filter((e) => e.type === 'metrics')
      .reverse()
      .map((e) => e.data);
    // A fresh server, so that nothing is cached yet: the curve of a succeeded job costs one call (its CSV).
    const fresh = await startApi({ baseURL: emu.baseURL, apiKey: KEY });
    try {
      const before = emu.requests.length;
      const r = await fresh.gql(
        'query($id: ID!) { fineTuningJob(id: $id) { metrics { step trainLoss trainMeanTokenAccuracy validLoss validMeanTokenAccuracy fullValidLoss fullValidMeanTokenAccuracy } } }',
        { id: jobId },
      );
      expect(r.errors).toBeUndefined();
      expect(emu.requests.slice(before).map((x) => x.route)).toEqual(['GET /v1/fine_tuning/jobs/:id', 'GET /v1/files/:id/content']);
      const metrics = r.data.fineTuningJob.metrics;
      expect(metrics.map((m: any) => m.step)).toEqual(steps.map((d: any) => d.step));
      expect(metrics.length).toBe(steps[0].total_steps);
      for (const [i, m] of metrics.entries()) {
        const d = steps[i];
        expect(m.trainLoss).toBeCloseTo(d.train_loss, 9);
        expect(m.trainMeanTokenAccuracy).toBeCloseTo(d.train_mean_token_accuracy, 9);
        expect(m.validLoss).toBeCloseTo(d.valid_loss, 9);
        expect(m.validMeanTokenAccuracy).toBeCloseTo(d.valid_mean_token_accuracy, 9);
      }
      // Finished: asked again, nothing goes upstream.
      const again = emu.requests.length;
      const r2 = await fresh.gql('query($id: ID!) { fineTuningJob(id: $id) { status metrics { step trainLoss } } }', { id: jobId });
      expect(r2.data.fineTuningJob.metrics).toHaveLength(metrics.length);
      expect(emu.requests.length).toBe(again);
    } finally {
      await fresh.close();
    }
  });
});

describe('DPO', () => {
  it('creates a DPO job and reports its method and beta', async () => {
    const file = await uploadJsonl(dpoJsonl(12), 'prefs.jsonl');
    const created = await createJob({
      model: 'gpt-4o-mini-2024-07-18',
      trainingFile: file.id,
      method: { type: 'DPO', dpo: { hyperparameters: { beta: 0.25, nEpochs: 1 } } },
    });
    expect(created.__typename).toBe('CreateFineTuningJobSuccess');
    expect(created.job.method).toMatchObject({ type: 'DPO', rawType: 'dpo', supervised: null, dpo: { hyperparameters: { beta: 0.25 } } });
    const raw = (await rest.fineTuning.jobs.retrieve(created.job.id)) as any;
    expect(raw.method.type).toBe('dpo');
    expect(raw.method.dpo.hyperparameters.beta).toBe(0.25);
    await waitFor(async () => ['SUCCEEDED', 'FAILED'].includes(await jobStatus(created.job.id)), 30_000, 20);
    const r = await api.gql(
      'query($id: ID!) { fineTuningJob(id: $id) { status error { code message param } method { dpo { hyperparameters { beta nEpochs } } } } }',
      { id: created.job.id },
    );
    expect(r.data.fineTuningJob).toMatchObject({ status: 'SUCCEEDED', error: null, method: { dpo: { hyperparameters: { beta: 0.25, nEpochs: 1 } } } });
  });
});

describe('a job that fails', () => {
  it('reports FAILED with error { code message param }', async () => {
    // Fewer than 10 examples: the upstream fails the job during validation.
    const file = await uploadJsonl(trainingJsonl(4), 'tiny.jsonl');
    const created = await createJob({ model: 'gpt-4o-mini-2024-07-18', trainingFile: file.id });
    const id = created.job.id;
    await waitFor(async () => (await jobStatus(id)) === 'FAILED', 30_000, 20);
    const r = await api.gql(
      'query($id: ID!) { fineTuningJob(id: $id) { status finishedAt error { code message param } metrics { step } resultFiles { id } } }',
      { id },
    );
    const raw = (await rest.fineTuning.jobs.retrieve(id)) as any;
    expect(r.data.fineTuningJob).toEqual({
      status: 'FAILED',
      finishedAt: iso(raw.finished_at),
      error: { code: raw.error.code, message: raw.error.message, param: raw.error.param },
      metrics: [],
      resultFiles: [],
    });
    expect(raw.error.param).toBe('training_file');
  });
});

describe('pause, resume, cancel; metrics of a live job from its events', () => {
  it('pauses a running job, reads its curve from the events, resumes it, and cancels another', async () => {
    const file = await uploadJsonl(trainingJsonl(30, 100), 'long.jsonl');
    const created = await createJob({
      model: 'gpt-4o-mini-2024-07-18',
      trainingFile: file.id,
      method: { type: 'SUPERVISED', supervised: { hyperparameters: { nEpochs: 12, batchSize: 1 } } },
    });
    const id = created.job.id;
    await waitFor(
      async () => {
        const r = await api.gql('query($id: ID!) { fineTuningJob(id: $id) { status metrics { step } } }', { id });
        return r.data.fineTuningJob.status === 'RUNNING' && r.data.fineTuningJob.metrics.length >= 3;
      },
      20_000,
      5,
    );

    const paused = await api.gql(
      `mutation($id: ID!) { pauseFineTuningJob(id: $id) { __typename ... on PauseFineTuningJobSuccess { job { id status rawStatus } } ... on Error { message } } }`,
      { id },
    );
    expect(paused.data.pauseFineTuningJob).toEqual({ __typename: 'PauseFineTuningJobSuccess', job: { id, status: 'PAUSED', rawStatus: 'paused' } });

    // While paused nothing moves: the curve from the events equals the REST metrics events.
    const restEvents: any[] = [];
    for await (const e of rest.fineTuning.jobs.listEvents(id, { limit: 100 })) restEvents.push(e);
    const steps = restEvents
      .filter((e) => e.type === 'metrics')
      .reverse()
      .map((e) => e.data);
    const before = emu.requests.length;
    const r = await api.gql(
      'query($id: ID!) { fineTuningJob(id: $id) { status metrics { step trainLoss trainMeanTokenAccuracy } events(first: 100) { edges { node { id } } } } }',
      { id },
    );
    expect(r.data.fineTuningJob.status).toBe('PAUSED');
    expect(r.data.fineTuningJob.metrics).toEqual(
      steps.map((d: any) => ({ step: d.step, trainLoss: d.train_loss, trainMeanTokenAccuracy: d.train_mean_token_accuracy })),
    );
    // The metrics and events(first: 100) share the events pages: one retrieve + ceil(events/100) pages.
    const routes = emu.requests.slice(before).map((x) => x.route);
    expect(routes.filter((x) => x === 'GET /v1/fine_tuning/jobs/:id')).toHaveLength(1);
    expect(routes.filter((x) => x === 'GET /v1/fine_tuning/jobs/:id/events')).toHaveLength(Math.ceil(restEvents.length / 100));

    // Pausing again is a conflict (data, not a top-level error).
    const again = await api.gql(`mutation($id: ID!) { pauseFineTuningJob(id: $id) { __typename ... on Error { message } } }`, { id });
    expect(again.errors).toBeUndefined();
    expect(again.data.pauseFineTuningJob.__typename).toBe('ConflictError');

    const resumed = await api.gql(
      `mutation($id: ID!) { resumeFineTuningJob(id: $id) { __typename ... on ResumeFineTuningJobSuccess { job { id status } } } }`,
      { id },
    );
    expect(resumed.data.resumeFineTuningJob.__typename).toBe('ResumeFineTuningJobSuccess');
    expect(['QUEUED', 'RUNNING']).toContain(resumed.data.resumeFineTuningJob.job.status);

    const cancelled = await api.gql(
      `mutation($id: ID!) { cancelFineTuningJob(id: $id) { __typename ... on CancelFineTuningJobSuccess { job { id status finishedAt } } } }`,
      { id },
    );
    expect(cancelled.data.cancelFineTuningJob.job).toMatchObject({ id, status: 'CANCELLED' });
    expect((await rest.fineTuning.jobs.retrieve(id)).status).toBe('cancelled');

    const twice = await api.gql(`mutation($id: ID!) { cancelFineTuningJob(id: $id) { __typename ... on ConflictError { message } } }`, { id });
    expect(twice.data.cancelFineTuningJob.__typename).toBe('ConflictError');
    expect(twice.data.cancelFineTuningJob.message).toMatch(/cancel/i);
  });

  it('resume of a job that is not paused, and cancel of an unknown job, are typed errors', async () => {
    const unknown = await api.gql(`mutation { cancelFineTuningJob(id: "ftjob-doesnotexist000000000000") { __typename ... on Error { message } } }`);
    expect(unknown.errors).toBeUndefined();
    expect(unknown.data.cancelFineTuningJob.__typename).toBe('NotFoundError');
    const bad = await api.gql(`mutation { resumeFineTuningJob(id: "file-abc") { __typename ... on ValidationError { field message } } }`);
    expect(bad.data.resumeFineTuningJob).toMatchObject({ __typename: 'ValidationError', field: 'id' });
  });
});

describe('files', () => {
  it('lists files (forward pages, purpose filter) and deletes one', async () => {
    const a = await uploadJsonl(trainingJsonl(10, 500), 'a.jsonl');
    const b = await uploadJsonl(trainingJsonl(10, 600), 'b.jsonl');
    const restFiles = (await rest.files.list({ limit: 100 })).data;
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const r: any = await api.gql(
        'query($after: String) { files(first: 2, after: $after) { edges { cursor node { id filename purpose } } pageInfo { hasNextPage endCursor hasPreviousPage } } }',
        { after },
      );
      expect(r.errors).toBeUndefined();
      seen.push(...r.data.files.edges.map((e: any) => e.node.id));
      expect(r.data.files.pageInfo.hasPreviousPage).toBe(after !== null);
      if (!r.data.files.pageInfo.hasNextPage) break;
      after = r.data.files.pageInfo.endCursor;
    }
    expect(seen).toEqual(restFiles.map((f) => f.id));
    const results = await api.gql('{ files(first: 100, purpose: FINE_TUNE_RESULTS) { edges { node { id purpose } } } }');
    expect(results.data.files.edges.length).toBeGreaterThan(0);
    expect(results.data.files.edges.every((e: any) => e.node.purpose === 'FINE_TUNE_RESULTS')).toBe(true);

    const del = await api.gql('mutation($id: ID!) { deleteFile(id: $id) { __typename ... on DeleteFileSuccess { id deleted } ... on Error { message } } }', {
      id: a.id,
    });
    expect(del.data.deleteFile).toEqual({ __typename: 'DeleteFileSuccess', id: a.id, deleted: true });
    const gone = await api.gql('query($id: ID!) { file(id: $id) { id } }', { id: a.id });
    expect(gone.data.file).toBeNull();
    expect(gone.errors![0]!.extensions!.code).toBe('NOT_FOUND');
    const delAgain = await api.gql('mutation($id: ID!) { deleteFile(id: $id) { __typename ... on Error { message } } }', { id: a.id });
    expect(delAgain.data.deleteFile.__typename).toBe('NotFoundError');
    const stillThere = await api.gql('query($id: ID!) { file(id: $id) { id filename bytes } }', { id: b.id });
    expect(stillThere.data.file).toEqual({ id: b.id, filename: 'b.jsonl', bytes: b.bytes });
  });

  it('rejects an upload purpose that cannot be uploaded, before any upstream call', async () => {
    const before = emu.requests.length;
    const r = await api.upload(trainingJsonl(10), 'x.jsonl', 'FINE_TUNE_RESULTS');
    expect(r.data.uploadFile).toMatchObject({ __typename: 'ValidationError', field: 'purpose' });
    expect(emu.requests.length).toBe(before);
  });
});
