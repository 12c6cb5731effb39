/**
 * Killing the polling instance (SIGKILL, a child process) mid-job: another instance takes the lease over within
 * the lease time and resumes from the last published event kept in Redis; no subscriber on the surviving
 * instances misses or repeats an event, and the killed instance's subscribers reconnect elsewhere with `after`
 * and get exactly the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
const PER_INSTANCE = 30;

const prefix = newPrefix();
const redis = redisClient();
let up: Upstream;
const instances: Instance[] = [];

beforeAll(async () => {
  up = await startUpstream({ stepMs: 100, autoStart: false });
  const started = await Promise.all(
    [0, 1, 2].map((i) => spawnInstance(instanceEnv(up, prefix, `handover-${i}`, { POLL_INTERVAL_MS: String(POLL_MS), LIVE_LEASE_MS: String(LEASE_MS) }))),
  );
  instances.push(...started);
});

afterAll(async () => {
  await Promise.all(instances.map((i) => i.close()));
  await up?.close();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

describe('leader handover', () => {
  it('SIGKILL of the polling instance mid-job: the lease moves within the lease time, no event missed or repeated', async () => {
    const jobId = await createJob(up, 3, 20);
    const before = await restEvents(up, jobId);
    const lease = jobKeys(prefix, credentialHash(KEY), jobId).lease;

    const subs: { sub: Collected; instance: number }[] = [];
    const clients = instances.map((inst) => Array.from({ length: 3 }, () => wsClient(inst)));
    for (let i = 0; i < PER_INSTANCE * 3; i++) {
      const instance = i % 3;
      subs.push({ sub: collect(clients[instance]![i % 3]!, EVENTS_SUB, { jobId }, 'fineTuningJobEvents'), instance });
    }
    await waitUntil(
      async () => {
        const counts = await Promise.all(instances.map(async (inst) => sum(await scrape(inst), 'ftgql_live_subscriptions')));
        return counts.every((c) => c === PER_INSTANCE);
      },
      30_000,
      100,
    );

    up.emulator.start();
    // Well into the run: events flow to everyone.
    await waitUntil(() => subs.every((s) => s.sub.items.length >= 10), 30_000, 20);
    const holder = await redis.get(lease);
    const victim = instances.findIndex((i) => i.id === holder);
    expect(victim).toBeGreaterThanOrEqual(0);

    const killedAt = Date.now();
    await instances[victim]!.kill('SIGKILL');
    const newHolder = await waitUntil(
      async () => {
        const h = await redis.get(lease);
        return h && h !== holder ? h : undefined;
      },
      LEASE_MS * 4,
      5,
    );
    const acquiredAt = Date.now();
    const firstPoll = await waitUntil(() => pollsOf(up, jobId, killedAt).retrieves[0], LEASE_MS * 4, 5);
    expect((await up.client(KEY).fineTuning.jobs.retrieve(jobId)).status).toBe('running');

    // The killed instance's subscribers were cut off; they reconnect to a survivor with the last event they have.
    const survivors = instances.filter((_, i) => i !== victim);
    const orphans = subs.filter((s) => s.instance === victim);
    await Promise.all(orphans.map((o) => o.sub.done));
    const resumed = orphans.map((o, i) => {
      const last = o.sub.items[o.sub.items.length - 1]!;
      return collect(wsClient(survivors[i % 2]!), EVENTS_SUB, { jobId, after: last.id }, 'fineTuningJobEvents');
    });

    const living = subs.filter((s) => s.instance !== victim);
    await Promise.all([...living.map((s) => s.sub.done), ...resumed.map((r) => r.done)]);
    const rest = await restEvents(up, jobId);
    const expected = rest.slice(before.length).map((e) => e.id);
    expect(expected.length).toBeGreaterThan(40);

    let delivered = 0;
    for (const { sub } of living) {
      expect(sub.errors).toEqual([]);
      expect(sub.completed).toBe(true);
      expect(sub.items.map((e) => e.id)).toEqual(expected);
      delivered += sub.items.length;
    }
    for (const [i, o] of orphans.entries()) {
      expect(o.sub.completed).toBe(false); // cut off by the kill
      expect(resumed[i]!.errors).toEqual([]);
      expect([...o.sub.items, ...resumed[i]!.items].map((e) => e.id)).toEqual(expected);
    }

    // The lease moved within the lease time (plus one attempt interval), and the job had one poller after it.
    const handoverMs = acquiredAt - killedAt;
    expect(newHolder).not.toBe(holder);
    expect(handoverMs).toBeLessThanOrEqual(LEASE_MS + POLL_MS + 300);
    const pollers = await Promise.all(survivors.map(async (inst) => sum(await scrape(inst), 'ftgql_live_pollers')));
    expect(pollers.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1); // 0 once the job ended
    const after = pollsOf(up, jobId, firstPoll.at, firstPoll.at + 2000).retrieves.length;
    expect(after).toBeLessThanOrEqual(Math.ceil((2000 / POLL_MS) * 1.2) + 1);

    console.log(
      `[cluster handover] leader ${holder} killed; ${newHolder} took the lease after ${handoverMs} ms ` +
        `(lease ${LEASE_MS} ms, poll ${POLL_MS} ms), first poll after the kill at +${firstPoll.at - killedAt} ms; ` +
        `${living.length} surviving subscribers got all ${expected.length} events once (${delivered} deliveries), ` +
        `${orphans.length} cut-off subscribers resumed on the survivors with \`after\` without a gap or repeat`,
    );
    await sleep(10);
    for (const c of clients.flat()) await Promise.resolve(c.dispose()).catch(() => undefined);

    // The survivors shut down cleanly on SIGTERM (leases given back, Redis connections closed, exit 0).
    for (const inst of survivors) {
      await inst.close();
      expect(inst.child!.exitCode).toBe(0);
      expect(inst.output()).not.toMatch(/unhandled|uncaught/i);
    }
  });
});
