/**
 * Failures of a real (tiny) upstream: 429 with Retry-After, 503, dropped sockets, refused connections, 403,
 * and a status the upstream added later. Each maps to a GraphQL error code; reads retry, creates do not;
 * no response or log line contains the key or the upstream's URL.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type ApiHandle, type FakeUpstream, fakeUpstream, sendJson, startApi } from '../helpers/server.js';

const KEY = 'sk-fake-upstream-secret-1234567890';
let api: ApiHandle | undefined;
let up: FakeUpstream | undefined;

afterEach(async () => {
  await api?.close();
  await up?.close();
  api = undefined;
  up = undefined;
});

const JOB_QUERY = 'query($id: ID!) { fineTuningJob(id: $id) { id status rawStatus } }';

function expectNoSecrets(handle: ApiHandle, upstream: FakeUpstream) {
  const host = upstream.url.replace('http://', '');
  expect(handle.startupLine).toMatch(/OpenAI-compatible server set by OPENAI_BASE_URL/);
  for (const text of [...handle.bodies, handle.logs(), handle.startupLine]) {
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(upstream.url);
    expect(text).not.toContain(host);
  }
}

const openAiError = (message: string, type = 'invalid_request_error', param: string | null = null, code: string | null = null) => ({
  error: { message, type, param, code },
});

describe('upstream failures', () => {
  it('429 with a long Retry-After → RATE_LIMITED with extensions.retryAfter, without retrying', async () => {
    up = await fakeUpstream((_req, res) =>
      sendJson(res, 429, openAiError(`Rate limit reached for ${KEY} on https://api.example/v1, see https://platform.openai.com`, 'rate_limit_error'), {
        'retry-after': '7',
      }),
    );
    api = await startApi({ baseURL: up.baseURL, apiKey: KEY });
    const r = await api.gql(JOB_QUERY, { id: 'ftjob-abc' });
    expect(r.data).toEqual({ fineTuningJob: null });
    expect(r.errors).toHaveLength(1);
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfter: 7 });
    expect(r.errors![0]!.path).toEqual(['fineTuningJob']);
    expect(up.hits).toHaveLength(1);
    expectNoSecrets(api, up);
  });

  it('429 with a short Retry-After is retried, then reported', async () => {
    up = await fakeUpstream((_req, res) => sendJson(res, 429, openAiError('slow down', 'rate_limit_error'), { 'retry-after-ms': '20' }));
    api = await startApi({ baseURL: up.baseURL, apiKey: KEY });
    const r = await api.gql(JOB_QUERY, { id: 'ftjob-abc' });
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfter: 1 });
    expect(up.hits).toHaveLength(4); // one call + 3 retries (UPSTREAM_READ_RETRIES default)
  });

  it('503 → UPSTREAM_UNAVAILABLE after retrying a read; a create is not retried', async () => {
    up = await fakeUpstream((_req, res) => sendJson(res, 503, openAiError(`upstream ${KEY} down at https://internal.example/v1`, 'server_error')));
    api = await startApi({ baseURL: up.baseURL, apiKey: KEY });
    const r = await api.gql(JOB_QUERY, { id: 'ftjob-abc' });
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    expect(up.hits.map((h) => h.path)).toEqual(Array(4).fill('/v1/fine_tuning/jobs/ftjob-abc'));

    up.hits.length = 0;
    const c = await api.gql(`mutation { createFineTuningJob(input: { model: "gpt-4o-mini-2024-07-18", trainingFile: "file-abc" }) { __typename } }`);
    expect(c.data).toBeNull();
    expect(c.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    expect(up.hits).toEqual([{ method: 'POST', path: '/v1/fine_tuning/jobs' }]);

    // With an idempotency key the create may be retried safely: the gateway first looks for a job made with this
    // key (listed by the key's metadata tag: a key this process does not know may have been used before it started),
    // and after an ambiguous 503 looks again before sending it again; here the lookups fail too, so nothing is sent
    // twice blindly: at most one POST, every other call a lookup.
    up.hits.length = 0;
    const k = await api.gql(
      `mutation { createFineTuningJob(input: { model: "gpt-4o-mini-2024-07-18", trainingFile: "file-abc", idempotencyKey: "k-1" }) { __typename } }`,
    );
    expect(k.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    expect(up.hits.length).toBeGreaterThan(1);
    expect(up.hits.filter((h) => h.method === 'POST').length).toBeLessThanOrEqual(1);
    for (const h of up.hits.filter((h) => h.method !== 'POST')) {
      expect(h.method).toBe('GET');
      expect(h.path).toMatch(/^\/v1\/fine_tuning\/jobs\?.*gateway_idempotency_key/);
    }
    expectNoSecrets(api, up);

    // /ready reports the upstream as unavailable; /health stays up.
    const ready = await fetch(`${api.url}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: 'unavailable', code: 'UPSTREAM_UNAVAILABLE' });
    expect((await fetch(`${api.url}/health`)).status).toBe(200);
  });

  it('a dropped connection → UPSTREAM_UNAVAILABLE', async () => {
    up = await fakeUpstream((req) => req.socket.destroy());
    api = await startApi({ baseURL: up.baseURL, apiKey: KEY });
    const r = await api.gql(JOB_QUERY, { id: 'ftjob-abc' });
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    expect(r.errors![0]!.message).not.toMatch(/fetch failed|ECONN|socket/i);
    expect(up.hits.length).toBe(4);
    expectNoSecrets(api, up);
  });

  it('a refused connection → UPSTREAM_UNAVAILABLE, and the server stays up', async () => {
    // A port that was free a moment ago and has nothing listening now.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    api = await startApi({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: KEY });
    const r = await api.gql('{ fineTuningJobs(first: 1) { edges { cursor } } }');
    expect(r.data).toBeNull();
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    for (const text of [...api.bodies, api.logs()]) {
      expect(text).not.toContain(KEY);
      expect(text).not.toContain(`127.0.0.1:${port}`);
    }
    expect((await fetch(`${api.url}/health`)).status).toBe(200);
  });

  it('401 → UNAUTHENTICATED and 403 → FORBIDDEN, with messages of our own', async () => {
    let status = 401;
    up = await fakeUpstream((_req, res) =>
      sendJson(
        res,
        status,
        openAiError(
          `Incorrect API key provided: ${KEY.slice(0, 8)}***${KEY.slice(-4)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
          'invalid_request_error',
          null,
          'invalid_api_key',
        ),
      ),
    );
    api = await startApi({ baseURL: up.baseURL, apiKey: KEY });
    const r = await api.gql(JOB_QUERY, { id: 'ftjob-abc' });
    expect(r.errors![0]!.extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(r.errors![0]!.message).not.toContain(KEY.slice(0, 8));
    expect(r.errors![0]!.message).not.toContain('https://');
    status = 403;
    const f = await api.gql(JOB_QUERY, { id: 'ftjob-abc' });
    expect(f.errors![0]!.extensions).toMatchObject({ code: 'FORBIDDEN' });
    expect(up.hits).toHaveLength(2); // neither is retried
    expectNoSecrets(api, up);
  });

  it('a status the upstream adds later does not null the job (UNKNOWN + rawStatus)', async () => {
    up = await fakeUpstream((_req, res) =>
      sendJson(res, 200, {
        object: 'fine_tuning.job',
        id: 'ftjob-future',
        model: 'gpt-4o-mini-2024-07-18',
        created_at: 1721764800,
        finished_at: null,
        fine_tuned_model: null,
        organization_id: 'org-1',
        result_files: [],
        status: 'archived',
        validation_file: null,
        training_file: 'file-abc',
        hyperparameters: { n_epochs: 'auto', batch_size: 'auto', learning_rate_multiplier: 'auto' },
        trained_tokens: null,
        error: null,
        seed: 1,
        estimated_finish: null,
        integrations: [],
        method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 'auto' } } },
        metadata: null,
      }),
    );
    api = await startApi({ baseURL: up.baseURL, apiKey: KEY });
    const r = await api.gql(
      'query($id: ID!) { fineTuningJob(id: $id) { id status rawStatus hyperparameters { nEpochs batchSize learningRateMultiplier } method { type rawType } } }',
      { id: 'ftjob-future' },
    );
    expect(r.errors).toBeUndefined();
    expect(r.data.fineTuningJob).toEqual({
      id: 'ftjob-future',
      status: 'UNKNOWN',
      rawStatus: 'archived',
      hyperparameters: { nEpochs: null, batchSize: null, learningRateMultiplier: null },
      method: { type: 'SUPERVISED', rawType: 'supervised' },
    });
  });
});
