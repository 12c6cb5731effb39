/**
 * Live events and job states over graphql-ws and SSE, against the real local fine-tuning service:
 * every event once, in order, identical to the REST list; `after` replays exactly the missing ones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  collectSse,
  collectWs,
  createJob,
  EVENTS_SUB,
  TERMINAL,
  type Gateway,
  JOB_SUB,
  restEvents,
  startGateway,
  startUpstream,
  type Upstream,
  waitUntil,
  wsClient,
} from './helpers.js';

const POLL_MS = 60;

let up: Upstream;
let gw: Gateway;

beforeAll(async () => {
  up = await startUpstream({ stepMs: 25 });
  gw = await startGateway(up, { pollIntervalMs: POLL_MS, maxBackoffMs: 300 });
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
});

type Ev = { id: string; createdAt: string; level: string; message: string; type: string | null; data: unknown };

function asGraphQL(e: { id: string; created_at: number; level: string; message: string; type?: string | null; data?: unknown }) {
  return {
    id: e.id,
    createdAt: new Date(e.created_at * 1000).toISOString(),
    level: e.level.toUpperCase(),
    message: e.message,
    type: e.type ? e.type.toUpperCase() : null,
    data: e.data ?? null,
  };
}

describe('fineTuningJobEvents', () => {
  it('delivers every event of a job that runs to completion once, in order, identical to the REST list (graphql-ws and SSE)', async () => {
    const jobId = await createJob(up, 2);
    // The job's first event exists as soon as it is created: start right after it.
    const [first] = await restEvents(up, jobId);
    expect(first).toBeDefined();

    const client = wsClient(gw);
    const ws = collectWs<Ev>(client, EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    const sse = collectSse<Ev>(gw, EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    const states = collectWs<{ status: string }>(client, JOB_SUB, { id: jobId }, 'fineTuningJobUpdated');

    await Promise.all([ws.done, sse.done, states.done]);
    expect(ws.errors).toEqual([]);
    expect(sse.errors).toEqual([]);
    expect(ws.completed && sse.completed && states.completed).toBe(true);

    const rest = await restEvents(up, jobId);
    expect(rest.length).toBeGreaterThan(10);
    const expected = rest.slice(1).map(asGraphQL);
    expect(ws.items).toEqual(expected);
    expect(sse.items).toEqual(expected);
    expect(new Set(ws.items.map((e) => e.id)).size).toBe(ws.items.length);
    expect(rest.at(-1)!.message).toMatch(/successfully completed/i);

    // Job states: first the current one, the last is terminal, and no two in a row are identical.
    const statuses = states.items.map((s) => s.status);
    expect(statuses.at(-1)).toBe('SUCCEEDED');
    expect(statuses).toContain('RUNNING');
    for (let i = 1; i < states.items.length; i++) expect(states.items[i]).not.toEqual(states.items[i - 1]);

    await client.dispose();
    await waitUntil(() => gw.live.stats().pollers === 0, 2000);
  });

  it('with `after` replays exactly the missing events, then completes for a finished job (graphql-ws and SSE)', async () => {
    const jobId = await createJob(up, 1);
    await waitUntil(async () => (await up.client().fineTuning.jobs.retrieve(jobId)).status === 'succeeded', 30_000, 50);
    const rest = await restEvents(up, jobId);
    const k = Math.floor(rest.length / 2);
    const client = wsClient(gw);
    const ws = collectWs<Ev>(client, EVENTS_SUB, { jobId, after: rest[k]!.id }, 'fineTuningJobEvents');
    const sse = collectSse<Ev>(gw, EVENTS_SUB, { jobId, after: rest[k]!.id }, 'fineTuningJobEvents');
    // The newest id: nothing is missing, the stream just completes.
    const none = collectWs<Ev>(client, EVENTS_SUB, { jobId, after: rest.at(-1)!.id }, 'fineTuningJobEvents');
    await Promise.all([ws.done, sse.done, none.done]);
    const expected = rest.slice(k + 1).map(asGraphQL);
    expect(ws.items).toEqual(expected);
    expect(sse.items).toEqual(expected);
    expect(none.items).toEqual([]);
    expect(ws.completed && sse.completed && none.completed).toBe(true);
    await client.dispose();
  });

  it('a subscription in a plain JSON POST (no Accept) is answered over SSE as it happens, not when it ends', async () => {
    const jobId = await createJob(up, 3, 20);
    const controller = new AbortController();
    const res = await fetch(gw.httpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: JOB_SUB, variables: { id: jobId } }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('event: next')) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    // The first state arrived while the job still runs: the answer is streamed, not gathered until the end.
    expect(text).toContain('event: next');
    expect(TERMINAL.has((await up.client().fineTuning.jobs.retrieve(jobId)).status)).toBe(false);
    controller.abort();
  });

  it('with `after` mid-run, replays the gap then continues live without a repeat, beside live subscribers', async () => {
    const jobId = await createJob(up, 3);
    const client = wsClient(gw);
    // Subscribers without `after` hold the job's poller (and its cursor) from the start, so the
    // late subscribers' replay walks overlap events that the poller publishes live at the same time.
    const live = collectWs<Ev>(client, EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    const liveSse = collectSse<Ev>(gw, EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    const late: ReturnType<typeof collectWs<Ev>>[] = [];
    const afters: number[] = [];
    // Join from an early event several times while training runs.
    for (let round = 0; round < 4; round++) {
      const evs = await waitUntil(
        async () => {
          const e = await restEvents(up, jobId);
          return e.length >= 8 + round * 12 && e;
        },
        30_000,
        15,
      );
      const k = 2 + round;
      afters.push(k);
      late.push(collectWs<Ev>(client, EVENTS_SUB, { jobId, after: evs[k]!.id }, 'fineTuningJobEvents'));
      late.push(collectWs<Ev>(wsClient(gw), EVENTS_SUB, { jobId, after: evs[k]!.id }, 'fineTuningJobEvents'));
      afters.push(k);
    }
    await Promise.all([live.done, liveSse.done, ...late.map((l) => l.done)]);
    const rest = (await restEvents(up, jobId)).map((e) => e.id);
    late.forEach((l, i) => {
      expect(l.errors).toEqual([]);
      expect(l.completed).toBe(true);
      expect(l.items.map((e) => e.id)).toEqual(rest.slice(afters[i]! + 1));
    });
    // The live subscribers got a contiguous run of the newest events, each once.
    for (const l of [live, liveSse]) {
      const ids = l.items.map((e) => e.id);
      expect(ids.length).toBeGreaterThan(rest.length / 2);
      expect(ids).toEqual(rest.slice(rest.length - ids.length));
    }
    await client.dispose();
  });

  it('rejects an `after` that is not an event of the job with BAD_USER_INPUT naming the field, and an invalid job id', async () => {
    const jobId = await createJob(up, 1);
    const client = wsClient(gw);
    const bad = collectWs(client, EVENTS_SUB, { jobId, after: 'ftevent-doesnotexist' }, 'fineTuningJobEvents');
    await bad.done;
    expect(bad.items).toEqual([]);
    expect(bad.errors).toHaveLength(1);
    expect(bad.errors[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'after' } });

    const sse = collectSse(gw, EVENTS_SUB, { jobId, after: 'ftevent-doesnotexist' }, 'fineTuningJobEvents');
    await sse.done;
    expect(sse.errors[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'after' } });

    const badId = collectWs(client, EVENTS_SUB, { jobId: 'file-abc' }, 'fineTuningJobEvents');
    await badId.done;
    expect(JSON.stringify(badId.errors)).toContain('BAD_USER_INPUT');

    const unknown = collectWs(client, JOB_SUB, { id: 'ftjob-doesnotexist' }, 'fineTuningJobUpdated');
    await unknown.done;
    expect(unknown.errors[0]).toMatchObject({ extensions: { code: 'NOT_FOUND' } });
    await client.dispose();
    // Nothing keeps polling for the failed subscriptions.
    await waitUntil(() => gw.live.stats().pollers === 0, 2000);
  });
});
