import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import { expectApiError, type RunningEmulator, startEmulator, uploadTraining } from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';

describe('listing fine-tuning jobs', () => {
  let svc: RunningEmulator;
  let client: OpenAI;
  const ids: string[] = []; // oldest first
  let file: string;
  beforeAll(async () => {
    svc = await startEmulator({ stepMs: 1000 }); // jobs stay in validating_files
    client = svc.client('sk-lists');
    file = await uploadTraining(client);
    for (let i = 0; i < 25; i++) {
      const metadata = i % 5 === 0 ? null : { team: i % 2 ? 'red' : 'blue', idx: String(i) };
      const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: file, metadata });
      ids.push(job.id);
    }
  });
  afterAll(() => svc.close());

  const raw = async (query: string) => {
    const res = await fetch(`${svc.baseURL}/fine_tuning/jobs${query}`, { headers: { authorization: 'Bearer sk-lists' } });
    return { status: res.status, body: await res.json() };
  };

  it('default limit 20, newest first, has_more; walking `after` pages gives every job once', async () => {
    const first = await client.fineTuning.jobs.list();
    expect(first.data.map((j) => j.id)).toEqual(ids.slice().reverse().slice(0, 20));
    expect(first.has_more).toBe(true);
    const { body } = await raw('');
    expectMatchesSchema(body, 'ListPaginatedFineTuningJobsResponse');

    const walked: string[] = [];
    let after: string | undefined;
    for (;;) {
      const { body: page } = await raw(`?limit=7${after ? `&after=${after}` : ''}`);
      expectMatchesSchema(page, 'ListPaginatedFineTuningJobsResponse');
      walked.push(...page.data.map((j: { id: string }) => j.id));
      if (!page.has_more) break;
      after = page.data[page.data.length - 1].id;
    }
    expect(walked).toEqual(ids.slice().reverse());

    const auto: string[] = [];
    for await (const job of client.fineTuning.jobs.list({ limit: 4 })) auto.push(job.id);
    expect(auto).toEqual(ids.slice().reverse());
  });

  it('limit above 100 is capped; below 1 or not an integer is a 400 naming limit; unknown after is a 400', async () => {
    const { status, body } = await raw('?limit=1000');
    expect(status).toBe(200);
    expect(body.data).toHaveLength(25);
    for (const bad of ['0', '-3', '2.5', 'ten']) {
      const r = await raw(`?limit=${bad}`);
      expect(r.status, bad).toBe(400);
      expectMatchesSchema(r.body, 'Error');
      expect(r.body.error.param).toBe('limit');
    }
    await expectApiError(client.fineTuning.jobs.list({ after: 'ftjob-unknown' }), { status: 400, param: 'after' });
  });

  it('metadata[k]=v filters (all pairs must match) and metadata=null finds jobs without metadata', async () => {
    const red = await client.fineTuning.jobs.list({ metadata: { team: 'red' }, limit: 100 });
    const expectedRed = ids.filter((_, i) => i % 5 !== 0 && i % 2 === 1).reverse();
    expect(red.data.map((j) => j.id)).toEqual(expectedRed);
    const one = await raw('?metadata[team]=blue&metadata[idx]=4');
    expect(one.body.data.map((j: { id: string }) => j.id)).toEqual([ids[4]]);
    const none = await raw('?metadata=null&limit=100');
    expect(none.body.data.map((j: { id: string }) => j.id)).toEqual(ids.filter((_, i) => i % 5 === 0).reverse());
    // Paging inside a filter.
    const p1 = await client.fineTuning.jobs.list({ metadata: { team: 'red' }, limit: 3 });
    const p2 = await client.fineTuning.jobs.list({ metadata: { team: 'red' }, limit: 3, after: p1.data[2].id });
    expect([...p1.data, ...p2.data].map((j) => j.id)).toEqual(expectedRed.slice(0, 6));
    expect((await raw('?metadata=red')).status).toBe(400);
  });

  it('events list: default 20, pages with after, unknown after and bad limit are 400', async () => {
    const jobId = ids[0];
    const events = await client.fineTuning.jobs.listEvents(jobId);
    expect(events.data.map((e) => e.message)).toEqual([`Validating training file: ${file}`, `Created fine-tuning job: ${jobId}`]);
    const { body } = await (async () => {
      const res = await fetch(`${svc.baseURL}/fine_tuning/jobs/${jobId}/events?limit=1`, { headers: { authorization: 'Bearer sk-lists' } });
      return { body: await res.json() };
    })();
    expectMatchesSchema(body, 'ListFineTuningJobEventsResponse');
    expect(body.has_more).toBe(true);
    const next = await client.fineTuning.jobs.listEvents(jobId, { limit: 1, after: body.data[0].id });
    expect(next.data.map((e) => e.message)).toEqual([`Created fine-tuning job: ${jobId}`]);
    expect(next.has_more).toBe(false);
    await expectApiError(client.fineTuning.jobs.listEvents(jobId, { after: 'ftevent-nope' }), { status: 400, param: 'after' });
    await expectApiError(client.fineTuning.jobs.listEvents(jobId, { limit: 0 }), { status: 400, param: 'limit' });
    // An event id of another job is not a cursor for this one.
    const otherEvents = await client.fineTuning.jobs.listEvents(ids[1]);
    await expectApiError(client.fineTuning.jobs.listEvents(jobId, { after: otherEvents.data[0].id }), { status: 400, param: 'after' });
  });

  it('checkpoints list of a job without checkpoints is empty with null first/last ids', async () => {
    const res = await fetch(`${svc.baseURL}/fine_tuning/jobs/${ids[0]}/checkpoints`, { headers: { authorization: 'Bearer sk-lists' } });
    const body = await res.json();
    expectMatchesSchema(body, 'ListFineTuningJobCheckpointsResponse');
    expect(body).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  });
});
