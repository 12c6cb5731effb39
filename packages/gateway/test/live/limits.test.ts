/**
 * The live layer's bounds (issue 10), against the real local fine-tuning service. Long histories are seeded
 * through the service's own store (seedEvents: Store.insertEvent, what its scheduler writes per step) into a job
 * that really runs; upstream calls are counted at the service (its recorded requests).
 *
 *   - 50 replays of a 10,000-event history on a real server process: /health (probed from another process)
 *     stays fast, every replay is complete and in order, and a SIGTERM in the middle ends the process in time;
 *   - an `after` that is no event of the job, or that is too far back, costs a bounded number of upstream calls,
 *     and the next one fewer still (the poller's window of ids);
 *   - MAX_CONCURRENT_REPLAYS and MAX_WATCHED_JOBS_PER_CREDENTIAL refuse the extra subscription at once with
 *     LIMIT_EXCEEDED while the credential's other subscriptions go on receiving;
 *   - a subscription to a job that does not exist ends at once with NOT_FOUND and leaves no poller.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, spawnServerProcess } from '../helpers/processes.js';
import { registerEnvSecrets } from '../security/leak-state.js';
import {
  type Collected,
  collectWs,
  createJob,
  EVENTS_SUB,
  type Gateway,
  JOB_SUB,
  KEY,
  restEvents,
  seedEvents,
  sleep,
  startGateway,
  startUpstream,
  type Upstream,
  waitUntil,
  wsClient,
} from './helpers.js';

type Ev = { id: string };

/** GETs `url` every `everyMs` from a separate node process, so that the measure is the server's, not this busy process's. */
function startProber(url: string, everyMs = 40): { stop(): Promise<{ at: number; ms: number; status?: number; error?: string; pending?: boolean }[]> } {
  const script = `
    const url = process.argv[1];
    let stop = false;
    let started;
    process.on('SIGTERM', () => {
      stop = true;
      // A probe still unanswered counts with the time it has waited so far.
      if (started !== undefined) {
        console.log(JSON.stringify({ at: Date.now(), ms: performance.now() - started, pending: true }));
        process.exit(0);
      }
    });
    (async () => {
      while (!stop) {
        const t0 = (started = performance.now());
        try {
          const res = await fetch(url);
          await res.text();
          console.log(JSON.stringify({ at: Date.now(), ms: performance.now() - t0, status: res.status }));
        } catch (err) {
          console.log(JSON.stringify({ at: Date.now(), ms: performance.now() - t0, error: String(err) }));
        }
        started = undefined;
        await new Promise((r) => setTimeout(r, ${everyMs}));
      }
    })();`;
  const child: ChildProcess = spawn(process.execPath, ['-e', script, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    },
  };
}

function wsTo(url: string): Client {
  return createClient({ url: `${url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
}

describe('50 replays of a 10,000-event history, on a real server process', () => {
  const REPLAYS = 50;
  let up: Upstream;
  let proc: ServerProcess | undefined;
  let jobId: string;
  /** The job's event ids, oldest first, when the replays start. */
  let history: string[];
  const clients: Client[] = [];

  beforeAll(async () => {
    // One training step every 5 s: the job runs (and writes events) throughout, slowly enough that the history
    // stays within MAX_REPLAY_EVENTS' default (10,000) for the replays of the oldest event.
    up = await startUpstream({ stepMs: 5_000 });
    jobId = await createJob(up, 3, 20);
    const own = (await restEvents(up, jobId)).length;
    seedEvents(up.emulator, jobId, 9_900 - own);
    const env = {
      OPENAI_BASE_URL: up.baseURL,
      OPENAI_API_KEY: KEY,
      PORT: '0',
      HOST: '127.0.0.1',
      AUTH_MODE: 'none',
      LOG_LEVEL: 'warn',
      ACCESS_LOG: '0',
      POLL_INTERVAL_MS: '500',
      // All 50 replays run at once (the default, 4, would refuse 46 of them): the pacing is what is tested here.
      MAX_CONCURRENT_REPLAYS: String(REPLAYS),
    };
    registerEnvSecrets(env);
    proc = await spawnServerProcess(env, 'gateway');
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.dispose();
    if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    await up?.close();
  });

  const replayAll = (): Collected<Ev>[] =>
    Array.from({ length: REPLAYS }, () => {
      const client = wsTo(proc!.url);
      clients.push(client);
      return collectWs<Ev>(client, EVENTS_SUB, { jobId, after: history[0] }, 'fineTuningJobEvents');
    });

  it('/health answers in under 200 ms throughout, and every replay is complete and in order', { timeout: 180_000 }, async () => {
    history = (await restEvents(up, jobId)).map((e) => e.id);
    expect(history.length).toBeGreaterThan(9_890);
    expect(history.length).toBeLessThanOrEqual(10_001);
    const prober = startProber(`${proc!.url}/health`);
    await sleep(300);
    const t0 = Date.now();
    const subs = replayAll();
    const expected = history.slice(1);
    await waitUntil(() => subs.every((s) => s.items.length >= expected.length || s.errors.length > 0 || s.completed), 150_000, 50);
    const t1 = Date.now();
    const probes = await prober.stop();

    for (const s of subs) {
      expect(s.errors).toEqual([]);
      expect(s.items.slice(0, expected.length).map((e) => e.id)).toEqual(expected);
    }
    // Every probe sent while the replays ran (one still unanswered at the end included).
    const during = probes.filter((p) => p.at - p.ms >= t0 && p.at - p.ms <= t1);
    const ms = during.map((p) => p.ms).sort((a, b) => a - b);
    const max = ms[ms.length - 1] ?? Infinity;
    console.log(
      `${REPLAYS} replays × ${expected.length} events in ${t1 - t0} ms; /health during them: ${during.length} probes, ` +
        `p50 ${ms[Math.floor(ms.length / 2)]?.toFixed(1)} ms, max ${max.toFixed(1)} ms`,
    );
    expect(during.every((p) => p.status === 200 || p.pending)).toBe(true);
    expect(during.length).toBeGreaterThanOrEqual(10);
    expect(max).toBeLessThan(200);
  });

  it('a SIGTERM in the middle of 50 replays ends the process within 10 s', { timeout: 120_000 }, async () => {
    history = (await restEvents(up, jobId)).map((e) => e.id);
    const subs = replayAll();
    // In the thick of the replays: 5 % of their events are through.
    const total = REPLAYS * (history.length - 1);
    const delivered = () => subs.reduce((n, s) => n + s.items.length, 0);
    await waitUntil(() => delivered() >= total / 20, 60_000, 5);
    const at = delivered();
    expect(at).toBeLessThan(total / 2);
    const sent = Date.now();
    proc!.child.kill('SIGTERM');
    const exit = await proc!.exited;
    console.log(`SIGTERM with ${at} of ${total} replayed events delivered: exited (${exit.code ?? exit.signal}) after ${exit.at - sent} ms`);
    expect(exit.at - sent).toBeLessThan(10_000);
    expect(exit.code).toBe(0);
  });
});

const ext = (s: Collected) => (s.errors[0] as { extensions?: Record<string, unknown> } | undefined)?.extensions;
/** Events pages of `jobId` the upstream answered since `since` (an index into up.requests). */
const eventsCalls = (up: Upstream, jobId: string, since: number) =>
  up.requests.slice(since).filter((r) => r.method === 'GET' && r.path === `/v1/fine_tuning/jobs/${jobId}/events`).length;

describe('replays cost bounded upstream calls (a 12,000-event job)', () => {
  let up: Upstream;
  let gw: Gateway;
  let jobId: string;
  let history: string[];
  let client: Client;

  beforeAll(async () => {
    // Steps of 10 minutes (validation takes 5 of them): the job writes no event of its own during the test.
    up = await startUpstream({ stepMs: 600_000 });
    jobId = await createJob(up, 3, 20);
    seedEvents(up.emulator, jobId, 12_000);
    history = (await restEvents(up, jobId)).map((e) => e.id);
    // No poll during the test beyond the first one: every events call counted below is one the replays made.
    gw = await startGateway(up, { pollIntervalMs: 600_000 });
    client = wsClient(gw);
  }, 60_000);

  afterAll(async () => {
    await client?.dispose();
    await gw?.close();
    await up?.close();
  });

  it('an `after` that is no event of the job costs at most 2 calls (the page down to the cursor, one check), each time', async () => {
    const start = up.requests.length;
    const live = collectWs<Ev>(client, EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    // The poller's first poll (a retrieve, then the newest event id) is done.
    await waitUntil(() => eventsCalls(up, jobId, start) >= 1 && gw.live.stats().pollers === 1);
    await sleep(50);
    const costs: number[] = [];
    for (const after of ['ftevent-doesnotexist0000000001', 'ftevent-doesnotexist0000000002', 'ftevent-doesnotexist0000000003']) {
      const mark = up.requests.length;
      const s = collectWs<Ev>(client, EVENTS_SUB, { jobId, after }, 'fineTuningJobEvents');
      await s.done;
      expect(ext(s)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'after' });
      expect(s.items).toEqual([]);
      costs.push(eventsCalls(up, jobId, mark));
    }
    console.log(
      `unknown \`after\` on a ${history.length}-event job: ${costs.join(', ')} upstream calls (before the fix: a walk of the whole history, ${Math.ceil(history.length / 100)} pages, each time)`,
    );
    for (const c of costs) expect(c).toBeLessThanOrEqual(2);
    expect(live.errors).toEqual([]);
    live.stop();
  });

  it('an `after` further back than MAX_REPLAY_EVENTS is LIMIT_EXCEEDED; once the window is known, the next costs at most 2 calls', async () => {
    const live = collectWs<Ev>(client, EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    await waitUntil(() => gw.live.stats().pollers === 1);
    const costs: number[] = [];
    for (const after of [history[0]!, history[1]!, history[history.length - 10_002]!]) {
      const mark = up.requests.length;
      const s = collectWs<Ev>(client, EVENTS_SUB, { jobId, after }, 'fineTuningJobEvents');
      await s.done;
      expect(ext(s)).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'replayEvents', field: 'after' });
      expect((s.errors[0] as Error).message).toMatch(/MAX_REPLAY_EVENTS/);
      expect(s.items).toEqual([]);
      costs.push(eventsCalls(up, jobId, mark));
    }
    console.log(`\`after\` further back than 10,000 events: ${costs.join(', ')} upstream calls`);
    // The first walks down to the limit (10,001 events: 101 pages), plus the page to the cursor and the check.
    expect(costs[0]).toBeLessThanOrEqual(103);
    expect(costs[1]).toBeLessThanOrEqual(2);
    expect(costs[2]).toBeLessThanOrEqual(2);

    // Exactly MAX_REPLAY_EVENTS back is a full replay, in order; a recent one walks only as far as it needs.
    const mark = up.requests.length;
    const full = collectWs<Ev>(client, EVENTS_SUB, { jobId, after: history[history.length - 10_001] }, 'fineTuningJobEvents');
    await waitUntil(() => full.items.length >= 10_000 || full.errors.length > 0, 60_000, 20);
    expect(full.errors).toEqual([]);
    expect(full.items.map((e) => e.id)).toEqual(history.slice(-10_000));
    expect(eventsCalls(up, jobId, mark)).toBeLessThanOrEqual(102);
    const mark2 = up.requests.length;
    const recent = collectWs<Ev>(client, EVENTS_SUB, { jobId, after: history[history.length - 151] }, 'fineTuningJobEvents');
    await waitUntil(() => recent.items.length >= 150 || recent.errors.length > 0);
    expect(recent.items.map((e) => e.id)).toEqual(history.slice(-150));
    expect(eventsCalls(up, jobId, mark2)).toBeLessThanOrEqual(2);
    for (const s of [live, full, recent]) s.stop();
  });
});

describe('per-credential limits on subscriptions (events flowing)', () => {
  let up: Upstream;
  let gw: Gateway;
  const clients: Client[] = [];
  const ws = () => {
    const c = wsClient(gw);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    up = await startUpstream({ stepMs: 60 });
    gw = await startGateway(up, { pollIntervalMs: 100, maxBackoffMs: 300, maxConcurrentReplays: 2, maxWatchedJobsPerCredential: 2 });
  });

  afterAll(async () => {
    for (const c of clients) await c.dispose();
    await gw?.close();
    await up?.close();
  });

  it('MAX_CONCURRENT_REPLAYS: two replay at once, the next ones wait for them (up to 8 per slot), one more is refused at once; a live one goes on', async () => {
    const jobId = await createJob(up, 20);
    const [first] = await restEvents(up, jobId);
    const live = collectWs<Ev>(ws(), EVENTS_SUB, { jobId }, 'fineTuningJobEvents');
    await waitUntil(() => live.items.length >= 3);
    // Slow events pages: the two replays are still walking when the others come.
    up.emulator.setFaults({ latencyMs: 1_500, routes: ['GET /v1/fine_tuning/jobs/:id/events'] });
    const r1 = collectWs<Ev>(ws(), EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    const r2 = collectWs<Ev>(ws(), EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    await sleep(100);
    // 2 slots × 8 may wait: 16 wait, the 17th is refused at once.
    const waiting = Array.from({ length: 16 }, () => collectWs<Ev>(ws(), EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents'));
    await sleep(200);
    const t0 = Date.now();
    const refused = collectWs<Ev>(ws(), EVENTS_SUB, { jobId, after: first!.id }, 'fineTuningJobEvents');
    await refused.done;
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(ext(refused)).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'concurrentReplays' });
    expect((refused.errors[0] as Error).message).toMatch(/MAX_CONCURRENT_REPLAYS/);
    expect(refused.items).toEqual([]);
    expect(r1.items.length + r2.items.length).toBe(0); // still replaying: the refusal did not wait for them
    expect(waiting.every((w) => w.items.length === 0 && w.errors.length === 0 && !w.completed)).toBe(true);
    up.emulator.setFaults(undefined);

    // The two replays catch up and continue live, then the waiting ones get their turn; the live one never stopped.
    const liveBefore = live.items.length;
    const rest = await restEvents(up, jobId);
    const all = [r1, r2, ...waiting];
    await waitUntil(() => all.every((r) => r.items.length >= rest.length - 1) && live.items.length > liveBefore + 3, 30_000);
    const now = await restEvents(up, jobId);
    for (const r of all) {
      expect(r.errors).toEqual([]);
      const ids = r.items.map((e) => e.id);
      expect(ids).toEqual(now.slice(1, 1 + ids.length).map((e) => e.id));
    }
    expect(live.errors).toEqual([]);
    for (const s of [live, ...all]) s.stop();
    await waitUntil(() => gw.live.stats().pollers === 0);
  });

  it('MAX_WATCHED_JOBS_PER_CREDENTIAL: a third job is refused at once, more streams of a watched job are not; the others go on', async () => {
    const [a, b, c] = await Promise.all([createJob(up, 20), createJob(up, 20), createJob(up, 20)]);
    const onA = collectWs<Ev>(ws(), EVENTS_SUB, { jobId: a }, 'fineTuningJobEvents');
    const stateOfA = collectWs<{ status: string }>(ws(), JOB_SUB, { id: a }, 'fineTuningJobUpdated');
    const onB = collectWs<Ev>(ws(), EVENTS_SUB, { jobId: b }, 'fineTuningJobEvents');
    await waitUntil(() => onA.items.length >= 2 && stateOfA.items.length >= 1 && onB.items.length >= 2 && gw.live.stats().pollers === 2);

    const t0 = Date.now();
    const onC = collectWs<Ev>(ws(), EVENTS_SUB, { jobId: c }, 'fineTuningJobEvents');
    const onCJob = collectWs(ws(), JOB_SUB, { id: c }, 'fineTuningJobUpdated');
    await Promise.all([onC.done, onCJob.done]);
    expect(Date.now() - t0).toBeLessThan(1_000);
    for (const s of [onC, onCJob]) {
      expect(ext(s)).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'watchedJobs' });
      expect((s.errors[0] as Error).message).toMatch(/MAX_WATCHED_JOBS_PER_CREDENTIAL/);
      expect(s.items).toEqual([]);
    }
    expect(gw.live.stats().pollers).toBe(2);
    // Counted in /metrics by limit.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^ftgql_limit_refusals_total\{limit="watchedJobs"\} 2$/m);

    // A job already watched takes more streams; both watched jobs keep delivering.
    const moreA = collectWs<Ev>(ws(), EVENTS_SUB, { jobId: a }, 'fineTuningJobEvents');
    const [aBefore, bBefore] = [onA.items.length, onB.items.length];
    await waitUntil(() => moreA.items.length >= 2 && onA.items.length >= aBefore + 3 && onB.items.length >= bBefore + 3);
    expect([onA, stateOfA, onB, moreA].flatMap((s) => s.errors)).toEqual([]);
    expect(stateOfA.completed).toBe(false);

    // Once B is no longer watched, C can be.
    onB.stop();
    await waitUntil(() => gw.live.stats().pollers === 1);
    const onC2 = collectWs<Ev>(ws(), EVENTS_SUB, { jobId: c }, 'fineTuningJobEvents');
    await waitUntil(() => onC2.items.length >= 2 || onC2.errors.length > 0);
    expect(onC2.errors).toEqual([]);
    for (const s of [onA, stateOfA, moreA, onC2]) s.stop();
    await waitUntil(() => gw.live.stats().pollers === 0);
  });
});

describe('subscriptions to a job that does not exist', () => {
  // Four jobs: their four replays fit MAX_CONCURRENT_REPLAYS' default.
  const JOBS = 4;
  let up: Upstream;
  let gw: Gateway;
  let client: Client;

  beforeAll(async () => {
    up = await startUpstream({ stepMs: 60 });
    gw = await startGateway(up, { pollIntervalMs: 100, maxBackoffMs: 300 });
    client = wsClient(gw);
  });

  afterAll(async () => {
    await client?.dispose();
    await gw?.close();
    await up?.close();
  });

  it('a job that does not exist: every stream ends at once with NOT_FOUND, nothing stays registered', async () => {
    const mark = up.requests.length;
    const t0 = Date.now();
    const subs = Array.from({ length: JOBS }, (_, i) => {
      const jobId = `ftjob-doesnotexist${String(i).padStart(6, '0')}`;
      const c = client;
      return [
        collectWs(c, EVENTS_SUB, { jobId }, 'fineTuningJobEvents'),
        collectWs(c, EVENTS_SUB, { jobId, after: 'ftevent-doesnotexist000000001' }, 'fineTuningJobEvents'),
        collectWs(c, JOB_SUB, { id: jobId }, 'fineTuningJobUpdated'),
      ];
    }).flat();
    await Promise.all(subs.map((s) => s.done));
    const took = Date.now() - t0;
    for (const s of subs) {
      expect(ext(s)).toMatchObject({ code: 'NOT_FOUND' });
      expect(s.completed).toBe(true);
      expect(s.items).toEqual([]);
    }
    expect(took).toBeLessThan(3_000);
    await waitUntil(() => gw.live.stats().pollers === 0 && gw.live.stats().subscribers === 0, 2_000);
    const calls = up.requests.slice(mark).filter((r) => r.path.includes('doesnotexist')).length;
    console.log(`${subs.length} streams on ${JOBS} jobs that do not exist: ended in ${took} ms, ${calls} upstream calls`);
    // One retrieve per job (404), maybe one events page raced with it.
    expect(calls).toBeLessThanOrEqual(JOBS * 2);
    // And a poll later, still nothing.
    await sleep(300);
    expect(gw.live.stats()).toEqual({ pollers: 0, subscribers: 0 });
  });
});
