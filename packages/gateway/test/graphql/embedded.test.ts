/**
 * The default set-up of a new user: no key, no upstream configured. The server runs the local fine-tuning
 * service itself (mounted at /v1, called in-process by the GraphQL layer), serves GraphiQL with the example
 * operations, and uploadFile → createFineTuningJob → fineTuningJob works through to SUCCEEDED.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/app.js';
import { LOCAL_API_KEY, loadConfig } from '../../src/config.js';
import { trainingJsonl, waitFor } from '@finetune-graphql/emulator/testing';

let server: RunningServer;

beforeAll(async () => {
  server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', EMULATOR_DB: ':memory:', EMULATOR_STEP_MS: '5', LOG_LEVEL: 'silent' }));
});
afterAll(async () => {
  await server?.close();
});

async function gql(query: string, variables?: Record<string, unknown>) {
  const res = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as { data?: any; errors?: any[] };
}

describe('embedded local service (no configuration)', () => {
  it('says which backend it uses, without any key', () => {
    expect(server.startupLine).toContain(`${server.url}/graphql`);
    expect(server.startupLine).toMatch(/embedded local fine-tuning service/);
    expect(server.startupLine).toMatch(/auth: none/);
    expect(server.startupLine).not.toContain(LOCAL_API_KEY);
  });

  it('serves GraphiQL with the example operations, /health and /ready', async () => {
    const page = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Fine-tuning GraphQL API');
    expect(html).toContain('createFineTuningJob');
    expect(html).toContain('FollowJob');
    const root = await fetch(`${server.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/graphql');
    expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${server.url}/ready`)).json()).toEqual({ status: 'ready' });
  });

  it('mounts the REST service at /v1 for the documented local key', async () => {
    const rest = new OpenAI({ apiKey: LOCAL_API_KEY, baseURL: `${server.url}/v1`, maxRetries: 0 });
    const page = await rest.fineTuning.jobs.list({ limit: 1 });
    expect(Array.isArray(page.data)).toBe(true);
  });

  it('uploadFile → createFineTuningJob → fineTuningJob to SUCCEEDED, with events and metrics', async () => {
    const form = new FormData();
    form.set(
      'operations',
      JSON.stringify({
        query: 'mutation($file: Upload!) { uploadFile(file: $file, purpose: FINE_TUNE) { ... on UploadFileSuccess { file { id } } ... on Error { message } } }',
        variables: { file: null },
      }),
    );
    form.set('map', JSON.stringify({ 0: ['variables.file'] }));
    form.set('0', new Blob([trainingJsonl(12)]), 'train.jsonl');
    const up = (await (await fetch(`${server.url}/graphql`, { method: 'POST', body: form })).json()) as any;
    const fileId = up.data.uploadFile.file.id as string;
    expect(fileId).toMatch(/^file-/);

    const created = await gql(
      'mutation($f: ID!) { createFineTuningJob(input: { model: "gpt-4o-mini-2024-07-18", trainingFile: $f, method: { type: SUPERVISED, supervised: { hyperparameters: { nEpochs: 2 } } } }) { __typename ... on CreateFineTuningJobSuccess { job { id status } } ... on Error { message } } }',
      { f: fileId },
    );
    expect(created.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
    const id = created.data.createFineTuningJob.job.id as string;

    const job = await waitFor(
      async () => {
        const r = await gql(
          'query($id: ID!) { fineTuningJob(id: $id) { status fineTunedModel trainedTokens events(first: 100) { edges { node { message type } } } metrics { step trainLoss } resultFiles { filename } } }',
          { id },
        );
        return r.data.fineTuningJob.status === 'SUCCEEDED' ? r.data.fineTuningJob : undefined;
      },
      30_000,
      20,
    );
    expect(job.fineTunedModel).toMatch(/^ft:gpt-4o-mini-2024-07-18:/);
    expect(job.trainedTokens).toBeGreaterThan(0);
    expect(job.events.edges.at(-1).node.message).toMatch(/^Created fine-tuning job/);
    expect(job.events.edges[0].node.message).toBe('The job has successfully completed');
    const metricEvents = job.events.edges.filter((e: any) => e.node.type === 'METRICS');
    expect(job.metrics).toHaveLength(metricEvents.length);
    expect(job.metrics.map((m: any) => m.step)).toEqual(job.metrics.map((_: unknown, i: number) => i + 1));
    expect(job.resultFiles).toEqual([{ filename: 'step_metrics.csv' }]);
  });
});
