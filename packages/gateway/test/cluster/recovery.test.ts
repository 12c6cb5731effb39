/**
 * What Redis can do to the streams, and how they recover without a gap or a repeat:
 *   - an instance's subscriber connection is cut (CLIENT KILL) several times mid-job: messages published while it
 *     reconnects are lost to it; its streams notice (a sequence gap, or a check after the reconnect) and catch up
 *     from the upstream;
 *   - the job's state in Redis vanishes mid-job (as after a Redis restart without persistence): the leader makes a
 *     new baseline (a new epoch) and every stream catches up against it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { credentialHash } from '../../src/live/index.js';
import { jobKeys } from '../../src/live/cluster/redis.js';
import {
  collect,
  type Collected,
  createJob,
  deletePrefix,
  EVENTS_SUB,
  type Instance,
  instanceEnv,
  JOB_SUB,
  KEY,
  newPrefix,
  redisClient,
  restEvents,
  scrape,
  sleep,
  startInstance,
  startUpstream,
  sum,
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

async function setup(): Promise<{ up: Upstream; a: Instance; b: Instance; prefix: string }> {
  const prefix = newPrefix();
  prefixes.push(prefix);
  const up = await startUpstream({ stepMs: 80, autoStart: false });
  opened.push(up);
  const env = { POLL_INTERVAL_MS: '100', LIVE_LEASE_MS: '1500' };
  const a = await startInstance(instanceEnv(up, prefix, 'rec-a', env));
  opened.push(a);
  const b = await startInstance(instanceEnv(up, prefix, 'rec-b', env));
  opened.push(b);
  return { up, a, b, prefix };
}

/** The id of the Redis connection called `name` (CLIENT SETNAME, set by ioredis's connectionName). */
async function clientId(name: string): Promise<string | undefined> {
  const list = (await redis.client('LIST')) as string;
  for (const line of list.split('\n')) {
    if (line.includes(` name=${name} `)) return /(?:^|\s)id=(\d+)/.exec(line)?.[1];
  }
  return undefined;
}

function expectExact(sub: Collected, expected: string[]) {
  expect(sub.errors).toEqual([]);
  expect(sub.completed).toBe(true);
  expect(sub.items.map((e) => e.id)).toEqual(expected);
}

describe('recovery', () => {
  it('a subscriber connection cut mid-job: the streams catch up what they missed, once', async () => {
    const { up, a, b } = await setup();
    const jobId = await createJob(up, 3);
    const before = await restEvents(up, jobId);
    // A leads (its subscriber came first); B only listens.
    const onA = collect(wsClient(a), EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    await waitUntil(() => a.server!.live.stats().pollers === 1, 5000);
    const onB = Array.from({ length: 10 }, (_, i) =>
      collect(wsClient(b), EVENTS_SUB, i % 2 ? { jobId, after: before[0]!.id } : { jobId }, 'fineTuningJobEvents'),
    );
    const jobOnB = collect(wsClient(b), JOB_SUB, { id: jobId }, 'fineTuningJobUpdated');
    await waitUntil(() => b.server!.live.stats().subscribers === 11, 5000);

    up.emulator.start();
    await waitUntil(() => onB.every((s) => s.items.length >= 5), 20_000);
    for (let i = 0; i < 4; i++) {
      const id = await clientId('ftgql-rec-b-sub');
      expect(id).toBeDefined();
      await redis.client('KILL', 'ID', id!);
      await sleep(500);
    }
    await Promise.all([onA.done, jobOnB.done, ...onB.map((s) => s.done)]);
    const rest = await restEvents(up, jobId);
    expectExact(
      onA,
      rest.slice(before.length).map((e) => e.id),
    );
    for (const [i, s] of onB.entries())
      expectExact(
        s,
        rest.slice(i % 2 ? 1 : before.length).map((e) => e.id),
      );
    expect(jobOnB.items.at(-1)!.status).toBe('SUCCEEDED');
    // The recovery path really ran (events were published while B was away).
    expect(sum(await scrape(b), 'ftgql_live_resyncs_total')).toBeGreaterThan(0);
    expect(sum(await scrape(a), 'ftgql_live_resyncs_total')).toBe(0);
  });

  it('the job state vanishes from Redis mid-job: a new baseline, and the streams catch up without a gap or repeat', async () => {
    const { up, a, b, prefix } = await setup();
    const jobId = await createJob(up, 3);
    const before = await restEvents(up, jobId);
    const subs = [a, b].flatMap((inst) => [
      collect(wsClient(inst), EVENTS_SUB, { jobId }, 'fineTuningJobEvents'),
      collect(wsClient(inst), EVENTS_SUB, { jobId, after: before[0]!.id }, 'fineTuningJobEvents'),
    ]);
    // Every field the local service changes while a job runs, so that two different states never look alike.
    const JOB_FULL = `subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id status trainedTokens estimatedFinish finishedAt fineTunedModel } }`;
    const jobs = [a, b].map((inst) => collect(wsClient(inst), JOB_FULL, { id: jobId }, 'fineTuningJobUpdated'));
    await waitUntil(() => a.server!.live.stats().subscribers + b.server!.live.stats().subscribers === 6, 5000);

    up.emulator.start();
    await waitUntil(() => subs.every((s) => s.items.length >= 8), 20_000);
    const state = jobKeys(prefix, credentialHash(KEY), jobId).state;
    const epoch = await redis.hget(state, 'epoch');
    expect(await redis.del(state)).toBe(1);
    await waitUntil(
      async () => {
        const e = await redis.hget(state, 'epoch');
        return e && e !== epoch;
      },
      5000,
      10,
    );

    await Promise.all([...subs.map((s) => s.done), ...jobs.map((s) => s.done)]);
    const rest = await restEvents(up, jobId);
    for (const [i, s] of subs.entries())
      expectExact(
        s,
        rest.slice(i % 2 ? 1 : before.length).map((e) => e.id),
      );
    // Job states: no state twice in a row across the reset (same sequence on both instances, ending SUCCEEDED).
    for (const j of jobs) {
      expect(j.errors).toEqual([]);
      expect(j.items.at(-1)!.status).toBe('SUCCEEDED');
      for (let i = 1; i < j.items.length; i++) expect(j.items[i]).not.toEqual(j.items[i - 1]);
    }
    expect(jobs[1]!.items).toEqual(jobs[0]!.items);
    const resyncs = sum(await scrape(a), 'ftgql_live_resyncs_total') + sum(await scrape(b), 'ftgql_live_resyncs_total');
    expect(resyncs).toBeGreaterThanOrEqual(4);
  });
});
