import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toFile } from 'openai';
import { expectApiError, jsonlFile, type RunningEmulator, startEmulator, trainingJsonl, uploadTraining } from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';

describe('files API', () => {
  let svc: RunningEmulator;
  beforeAll(async () => {
    svc = await startEmulator({ maxUploadBytes: 64 * 1024 });
  });
  afterAll(() => svc.close());

  it('uploads a .jsonl fine-tune file, retrieves it and downloads the same bytes', async () => {
    const client = svc.client('sk-files-upload');
    const content = trainingJsonl(12);
    const created = await client.files.create({ file: await jsonlFile(content, 'my data.jsonl'), purpose: 'fine-tune' });
    expectMatchesSchema(created, 'OpenAIFile');
    expect(created).toMatchObject({
      object: 'file',
      filename: 'my data.jsonl',
      purpose: 'fine-tune',
      bytes: Buffer.byteLength(content),
      status: 'processed',
    });
    expect(created.id).toMatch(/^file-[A-Za-z0-9]{22}$/);
    expect(Math.abs(created.created_at - Date.now() / 1000)).toBeLessThan(5);

    const retrieved = await client.files.retrieve(created.id);
    expectMatchesSchema(retrieved, 'OpenAIFile');
    expect(retrieved).toEqual(created);

    const res = await client.files.content(created.id);
    expect(await res.text()).toBe(content);
  });

  it('accepts other purposes with any extension, and expires_after', async () => {
    const client = svc.client('sk-files-purposes');
    const f = await client.files.create({
      file: await toFile(Buffer.from('hello'), 'notes.txt'),
      purpose: 'user_data',
      expires_after: { anchor: 'created_at', seconds: 3600 },
    });
    expectMatchesSchema(f, 'OpenAIFile');
    expect(f.purpose).toBe('user_data');
    expect(f.expires_at).toBe(f.created_at + 3600);
  });

  it('lists newest first with has_more, first_id/last_id, after-cursor pages, order=asc and a purpose filter', async () => {
    const client = svc.client('sk-files-list');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await uploadTraining(client, trainingJsonl(10, i), `f${i}.jsonl`));
    const other = await client.files.create({ file: await toFile(Buffer.from('x'), 'x.txt'), purpose: 'assistants' });

    const all = await client.files.list();
    expectMatchesSchema(
      await client.files
        .list()
        .asResponse()
        .then((r) => r.json()),
      'ListFilesResponse',
    );
    expect(all.data.map((f) => f.id)).toEqual([other.id, ...ids.slice().reverse()]);
    expect(all.has_more).toBe(false);

    // Walk fine-tune files two at a time, newest first.
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await client.files.list({ purpose: 'fine-tune', limit: 2, after });
      const raw = await client.files
        .list({ purpose: 'fine-tune', limit: 2, after })
        .asResponse()
        .then((r) => r.json());
      expectMatchesSchema(raw, 'ListFilesResponse');
      expect(raw.first_id).toBe(page.data[0]?.id ?? null);
      expect(raw.last_id).toBe(page.data[page.data.length - 1]?.id ?? null);
      seen.push(...page.data.map((f) => f.id));
      if (!page.has_more) break;
      after = page.data[page.data.length - 1].id;
    }
    expect(seen).toEqual(ids.slice().reverse());

    // The SDK's auto-pagination walks the same cursor.
    const auto: string[] = [];
    for await (const f of client.files.list({ purpose: 'fine-tune', limit: 2 })) auto.push(f.id);
    expect(auto).toEqual(ids.slice().reverse());

    const asc = await client.files.list({ purpose: 'fine-tune', order: 'asc', limit: 3 });
    expect(asc.data.map((f) => f.id)).toEqual(ids.slice(0, 3));
    expect(asc.has_more).toBe(true);

    const empty = await client.files
      .list({ purpose: 'batch' })
      .asResponse()
      .then((r) => r.json());
    expectMatchesSchema(empty, 'ListFilesResponse');
    expect(empty).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  });

  it('deletes a file: gone from retrieve, list and content', async () => {
    const client = svc.client('sk-files-delete');
    const id = await uploadTraining(client, trainingJsonl(10));
    const deleted = await client.files.delete(id);
    expectMatchesSchema(deleted, 'DeleteFileResponse');
    expect(deleted).toEqual({ id, object: 'file', deleted: true });
    await expectApiError(client.files.retrieve(id), { status: 404, code: 'file_not_found' });
    await expectApiError(client.files.content(id), { status: 404 });
    await expectApiError(client.files.delete(id), { status: 404 });
    expect((await client.files.list()).data.map((f) => f.id)).not.toContain(id);
  });

  it('rejects bad uploads with 400 naming the field, and stores nothing', async () => {
    const client = svc.client('sk-files-bad');
    const wrongExt = await expectApiError(client.files.create({ file: await toFile(Buffer.from('{"a":1}\n'), 'train.json'), purpose: 'fine-tune' }), {
      status: 400,
      param: 'file',
      code: 'invalid_file_format',
      message: /\.jsonl/,
    });
    expectMatchesSchema({ error: wrongExt.error }, 'Error');
    await expectApiError(client.files.create({ file: await jsonlFile(trainingJsonl(10)), purpose: 'fine-tuning' as never }), {
      status: 400,
      param: 'purpose',
      code: 'invalid_value',
    });
    await expectApiError(client.files.create({ file: await jsonlFile(trainingJsonl(10)), purpose: 'fine-tune-results' as never }), {
      status: 400,
      param: 'purpose',
    });
    await expectApiError(client.files.create({ file: await jsonlFile(''), purpose: 'fine-tune' }), {
      status: 400,
      param: 'file',
      code: 'empty_file',
    });
    await expectApiError(
      client.files.create({
        file: await jsonlFile(trainingJsonl(10)),
        purpose: 'fine-tune',
        expires_after: { anchor: 'created_at', seconds: 60 },
      }),
      { status: 400, param: 'expires_after.seconds' },
    );
    // Missing fields, sent by hand (the SDK would not let us).
    const form = new FormData();
    form.set('purpose', 'fine-tune');
    const res = await fetch(`${svc.baseURL}/files`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-files-bad' },
      body: form,
    });
    expect(res.status).toBe(400);
    const body = await res.json();
    expectMatchesSchema(body, 'Error');
    expect(body.error).toMatchObject({ param: 'file', code: 'missing_required_parameter' });

    expect((await client.files.list()).data).toEqual([]);
  });

  it('caps the upload size (413, param file) and stays up', async () => {
    const client = svc.client('sk-files-big');
    const big = 'x'.repeat(80 * 1024);
    await expectApiError(client.files.create({ file: await jsonlFile(big), purpose: 'fine-tune' }), {
      status: 413,
      param: 'file',
      code: 'file_too_large',
    });
    // Just under the cap is fine.
    const ok = await client.files.create({ file: await toFile(Buffer.from('y'.repeat(60 * 1024)), 'ok.txt'), purpose: 'user_data' });
    expect(ok.bytes).toBe(60 * 1024);
    expect((await client.files.list()).data.map((f) => f.id)).toEqual([ok.id]);
  });

  it('limit: 0 and non-integers are 400 naming limit; an unknown after is 400 naming after; bad order is 400', async () => {
    const client = svc.client('sk-files-limits');
    await expectApiError(client.files.list({ limit: 0 }), { status: 400, param: 'limit' });
    await expectApiError(client.files.list({ limit: 1.5 }), { status: 400, param: 'limit' });
    await expectApiError(client.files.list({ after: 'file-doesnotexist' }), { status: 400, param: 'after' });
    await expectApiError(client.files.list({ order: 'sideways' as never }), { status: 400, param: 'order' });
  });

  it('unknown ids are 404 with the OpenAI envelope', async () => {
    const client = svc.client('sk-files-404');
    const err = await expectApiError(client.files.retrieve('file-nope'), { status: 404, message: /No such File object: file-nope/ });
    expectMatchesSchema({ error: err.error }, 'Error');
  });
});
