import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectApiError, type RunningEmulator, startEmulator, uploadTraining } from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';

describe('authentication', () => {
  let svc: RunningEmulator;
  beforeAll(async () => {
    svc = await startEmulator();
  });
  afterAll(() => svc.close());

  const get = (headers: Record<string, string>) => fetch(`${svc.baseURL}/fine_tuning/jobs`, { headers });

  it('no Authorization header: 401 with OpenAI\'s "You didn\'t provide an API key" message', async () => {
    for (const headers of [{}, { authorization: '' }, { authorization: 'Basic dXNlcjpwYXNz' }] as Record<string, string>[]) {
      const res = await get(headers);
      expect(res.status).toBe(401);
      const body = await res.json();
      expectMatchesSchema(body, 'Error');
      expect(body.error.type).toBe('invalid_request_error');
      expect(body.error.message).toMatch(/^You didn't provide an API key/);
    }
  });

  it('malformed keys (empty, whitespace, absurd length, control characters): 401 invalid_api_key, never echoed', async () => {
    const longKey = 'sk-' + 'a'.repeat(5000);
    for (const authorization of ['Bearer', 'Bearer  ', 'Bearer sk-a b', `Bearer ${longKey}`, 'Bearer sk-\u00e9t\u00e9']) {
      const res = await get({ authorization });
      expect(res.status, authorization.slice(0, 30)).toBe(401);
      const text = await res.text();
      const body = JSON.parse(text);
      expectMatchesSchema(body, 'Error');
      expect(body.error.code).toBe('invalid_api_key');
      expect(text).not.toContain('aaaaaaaaaa');
      expect(text).not.toContain('sk-a b');
    }
    await expectApiError(svc.client(' ').fineTuning.jobs.list(), { status: 401, code: 'invalid_api_key' });
  });

  it('401 also on unknown /v1 paths and on POSTs, and the service stays up', async () => {
    const res = await fetch(`${svc.baseURL}/nothing-here`, { method: 'POST' });
    expect(res.status).toBe(401);
    const ok = await svc.client().fineTuning.jobs.list();
    expect(ok.data).toEqual([]);
  });

  it('unknown routes with a key are a 404 in the OpenAI envelope', async () => {
    const res = await fetch(`${svc.baseURL}/nothing-here`, { headers: { authorization: 'Bearer sk-x' } });
    expect(res.status).toBe(404);
    expectMatchesSchema(await res.json(), 'Error');
  });
});

describe('tenant isolation', () => {
  let svc: RunningEmulator;
  beforeAll(async () => {
    svc = await startEmulator({ stepMs: 20 });
  });
  afterAll(() => svc.close());

  it('each key is its own organization with a stable id derived from (but not containing) the key', async () => {
    const alice = svc.client('sk-alice-secret-123');
    const bob = svc.client('sk-bob-secret-456');
    const fileA = await uploadTraining(alice);
    const fileB = await uploadTraining(bob);
    const jobA = await alice.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: fileA });
    const jobA2 = await alice.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileA });
    const jobB = await bob.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileB });
    expect(jobA.organization_id).toMatch(/^org-[A-Za-z0-9]{24}$/);
    expect(jobA2.organization_id).toBe(jobA.organization_id);
    expect(jobB.organization_id).not.toBe(jobA.organization_id);
    expect(jobA.organization_id).not.toContain('alice');

    // A second service on another database derives the same id from the same key.
    const other = await startEmulator();
    try {
      const f = await uploadTraining(other.client('sk-alice-secret-123'));
      const j = await other.client('sk-alice-secret-123').fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: f });
      expect(j.organization_id).toBe(jobA.organization_id);
    } finally {
      await other.close();
    }

    // Lists show only one's own objects.
    expect((await alice.fineTuning.jobs.list()).data.map((j) => j.id)).toEqual([jobA2.id, jobA.id]);
    expect((await bob.fineTuning.jobs.list()).data.map((j) => j.id)).toEqual([jobB.id]);
    expect((await alice.files.list()).data.map((f) => f.id)).toEqual([fileA]);
    expect((await bob.files.list()).data.map((f) => f.id)).toEqual([fileB]);

    // Another org's ids are 404, exactly like ids that do not exist.
    await expectApiError(bob.fineTuning.jobs.retrieve(jobA.id), { status: 404 });
    await expectApiError(bob.fineTuning.jobs.cancel(jobA.id), { status: 404 });
    await expectApiError(bob.fineTuning.jobs.pause(jobA.id), { status: 404 });
    await expectApiError(bob.fineTuning.jobs.resume(jobA.id), { status: 404 });
    await expectApiError(bob.fineTuning.jobs.listEvents(jobA.id), { status: 404 });
    await expectApiError(bob.fineTuning.jobs.checkpoints.list(jobA.id), { status: 404 });
    await expectApiError(bob.files.retrieve(fileA), { status: 404 });
    await expectApiError(bob.files.content(fileA), { status: 404 });
    await expectApiError(bob.files.delete(fileA), { status: 404 });
    // Nor can one org use another's file or cursor.
    await expectApiError(bob.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileA }), {
      status: 400,
      param: 'training_file',
    });
    await expectApiError(bob.fineTuning.jobs.list({ after: jobA.id }), { status: 400, param: 'after' });

    // Alice's objects are untouched by Bob's attempts.
    expect((await alice.files.retrieve(fileA)).id).toBe(fileA);
    expect((await alice.fineTuning.jobs.retrieve(jobA.id)).status).not.toBe('cancelled');
    await alice.fineTuning.jobs.cancel(jobA.id);
    await alice.fineTuning.jobs.cancel(jobA2.id);
    await bob.fineTuning.jobs.cancel(jobB.id);
  });

  it('onRequest reports the org and the route pattern of each request', async () => {
    const before = svc.requests.length;
    const client = svc.client('sk-hook');
    await expectApiError(client.fineTuning.jobs.retrieve('ftjob-missing'), { status: 404 });
    const seen = svc.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: 'GET',
      path: '/v1/fine_tuning/jobs/ftjob-missing',
      route: 'GET /v1/fine_tuning/jobs/:id',
      status: 404,
    });
    expect(seen[0].orgId).toMatch(/^org-/);
  });
});
