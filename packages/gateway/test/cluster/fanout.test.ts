/**
 * Three instances (child processes) on one Redis and one upstream, 300 graphql-ws subscribers spread over them:
 * the upstream sees one poll per interval for the job (not three), every subscriber gets every event once, in
 * order, equal to the REST list, and replays with `after` started on any instance mid-job join the live stream
 * without a gap or a repeat. Polls are counted at the upstream (its request hook).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  collect,
  type Collected,
  createJob,
  deletePrefix,
  dumpPrefix,
  EVENTS_SUB,
  type Instance,
  instanceEnv,
  JOB_SUB,
  KEY,
  newPrefix,
  pollsOf,
  redisClient,
  restEvents,
  scrape,
  sleep,
  spawnInstance,
  startUpstream,
  sum,
  type Upstream,
  waitUntil,
  wsClient,
} from './helpers.js';

const POLL_MS = 200;
const LEASE_MS = 1500;
const SUBSCRIBERS = 300;
const SOCKETS_PER_INSTANCE = 10;
const WINDOW_MS = 3000;

const prefix = newPrefix();
const redis = redisClient();
let up: Upstream;
const instances: Instance[] = [];

beforeAll(async () => {
  // Jobs wait in validating_files until the scheduler starts: every subscriber is in place before events flow.
  up = await startUpstream({ stepMs: 120, autoStart: false });
  const started = await Promise.all(
    [0, 1, 2].map((i) => spawnInstance(instanceEnv(up, prefix, `fanout-${i}`, { POLL_INTERVAL_MS: String(POLL_MS), LIVE_LEASE_MS: String(LEASE_MS) }))),
  );
  instances.push(...started);
});

afterAll(async () => {
  await Promise.all(instances.map((i) => i.close()));
  await up?.close();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

describe('three instances on one Redis', () => {
  it(`${SUBSCRIBERS} subscribers: one poll per interval at the upstream, every event once and in order`, async () => {
    const jobId = await createJob(up, 3, 20);
    const before = await restEvents(up, jobId);
    expect(before.length).toBeGreaterThan(0);

    const clients = instances.map((inst) => Array.from({ length: SOCKETS_PER_INSTANCE }, () => wsClient(inst)));
    // Half without `after` (the events from now on), half with the job's first event (a replay, then live).
    const subs: { sub: Collected; withAfter: boolean; instance: number }[] = [];
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const instance = i % 3;
      const client = clients[instance]![Math.floor(i / 3) % SOCKETS_PER_INSTANCE]!;
      const withAfter = i % 2 === 1;
      subs.push({
        sub: collect(client, EVENTS_SUB, withAfter ? { jobId, after: before[0]!.id } : { jobId }, 'fineTuningJobEvents'),
        withAfter,
        instance,
      });
    }
    const jobSubs = instances.map((_, i) => collect(clients[i]![0]!, JOB_SUB, { id: jobId }, 'fineTuningJobUpdated'));
    await waitUntil(
      async () => {
        const counts = await Promise.all(instances.map(async (inst) => sum(await scrape(inst), 'ftgql_live_subscriptions')));
        return counts.reduce((a, b) => a + b, 0) === SUBSCRIBERS + jobSubs.length;
      },
      30_000,
      100,
    );

    const t0 = Date.now();
    up.emulator.start();
    await waitUntil(async () => (await up.client(KEY).fineTuning.jobs.retrieve(jobId)).status === 'running', 20_000, 50);

    // Steady state: polls of the job at the upstream during a window, and who polls.
    await sleep(POLL_MS * 2);
    const from = Date.now();
    await sleep(WINDOW_MS);
    const window = pollsOf(up, jobId, from, from + WINDOW_MS);
    const pollers = await Promise.all(instances.map(async (inst) => sum(await scrape(inst), 'ftgql_live_pollers')));

    // Late subscribers, mid-job, one pair per instance: `after` an event a few back (replay, then live) and `after`
    // the newest event (usually ahead of what the poller has published: nothing to replay, live from there).
    const now = await restEvents(up, jobId);
    expect((await up.client(KEY).fineTuning.jobs.retrieve(jobId)).status).toBe('running');
    const late = instances.flatMap((_, i) => [
      { after: now[now.length - 6]!.id, sub: collect(clients[i]![1]!, EVENTS_SUB, { jobId, after: now[now.length - 6]!.id }, 'fineTuningJobEvents') },
      { after: now[now.length - 1]!.id, sub: collect(clients[i]![2]!, EVENTS_SUB, { jobId, after: now[now.length - 1]!.id }, 'fineTuningJobEvents') },
    ]);

    await Promise.all([...subs.map((s) => s.sub.done), ...jobSubs.map((s) => s.done), ...late.map((l) => l.sub.done)]);
    const duration = Date.now() - t0;
    const rest = await restEvents(up, jobId);
    const ids = (items: { id: string }[]) => items.map((e) => e.id);
    const fromNow = ids(rest.slice(before.length));
    const afterFirst = ids(rest.slice(1));

    let delivered = 0;
    for (const { sub, withAfter } of subs) {
      expect(sub.errors).toEqual([]);
      expect(sub.completed).toBe(true);
      expect(ids(sub.items)).toEqual(withAfter ? afterFirst : fromNow);
      expect(sub.items.map((e) => e.message)).toEqual((withAfter ? rest.slice(1) : rest.slice(before.length)).map((e) => e.message));
      delivered += sub.items.length;
    }
    for (const { after, sub } of late) {
      expect(sub.errors).toEqual([]);
      expect(ids(sub.items)).toEqual(ids(rest.slice(rest.findIndex((e) => e.id === after) + 1)));
    }
    for (const sub of jobSubs) {
      expect(sub.errors).toEqual([]);
      const statuses = sub.items.map((j) => j.status);
      expect(statuses[0]).toBe('VALIDATING_FILES');
      expect(statuses[statuses.length - 1]).toBe('SUCCEEDED');
    }
    // The same job states, in the same order, on every instance.
    expect(jobSubs[1]!.items).toEqual(jobSubs[0]!.items);
    expect(jobSubs[2]!.items).toEqual(jobSubs[0]!.items);

    // One poller in the cluster, one poll per interval (three independent pollers would make ~3×).
    const perWindow = WINDOW_MS / POLL_MS;
    expect(pollers.reduce((a, b) => a + b, 0)).toBe(1);
    expect(window.retrieves.length).toBeGreaterThanOrEqual(Math.floor(perWindow * 0.7));
    expect(window.retrieves.length).toBeLessThanOrEqual(Math.ceil(perWindow * 1.2) + 1);

    // Nothing in Redis holds the API key.
    const dump = await dumpPrefix(redis, prefix);
    expect(dump.length).toBeGreaterThan(0);
    for (const { key, value } of dump) {
      expect(key).not.toContain(KEY);
      expect(value).not.toContain(KEY);
    }

    console.log(
      `[cluster fan-out] 3 instances, ${SUBSCRIBERS} event subscribers (+${jobSubs.length} job, +${late.length} late replays), ` +
        `poll interval ${POLL_MS} ms: ${window.retrieves.length} polls of the job in ${WINDOW_MS} ms ` +
        `(${(window.retrieves.length / perWindow).toFixed(2)} per interval; pollers per instance ${pollers.join('/')}), ` +
        `${delivered} events delivered (${rest.length} in the job), job run ${duration} ms`,
    );
    for (const c of clients.flat()) await c.dispose();
  });
});
