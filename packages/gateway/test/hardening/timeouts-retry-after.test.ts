/**
 * The time budget of upstream calls (UPSTREAM_TIMEOUT_MS) and Retry-After, timed at the upstream.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { uploadTraining } from '@finetune-graphql/emulator/testing';
import { type Gateway, KEY, startGateway, startUpstream, type TimedRequest, type Upstream } from './helpers.js';

const JOB = 'query Job($id: ID!) { fineTuningJob(id: $id) { id status } }';
const CANCEL = 'mutation Cancel($id: ID!) { cancelFineTuningJob(id: $id) { __typename ... on Error { message } } }';
const RETRIEVE = 'GET /v1/fine_tuning/jobs/:id';

let up: Upstream | undefined;
let gw: Gateway | undefined;
afterEach(async () => {
  await gw?.close();
  await up?.close();
  gw = undefined;
  up = undefined;
});

async function jobOn(u: Upstream): Promise<string> {
  const c = u.client(KEY);
  const job = await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: await uploadTraining(c) });
  return job.id;
}

/** Turns the faults off once the first injected 429 has been answered, so that the retry succeeds. */
function healAfterFirst429(u: Upstream) {
  return (r: TimedRequest) => {
    if (r.fault === 'rate_limit') u.emulator.setFaults(undefined);
  };
}

describe('upstream call budget', () => {
  it('an upstream that never answers → UPSTREAM_UNAVAILABLE within UPSTREAM_TIMEOUT_MS, for reads and writes', async () => {
    up = await startUpstream({ stepMs: 1000 });
    const id = await jobOn(up);
    gw = await startGateway(up.baseURL, { UPSTREAM_TIMEOUT_MS: '400' });
    up.emulator.setFaults({ hangRate: 1 });

    for (const [query, field] of [
      [JOB, 'fineTuningJob'],
      [CANCEL, 'cancelFineTuningJob'],
      ['{ fineTuningJobs(first: 5) { edges { node { id } } } }', 'fineTuningJobs'],
    ] as const) {
      const t0 = Date.now();
      const r = await gw.gql(query, { id });
      const elapsed = Date.now() - t0;
      expect(r.status).toBe(200);
      expect(r.errors?.[0]?.extensions?.code).toBe('UPSTREAM_UNAVAILABLE');
      expect(r.errors?.[0]?.message).toMatch(/did not answer in time/);
      expect(r.errors?.[0]?.path).toEqual([field]);
      expect(elapsed).toBeGreaterThanOrEqual(390);
      expect(elapsed).toBeLessThan(400 + 400);
    }
    // Each call spent its whole budget on one attempt: nothing was retried past the deadline.
    await new Promise((r) => setTimeout(r, 50));
    expect(up.timed.filter((t) => t.fault === 'hang')).toHaveLength(3);
    expect(gw.logs()).not.toContain(KEY);
  });

  it('a slow answer inside the budget is not cut', async () => {
    up = await startUpstream({ stepMs: 1000 });
    const id = await jobOn(up);
    gw = await startGateway(up.baseURL, { UPSTREAM_TIMEOUT_MS: '1500' });
    up.emulator.setFaults({ latencyMs: 400 });
    const t0 = Date.now();
    const r = await gw.gql(JOB, { id });
    expect(r.errors).toBeUndefined();
    expect(r.data.fineTuningJob.id).toBe(id);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
  });
});

describe('Retry-After', () => {
  it('is honoured: the retry reaches the upstream no sooner than retry-after-ms', async () => {
    let heal: (r: TimedRequest) => void = () => undefined;
    up = await startUpstream({ stepMs: 1000, onTimed: (r) => heal(r) });
    const id = await jobOn(up);
    gw = await startGateway(up.baseURL);
    heal = healAfterFirst429(up);
    up.emulator.setFaults({ rateLimitRate: 1, retryAfterMs: 700, routes: [`GET /v1/fine_tuning/jobs/:id`] });
    const r = await gw.gql(JOB, { id });
    expect(r.errors).toBeUndefined();
    const calls = up.timed.filter((t) => t.route === RETRIEVE);
    expect(calls.map((t) => t.status)).toEqual([429, 200]);
    const gap = calls[1]!.at - calls[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(690);
    expect(gap).toBeLessThan(700 * 1.1 + 300);
  });

  it('is honoured in whole seconds when the upstream sends only Retry-After', async () => {
    let heal: (r: TimedRequest) => void = () => undefined;
    up = await startUpstream({ stepMs: 1000, onTimed: (r) => heal(r) });
    const id = await jobOn(up);
    gw = await startGateway(up.baseURL);
    heal = healAfterFirst429(up);
    up.emulator.setFaults({ rateLimitRate: 1, retryAfterMs: 1000, retryAfterMsHeader: false, routes: [RETRIEVE] });
    const r = await gw.gql(JOB, { id });
    expect(r.errors).toBeUndefined();
    const calls = up.timed.filter((t) => t.route === RETRIEVE);
    expect(calls.map((t) => t.status)).toEqual([429, 200]);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(990);
  });

  it('above UPSTREAM_RETRY_AFTER_MAX_MS it is not waited for: RATE_LIMITED with retryAfter at once', async () => {
    up = await startUpstream({ stepMs: 1000 });
    const id = await jobOn(up);
    gw = await startGateway(up.baseURL, { UPSTREAM_RETRY_AFTER_MAX_MS: '1000' });
    up.emulator.setFaults({ rateLimitRate: 1, retryAfterMs: 3000, routes: [RETRIEVE] });
    const t0 = Date.now();
    const r = await gw.gql(JOB, { id });
    expect(Date.now() - t0).toBeLessThan(500);
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfter: 3 });
    expect(up.timed.filter((t) => t.route === RETRIEVE)).toHaveLength(1);

    // Under the cap, the same wait is made.
    up.emulator.setFaults({ rateLimitRate: 1, retryAfterMs: 800, routes: [RETRIEVE] });
    const t1 = Date.now();
    const limited = await gw.gql(JOB, { id });
    // Every attempt is limited: 1 + 3 retries, each after 800 ms, then RATE_LIMITED.
    expect(limited.errors?.[0]?.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfter: 1 });
    expect(Date.now() - t1).toBeGreaterThanOrEqual(3 * 800);
    const calls = up.timed.filter((t) => t.route === RETRIEVE).slice(1);
    expect(calls).toHaveLength(4);
    for (let i = 1; i < calls.length; i++) expect(calls[i]!.at - calls[i - 1]!.at).toBeGreaterThanOrEqual(790);
  });
});
