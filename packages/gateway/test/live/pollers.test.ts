/**
 * The shared pollers, observed at the upstream (the local service's request hook): one poller per
 * job whatever the number of subscribers, released when a client goes away (even abruptly), an
 * upstream outage that loses no event, and mutations that reach subscribers before the next poll.
 */
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import {
  collectSse,
  collectWs,
  createJob,
  EVENTS_SUB,
  type Gateway,
  JOB_SUB,
  pollsOf,
  restEvents,
  sleep,
  startGateway,
  startUpstream,
  type Upstream,
  waitUntil,
  wsClient,
} from './helpers.js';

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
});

async function setup(stepMs: number, pollIntervalMs: number, maxBackoffMs = 400): Promise<{ up: Upstream; gw: Gateway }> {
  const up = await startUpstream({ stepMs });
  opened.push(up);
  const gw = await startGateway(up, { pollIntervalMs, maxBackoffMs });
  opened.push(gw);
  return { up, gw };
}

/** A raw graphql-transport-ws connection, so the test can drop the TCP connection without a goodbye. */
async function rawSubscribe(gw: Gateway, query: string, variables: Record<string, unknown>) {
  const socket = new WebSocket(gw.wsUrl, 'graphql-transport-ws');
  const messages: any[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(String(data))));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  socket.send(JSON.stringify({ type: 'connection_init' }));
  await waitUntil(() => messages.some((m) => m.type === 'connection_ack'), 5000);
  socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
  return { socket, messages };
}

describe('shared pollers', () => {
  it('releases the poller within one interval when a websocket is dropped abruptly (no close frame)', async () => {
    const POLL = 100;
    const { up, gw } = await setup(100, POLL);
    const jobId = await createJob(up, 3);
    await waitUntil(async () => (await up.client().fineTuning.jobs.retrieve(jobId)).status === 'running', 20_000, 20);
    const { socket, messages } = await rawSubscribe(gw, JOB_SUB, { id: jobId });
    await waitUntil(() => messages.some((m) => m.type === 'next'), 5000);
    await sleep(3 * POLL);
    expect(gw.live.stats()).toEqual({ pollers: 1, subscribers: 1 });
    expect(pollsOf(up, jobId).retrieves).toBeGreaterThan(1);

    socket.terminate(); // TCP reset, no close frame
    const t0 = Date.now();
    await waitUntil(() => gw.live.stats().pollers === 0, 5000, 5);
    expect(Date.now() - t0).toBeLessThan(POLL);
    // At most a request already in flight lands after the release; then the upstream hears nothing.
    const settled = Date.now() + 20;
    await sleep(4 * POLL);
    expect(pollsOf(up, jobId, settled).total).toBe(0);
    expect((await up.client().fineTuning.jobs.retrieve(jobId)).status).not.toMatch(/succeeded|failed|cancelled/);
  });

  it('releases the poller when an SSE client disconnects', async () => {
    const POLL = 100;
    const { up, gw } = await setup(100, POLL);
    const jobId = await createJob(up, 3);
    const sse = collectSse(gw, JOB_SUB, { id: jobId }, 'fineTuningJobUpdated');
    await waitUntil(() => sse.items.length > 0, 5000);
    expect(gw.live.stats().pollers).toBe(1);
    sse.stop();
    await waitUntil(() => gw.live.stats().pollers === 0, POLL * 3, 5);
    const settled = Date.now() + 20;
    await sleep(4 * POLL);
    expect(pollsOf(up, jobId, settled).total).toBe(0);
  });

  it('200 subscribers of one job cost the upstream what one costs', async () => {
    const POLL = 100;
    const WINDOW = 2500;
    // Slow steps: the job keeps running through both measuring windows.
    const { up, gw } = await setup(300, POLL);
    const jobId = await createJob(up, 3);
    await waitUntil(async () => (await up.client().fineTuning.jobs.retrieve(jobId)).status === 'running', 20_000, 50);

    const measure = async (subscribers: number, sockets: number) => {
      const clients = Array.from({ length: sockets }, () => wsClient(gw));
      const subs = Array.from({ length: subscribers }, (_, i) =>
        collectWs(
          clients[i % sockets]!,
          i % 2 ? JOB_SUB : EVENTS_SUB,
          i % 2 ? { id: jobId } : { jobId },
          i % 2 ? 'fineTuningJobUpdated' : 'fineTuningJobEvents',
        ),
      );
      await waitUntil(() => gw.live.stats().subscribers === subscribers, 10_000);
      const from = Date.now();
      await sleep(WINDOW);
      const polls = pollsOf(up, jobId, from);
      const delivered = subs.reduce((n, s) => n + s.items.length, 0);
      const errors = subs.flatMap((s) => s.errors);
      for (const s of subs) s.stop();
      await Promise.all(clients.map((c) => c.dispose()));
      await waitUntil(() => gw.live.stats().pollers === 0, 2000);
      return { polls, delivered, errors };
    };

    const one = await measure(1, 1);
    const many = await measure(200, 20);
    expect(many.errors).toEqual([]);
    expect(many.delivered).toBeGreaterThan(100); // every subscriber got the job state at least
    expect(gw.live.stats()).toEqual({ pollers: 0, subscribers: 0 });
    // ~WINDOW/POLL retrieves each (fixed-rate polling). 200 subscribers never add polls; when the
    // machine is busy (other test files run in parallel) a late tick may be skipped, never doubled.
    const figures = JSON.stringify({ one: one.polls, many: many.polls });
    console.log(`upstream polls in ${WINDOW} ms: 1 subscriber ${JSON.stringify(one.polls)}, 200 subscribers ${JSON.stringify(many.polls)}`);
    expect(one.polls.retrieves, figures).toBeGreaterThanOrEqual((WINDOW / POLL) * 0.75);
    expect(many.polls.retrieves, figures).toBeLessThanOrEqual(one.polls.retrieves + 2);
    expect(many.polls.total, figures).toBeLessThanOrEqual(one.polls.total + 4);
    expect(many.polls.retrieves, figures).toBeGreaterThanOrEqual(Math.floor(one.polls.retrieves * 0.75));
  });

  it('loses no event when the upstream stops and restarts mid-job', async () => {
    const POLL = 50;
    const { up, gw } = await setup(40, POLL, 300);
    const jobId = await createJob(up, 3);
    const [first] = await restEvents(up, jobId);
    const client = wsClient(gw);
    const ws = collectWs<{ id: string }>(client, EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    const sse = collectSse<{ id: string }>(gw, EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    const states = collectWs<{ status: string }>(client, JOB_SUB, { id: jobId }, 'fineTuningJobUpdated');

    // Let training start and a few metrics events arrive, then take the upstream away.
    await waitUntil(() => ws.items.length >= 8, 30_000);
    await up.stop();
    const during = ws.items.length;
    await sleep(1200);
    expect(ws.items.length).toBe(during); // nothing new while it is down…
    expect(ws.completed || sse.completed || states.completed).toBe(false); // …and the streams stay open
    expect(ws.errors).toEqual([]);
    await up.restart();

    await Promise.all([ws.done, sse.done, states.done]);
    const rest = await restEvents(up, jobId);
    expect(rest.at(-1)!.message).toMatch(/successfully completed/i);
    expect(ws.items.map((e) => e.id)).toEqual(rest.slice(1).map((e) => e.id));
    expect(sse.items.map((e) => e.id)).toEqual(rest.slice(1).map((e) => e.id));
    expect(ws.errors).toEqual([]);
    expect(sse.errors).toEqual([]);
    expect(states.items.at(-1)!.status).toBe('SUCCEEDED');
    expect(gw.logs()).toContain('backing off');
    await client.dispose();
  });

  it('cancel, pause and resume through a mutation reach subscribers before the next poll', async () => {
    const POLL = 3000; // long, so that only the mutation can explain a quick update
    const { up, gw } = await setup(100, POLL);
    const jobId = await createJob(up, 5);
    await waitUntil(async () => (await up.client().fineTuning.jobs.retrieve(jobId)).status === 'running', 20_000, 50);

    const client = wsClient(gw);
    const states = collectWs<{ status: string }>(client, JOB_SUB, { id: jobId }, 'fineTuningJobUpdated');
    const [first] = await restEvents(up, jobId);
    const events = collectWs<{ message: string }>(client, EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    await waitUntil(() => states.items.length === 1, 5000);
    expect(states.items[0]!.status).toBe('RUNNING');

    const act = async (name: 'pause' | 'resume' | 'cancel', expected: string) => {
      const before = states.items.length;
      const t0 = Date.now();
      const polledFrom = Date.now();
      const res = await gw.gql(`mutation($id: ID!) { r: ${name}FineTuningJob(id: $id) { __typename ... on Error { message } } }`, { id: jobId });
      expect(res.errors).toBeUndefined();
      expect((res.data as any).r.__typename).toMatch(/Success$/);
      const seen = await waitUntil(() => states.items.slice(before).find((s) => s.status === expected), POLL, 2);
      const elapsed = Date.now() - t0;
      expect(seen.status).toBe(expected);
      expect(elapsed).toBeLessThan(POLL / 2);
      // The new state came from the mutation's answer: no retrieve of the job was needed.
      expect(pollsOf(up, jobId, polledFrom).retrieves).toBe(0);
    };

    await act('pause', 'PAUSED');
    await waitUntil(() => events.items.some((e) => /paused/i.test(e.message)), POLL / 2);
    // The local service resumes a job into the queue (paused → queued → running), as OpenAI does.
    await act('resume', 'QUEUED');
    await act('cancel', 'CANCELLED');
    await states.done;
    expect(states.completed).toBe(true);
    await events.done;
    expect(events.items.at(-1)!.message).toMatch(/cancel/i);
    const rest = await restEvents(up, jobId);
    expect(events.items.map((e) => e.message)).toEqual(rest.slice(1).map((e) => e.message));
    await client.dispose();
  });
});
