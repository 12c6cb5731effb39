import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import { expectApiError, jsonlFile, type RunningEmulator, startEmulator, trainingJsonl, uploadTraining } from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';

const withKey = (key: string) => ({ headers: { 'Idempotency-Key': key } });
/** OpenAI returns user_provided_suffix on jobs; the SDK's type does not declare it. */
const suffixOf = (job: OpenAI.FineTuning.Jobs.FineTuningJob) => (job as unknown as { user_provided_suffix: string | null }).user_provided_suffix;

describe('Idempotency-Key on POSTs', () => {
  let svc: RunningEmulator;
  let client: OpenAI;
  let fileId: string;
  beforeAll(async () => {
    svc = await startEmulator({ stepMs: 1000 });
    client = svc.client('sk-idem');
    fileId = await uploadTraining(client);
  });
  afterAll(() => svc.close());

  const creates = () => svc.requests.filter((r) => r.route === 'POST /v1/fine_tuning/jobs').length;

  it('a repeat returns the first response and creates nothing', async () => {
    const before = creates();
    const first = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileId, suffix: 'idem' }, withKey('key-1'));
    const { data: second, response } = await client.fineTuning.jobs
      .create({ model: 'gpt-4o-mini', training_file: fileId, suffix: 'idem' }, withKey('key-1'))
      .withResponse();
    expectMatchesSchema(second, 'FineTuningJob');
    expect(second).toEqual(first);
    expect(response.headers.get('idempotent-replayed')).toBe('true');
    expect(creates() - before).toBe(2); // both requests reached the service...
    const jobs = (await client.fineTuning.jobs.list()).data.filter((j) => suffixOf(j) === 'idem');
    expect(jobs.map((j) => j.id)).toEqual([first.id]); // ...but only one job exists
  });

  it('the same key with a different body is a 409 naming the key; another org or route may reuse the key', async () => {
    await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileId, suffix: 'a' }, withKey('key-2'));
    const err = await expectApiError(client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileId, suffix: 'b' }, withKey('key-2')), {
      status: 409,
      param: 'Idempotency-Key',
      code: 'idempotency_key_reused',
    });
    expectMatchesSchema({ error: err.error }, 'Error');
    expect((await client.fineTuning.jobs.list()).data.filter((j) => suffixOf(j) === 'b')).toEqual([]);

    // Another organization has its own key space.
    const other = svc.client('sk-idem-other');
    const otherFile = await uploadTraining(other);
    const theirs = await other.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: otherFile }, withKey('key-2'));
    expect(theirs.organization_id).not.toBe((await client.fineTuning.jobs.list()).data[0].organization_id);
  });

  it('file uploads are idempotent too (multipart boundaries differ between attempts)', async () => {
    const content = trainingJsonl(10, 3);
    const a = await client.files.create({ file: await jsonlFile(content, 'x.jsonl'), purpose: 'fine-tune' }, withKey('upload-1'));
    const b = await client.files.create({ file: await jsonlFile(content, 'x.jsonl'), purpose: 'fine-tune' }, withKey('upload-1'));
    expect(b).toEqual(a);
    await expectApiError(client.files.create({ file: await jsonlFile(trainingJsonl(10, 4), 'x.jsonl'), purpose: 'fine-tune' }, withKey('upload-1')), {
      status: 409,
    });
    expect((await client.files.list()).data.filter((f) => f.filename === 'x.jsonl')).toHaveLength(1);
  });

  it('10 concurrent creates with the same key make one job, and all get its response', async () => {
    const before = creates();
    const results = await Promise.all(
      Array.from({ length: 10 }, () => client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileId, suffix: 'burst' }, withKey('burst-key'))),
    );
    expect(creates() - before).toBe(10);
    const ids = new Set(results.map((r) => r.id));
    expect(ids.size).toBe(1);
    const jobs = (await client.fineTuning.jobs.list({ limit: 100 })).data.filter((j) => suffixOf(j) === 'burst');
    expect(jobs).toHaveLength(1);
    for (const r of results) expect(r).toEqual(results[0]);
  });

  it('10 requests with one key whose bodies finish arriving at the same moment still make one job', async () => {
    const { request } = await import('node:http');
    const body = JSON.stringify({ model: 'gpt-4o-mini', training_file: fileId, suffix: 'together' });
    const url = new URL(`${svc.baseURL}/fine_tuning/jobs`);
    const pending = Array.from({ length: 10 }, () => {
      const req = request(url, {
        method: 'POST',
        headers: {
          authorization: 'Bearer sk-idem',
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'idempotency-key': 'together-key',
        },
      });
      const done = new Promise<{ status: number; json: { id: string } }>((resolve, reject) => {
        req.on('response', (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) }));
        });
        req.on('error', reject);
      });
      req.write(body.slice(0, -1)); // everything but the last byte...
      return { req, done };
    });
    await new Promise((r) => setTimeout(r, 100)); // ...so that all ten are waiting for their body
    for (const p of pending) p.req.end(body.slice(-1));
    const results = await Promise.all(pending.map((p) => p.done));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(new Set(results.map((r) => r.json.id)).size).toBe(1);
    const jobs = (await client.fineTuning.jobs.list({ limit: 100 })).data.filter((j) => suffixOf(j) === 'together');
    expect(jobs).toHaveLength(1);
  });

  it('cancel with a key: the repeat replays the first (successful) response instead of a 400', async () => {
    const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileId });
    const first = await client.fineTuning.jobs.cancel(job.id, withKey('cancel-1'));
    const again = await client.fineTuning.jobs.cancel(job.id, withKey('cancel-1'));
    expect(again).toEqual(first);
    await expectApiError(client.fineTuning.jobs.cancel(job.id), { status: 400 });
  });

  it('errors are replayed too, and an over-long key is a 400', async () => {
    const body = { model: 'gpt-4o-mini', training_file: 'file-missing' };
    const a = await expectApiError(client.fineTuning.jobs.create(body, withKey('err-1')), { status: 400, param: 'training_file' });
    const b = await expectApiError(client.fineTuning.jobs.create(body, withKey('err-1')), { status: 400, param: 'training_file' });
    expect(b.error).toEqual(a.error);
    await expectApiError(client.fineTuning.jobs.create(body, withKey('k'.repeat(300))), { status: 400, param: 'Idempotency-Key' });
  });

  it('keys expire (24 h by default; 100 ms here): after that the same key runs the request again', async () => {
    const short = await startEmulator({ stepMs: 1000, idempotencyTtlMs: 100 });
    try {
      const c = short.client('sk-ttl');
      const f = await uploadTraining(c);
      const a = await c.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: f }, withKey('ttl-1'));
      const b = await c.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: f }, withKey('ttl-1'));
      expect(b.id).toBe(a.id);
      await new Promise((r) => setTimeout(r, 150));
      const later = await c.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: f }, withKey('ttl-1'));
      expect(later.id).not.toBe(a.id);
      expect((await c.fineTuning.jobs.list()).data).toHaveLength(2);
    } finally {
      await short.close();
    }
  });

  it('keys are stored in SQLite and survive a restart', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dbPath = join(mkdtempSync(join(tmpdir(), 'emu-idem-')), 'db.sqlite');
    const one = await startEmulator({ dbPath, stepMs: 1000 });
    const c1 = one.client('sk-restart');
    const f = await uploadTraining(c1);
    const first = await c1.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: f }, withKey('persist-1'));
    await one.close();
    const two = await startEmulator({ dbPath, stepMs: 1000 });
    try {
      const c2 = two.client('sk-restart');
      const again = await c2.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: f }, withKey('persist-1'));
      expect(again.id).toBe(first.id);
      expect((await c2.fineTuning.jobs.list()).data).toHaveLength(1);
    } finally {
      await two.close();
    }
  });
});
