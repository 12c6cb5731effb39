/**
 * The live layer's bounds in cluster mode (two instances in this process, one Redis, one local fine-tuning
 * service), counted per instance: MAX_WATCHED_JOBS_PER_CREDENTIAL and MAX_CONCURRENT_REPLAYS refuse the extra
 * subscription at once with LIMIT_EXCEEDED while the others go on; an `after` that is no event of the job, or that
 * is too far back (MAX_REPLAY_EVENTS), costs a bounded number of upstream calls on any instance; a job that does
 * not exist leaves no watch behind.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { seedEvents } from '../live/helpers.js';
import {
  type Collected,
  collect,
  createJob,
  deletePrefix,
  EVENTS_SUB,
  type Instance,
  instanceEnv,
  JOB_SUB,
  newPrefix,
  redisClient,
  restEvents,
  sleep,
  startInstance,
  startUpstream,
  type Upstream,
  waitUntil,
  wsClient,
} from './helpers.js';

type Ev = { id: string };
const prefix = newPrefix();
const redis = redisClient();
const opened: { close(): Promise<void> }[] = [];

afterAll(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => undefined);
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

const ext = (s: Collected) => (s.errors[0] as { extensions?: Record<string, unknown> } | undefined)?.extensions;
const eventsCalls = (up: Upstream, jobId: string, since: number) =>
  up.requests.slice(since).filter((r) => r.method === 'GET' && r.path === `/v1/fine_tuning/jobs/${jobId}/events`).length;

async function setup(stepMs: number, env: Record<string, string>): Promise<{ up: Upstream; a: Instance; b: Instance }> {
  const up = await startUpstream({ stepMs });
  opened.push(up);
  const [a, b] = await Promise.all(['lim-a', 'lim-b'].map((id) => startInstance(instanceEnv(up, prefix, id, env))));
  opened.push(a!, b!);
  return { up, a: a!, b: b! };
}

function subscriber(inst: Instance) {
  const client = wsClient(inst);
  opened.push({ close: () => client.dispose() as Promise<void> });
  return client;
}

describe('cluster mode: per-credential limits, per instance', () => {
  it('MAX_WATCHED_JOBS_PER_CREDENTIAL and MAX_CONCURRENT_REPLAYS refuse the extra stream at once; the others go on', async () => {
    const { up, a, b } = await setup(60, {
      POLL_INTERVAL_MS: '100',
      LIVE_LEASE_MS: '1000',
      MAX_WATCHED_JOBS_PER_CREDENTIAL: '2',
      MAX_CONCURRENT_REPLAYS: '1',
    });
    const [j1, j2, j3] = await Promise.all([createJob(up, 20), createJob(up, 20), createJob(up, 20)]);
    const onA1 = collect<Ev>(subscriber(a), EVENTS_SUB, { jobId: j1 }, 'fineTuningJobEvents');
    const onA2 = collect(subscriber(a), JOB_SUB, { id: j2 }, 'fineTuningJobUpdated');
    await waitUntil(() => onA1.items.length >= 2 && onA2.items.length >= 1);

    // A third job on instance a is refused at once; on instance b (its own count) it is not.
    const t0 = Date.now();
    const onA3 = collect<Ev>(subscriber(a), EVENTS_SUB, { jobId: j3 }, 'fineTuningJobEvents');
    await onA3.done;
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(ext(onA3)).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'watchedJobs' });
    const onB3 = collect<Ev>(subscriber(b), EVENTS_SUB, { jobId: j3 }, 'fineTuningJobEvents');
    // A job already watched on a takes more streams.
    const moreA1 = collect<Ev>(subscriber(a), EVENTS_SUB, { jobId: j1 }, 'fineTuningJobEvents');
    const before = onA1.items.length;
    await waitUntil(() => onB3.items.length >= 2 && moreA1.items.length >= 2 && onA1.items.length >= before + 3);
    expect([onA1, onA2, onB3, moreA1].flatMap((s) => s.errors)).toEqual([]);

    // One replay at a time per credential on an instance: slow events pages keep the first one walking; 8 more
    // wait for it, the next is refused at once.
    const [first] = await restEvents(up, j1);
    up.emulator.setFaults({ latencyMs: 1_500, routes: ['GET /v1/fine_tuning/jobs/:id/events'] });
    const r1 = collect<Ev>(subscriber(a), EVENTS_SUB, { jobId: j1, after: first!.id }, 'fineTuningJobEvents');
    await sleep(100);
    const waiting = Array.from({ length: 8 }, () => collect<Ev>(subscriber(a), EVENTS_SUB, { jobId: j1, after: first!.id }, 'fineTuningJobEvents'));
    await sleep(200);
    const t1 = Date.now();
    const r2 = collect<Ev>(subscriber(a), EVENTS_SUB, { jobId: j1, after: first!.id }, 'fineTuningJobEvents');
    await r2.done;
    expect(Date.now() - t1).toBeLessThan(1_000);
    expect(ext(r2)).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'concurrentReplays' });
    expect(r1.items).toEqual([]);
    up.emulator.setFaults(undefined);
    const rest = await restEvents(up, j1);
    await waitUntil(() => [r1, ...waiting].every((r) => r.items.length >= rest.length - 1 || r.errors.length > 0), 30_000);
    for (const w of waiting) {
      expect(w.errors).toEqual([]);
      expect(w.items.slice(0, rest.length - 1).map((e) => e.id)).toEqual(rest.slice(1).map((e) => e.id));
    }
    expect(r1.errors).toEqual([]);
    expect(r1.items.slice(0, rest.length - 1).map((e) => e.id)).toEqual(rest.slice(1).map((e) => e.id));
    for (const s of [onA1, onA2, onB3, moreA1, r1]) s.stop();
  });

  it('an `after` that is no event of the job, or too far back, costs a bounded number of calls; an unknown job leaves no watch', async () => {
    // One poll a minute: the events calls counted below are the replays' own.
    const { up, a, b } = await setup(600_000, { POLL_INTERVAL_MS: '60000' });
    const jobId = await createJob(up, 3);
    seedEvents(up.emulator, jobId, 10_500);
    const history = (await restEvents(up, jobId)).map((e) => e.id);
    // The job is watched on both instances (each keeps its own window of ids while it watches the job).
    const keep = [a, b].map((inst) => collect<Ev>(subscriber(inst), EVENTS_SUB, { jobId }, 'fineTuningJobEvents'));
    await waitUntil(() => a.server!.live.stats().subscribers === 1 && b.server!.live.stats().subscribers === 1);
    await sleep(300);

    const costs: Record<string, number[]> = { unknown: [], tooFar: [] };
    for (const inst of [a, b, a, b]) {
      for (const [kind, after, code] of [
        ['unknown', 'ftevent-doesnotexist0000000001', 'BAD_USER_INPUT'],
        ['tooFar', history[0]!, 'LIMIT_EXCEEDED'],
      ] as const) {
        const mark = up.requests.length;
        const s = collect<Ev>(subscriber(inst), EVENTS_SUB, { jobId, after }, 'fineTuningJobEvents');
        await s.done;
        expect(ext(s)).toMatchObject({ code, field: 'after' });
        expect(s.items).toEqual([]);
        costs[kind]!.push(eventsCalls(up, jobId, mark));
      }
    }
    console.log(
      `cluster, a ${history.length}-event job, instances a, b, a, b: unknown \`after\` ${costs.unknown!.join(', ')} calls; too far back ${costs.tooFar!.join(', ')} calls`,
    );
    for (const c of costs.unknown!) expect(c).toBeLessThanOrEqual(2);
    // The first on each instance walks down to the limit (10,001 events); then the instance's window answers.
    for (const c of costs.tooFar!.slice(0, 2)) expect(c).toBeLessThanOrEqual(103);
    for (const c of costs.tooFar!.slice(2)) expect(c).toBeLessThanOrEqual(2);
    for (const k of keep) k.stop();

    // (The seeded job's leader may go on until its next poll, a minute away: count watches against that.)
    const watches = (i: Instance) => (i.server!.live as unknown as { watchCount(): number }).watchCount();
    const before = [a, b].map(watches);
    const missing = [a, b].map((inst) => collect(subscriber(inst), EVENTS_SUB, { jobId: 'ftjob-doesnotexist00000001' }, 'fineTuningJobEvents'));
    await Promise.all(missing.map((s) => s.done));
    for (const s of missing) expect(ext(s)).toMatchObject({ code: 'NOT_FOUND' });
    await waitUntil(() => [a, b].every((i, n) => watches(i) <= before[n]! && i.server!.live.stats().subscribers === 0), 5_000);
  });
});
