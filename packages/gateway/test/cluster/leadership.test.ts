/**
 * Leadership details with two instances in this process (same Redis, same upstream): presence (a leader whose own
 * subscribers left goes on for the other instance's, and polling stops when the last subscriber anywhere leaves),
 * a mutation on one instance reaching subscribers on the other at once, a graceful shutdown handing the lease over
 * at once, and the single-process mode left as it was when REDIS_URL is not set.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { credentialHash } from '../../src/live/index.js';
import { jobKeys } from '../../src/live/cluster/redis.js';
import {
  collect,
  createJob,
  deletePrefix,
  EVENTS_SUB,
  gql,
  type Instance,
  instanceEnv,
  JOB_SUB,
  KEY,
  newPrefix,
  pollsOf,
  redisClient,
  restEvents,
  sleep,
  startInstance,
  startUpstream,
  type Upstream,
  waitUntil,
  wsClient,
} from './helpers.js';

const opened: { close(): Promise<void> }[] = [];
const prefixes: string[] = [];
const redis = redisClient();

afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
  for (const p of prefixes.splice(0)) await deletePrefix(redis, p);
});

async function setup(stepMs: number, env: Record<string, string>): Promise<{ up: Upstream; a: Instance; b: Instance; prefix: string }> {
  const prefix = newPrefix();
  prefixes.push(prefix);
  const up = await startUpstream({ stepMs });
  opened.push(up);
  const a = await startInstance(instanceEnv(up, prefix, 'lead-a', env));
  opened.push(a);
  const b = await startInstance(instanceEnv(up, prefix, 'lead-b', env));
  opened.push(b);
  return { up, a, b, prefix };
}

const running = (up: Upstream, jobId: string) => waitUntil(async () => (await up.client(KEY).fineTuning.jobs.retrieve(jobId)).status === 'running', 20_000, 50);

describe('leadership across instances', () => {
  it("the leader goes on for another instance's subscribers after its own left, and stops when the last one anywhere leaves", async () => {
    const POLL = 100;
    const { up, a, b } = await setup(300, { POLL_INTERVAL_MS: String(POLL), LIVE_LEASE_MS: '1000' });
    const jobId = await createJob(up, 3);
    await running(up, jobId);

    const onA = collect(wsClient(a), EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    await waitUntil(() => a.server!.live.stats().pollers === 1, 5000);
    const onB = collect(wsClient(b), EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    await waitUntil(() => b.server!.live.stats().subscribers === 1, 5000);
    await sleep(3 * POLL);
    expect(b.server!.live.stats().pollers).toBe(0);

    onA.stop();
    await waitUntil(() => a.server!.live.stats().subscribers === 0, 2000);
    const headless = Date.now();
    const seen = onB.items.length;
    await sleep(8 * POLL);
    // A still polls (B has no lease): the job is polled and B's subscriber still gets events.
    expect(a.server!.live.stats().pollers).toBe(1);
    expect(b.server!.live.stats().pollers).toBe(0);
    expect(pollsOf(up, jobId, headless).retrieves.length).toBeGreaterThanOrEqual(5);
    await waitUntil(() => onB.items.length > seen, 3000);

    onB.stop();
    await waitUntil(() => a.server!.live.stats().pollers === 0, 5 * POLL);
    const settled = Date.now() + 50;
    await sleep(6 * POLL);
    expect(pollsOf(up, jobId, settled).retrieves.length).toBe(0);
    expect((await up.client(KEY).fineTuning.jobs.retrieve(jobId)).status).toBe('running');
  });

  it('a mutation on one instance reaches the subscribers on the other before the next poll', async () => {
    const POLL = 3000; // long, so that only the mutation can explain a quick update
    const { up, a, b } = await setup(100, { POLL_INTERVAL_MS: String(POLL), LIVE_LEASE_MS: '6000' });
    const jobId = await createJob(up, 5);
    await running(up, jobId);
    const [first] = await restEvents(up, jobId);
    const states = collect(wsClient(a), JOB_SUB, { id: jobId }, 'fineTuningJobUpdated');
    await waitUntil(() => states.items.length === 1, 5000);
    const events = collect(wsClient(a), EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    expect(a.server!.live.stats().pollers).toBe(1);
    await sleep(200);

    const t0 = Date.now();
    const res = await gql(b, `mutation($id: ID!) { r: cancelFineTuningJob(id: $id) { __typename ... on Error { message } } }`, { id: jobId });
    expect(res.errors).toBeUndefined();
    expect(res.data.r.__typename).toMatch(/Success$/);
    await waitUntil(() => states.items.some((s) => s.status === 'CANCELLED'), POLL / 2, 2);
    expect(Date.now() - t0).toBeLessThan(POLL / 2);
    // The state came from the mutation (through Redis): the leader did not retrieve the job for it.
    expect(pollsOf(up, jobId, t0).retrieves.length).toBe(0);
    await states.done;
    expect(states.completed).toBe(true);
    await events.done;
    const rest = await restEvents(up, jobId);
    expect(events.items.map((e) => e.id)).toEqual(rest.slice(1).map((e) => e.id));
    expect(events.items.at(-1)!.message).toMatch(/cancel/i);
  });

  it('a graceful shutdown gives the lease back: another instance takes over at once, no event lost', async () => {
    const LEASE = 5000;
    const { up, a, b, prefix } = await setup(100, { POLL_INTERVAL_MS: '100', LIVE_LEASE_MS: String(LEASE) });
    const jobId = await createJob(up, 3);
    const [first] = await restEvents(up, jobId);
    const onA = collect(wsClient(a), EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    await waitUntil(() => a.server!.live.stats().pollers === 1, 5000);
    const onB = collect(wsClient(b), EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    await running(up, jobId);
    await waitUntil(() => onB.items.length >= 10, 10_000);

    const lease = jobKeys(prefix, credentialHash(KEY), jobId).lease;
    expect(await redis.get(lease)).toBe('lead-a');
    const t0 = Date.now();
    await a.close();
    await waitUntil(async () => (await redis.get(lease)) === 'lead-b', LEASE, 5);
    const handover = Date.now() - t0;
    expect(handover).toBeLessThan(LEASE / 2);

    await onB.done;
    await onA.done;
    expect(onA.errors.length).toBeGreaterThan(0); // A's subscriber was told A is going away
    const rest = await restEvents(up, jobId);
    expect(onB.errors).toEqual([]);
    expect(onB.items.map((e) => e.id)).toEqual(rest.slice(1).map((e) => e.id));
  });

  it('an unknown job ends every stream with NOT_FOUND; an unknown `after` is BAD_USER_INPUT on any instance', { timeout: 15_000 }, async () => {
    const { up, a, b } = await setup(100, { POLL_INTERVAL_MS: '100', LIVE_LEASE_MS: '1000' });
    const missing = [a, b].map((inst) => collect(wsClient(inst), EVENTS_SUB, { jobId: 'ftjob-doesnotexist' }, 'fineTuningJobEvents'));
    await Promise.all(missing.map((s) => s.done));
    for (const s of missing) expect((s.errors[0] as any)?.extensions?.code ?? (s.errors[0] as any)?.[0]?.extensions?.code).toBe('NOT_FOUND');

    const jobId = await createJob(up, 2);
    await running(up, jobId);
    const badAfter = [a, b].map((inst) => collect(wsClient(inst), EVENTS_SUB, { jobId, after: 'ftevent-nope' }, 'fineTuningJobEvents'));
    await Promise.all(badAfter.map((s) => s.done));
    for (const s of badAfter) {
      const err = (s.errors[0] as any)?.extensions ? (s.errors[0] as any) : (s.errors[0] as any)?.[0];
      expect(err?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'after' });
      expect(s.items).toEqual([]);
    }
    await waitUntil(() => a.server!.live.stats().pollers + b.server!.live.stats().pollers === 0, 3000);
  });

  it('without REDIS_URL an instance keeps its own poller (single-process mode)', async () => {
    const up = await startUpstream({ stepMs: 200 });
    opened.push(up);
    const env = instanceEnv(up, 'unused:', 'solo', { POLL_INTERVAL_MS: '100' });
    delete (env as Record<string, string | undefined>).REDIS_URL;
    const solo = await startInstance(env);
    opened.push(solo);
    expect(solo.server!.cluster).toBeUndefined();
    const jobId = await createJob(up, 2);
    const sub = collect(wsClient(solo), JOB_SUB, { id: jobId }, 'fineTuningJobUpdated');
    await waitUntil(() => sub.items.length > 0, 5000);
    expect(solo.server!.live.stats()).toEqual({ pollers: 1, subscribers: 1 });
    const ready = await fetch(`${solo.url}/ready`);
    expect(await ready.json()).toEqual({ status: 'ready' });
    sub.stop();
  });
});
