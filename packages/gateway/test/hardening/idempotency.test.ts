/**
 * createFineTuningJob with an idempotencyKey, against a local service that IGNORES Idempotency-Key
 * (honourIdempotencyKeys: false), so only the gateway's own store and reconciliation can prevent doubles.
 * Creates are counted at the upstream (its request hook) and jobs in its REST list.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InMemoryIdempotencyStore } from '../../src/upstream/idempotency.js';
import { uploadTraining } from '@finetune-graphql/emulator/testing';
import { type Gateway, KEY, sleep, startGateway, startUpstream, type Upstream } from './helpers.js';

const CREATE = `mutation Create($input: CreateFineTuningJobInput!) {
  createFineTuningJob(input: $input) {
    __typename
    ... on CreateFineTuningJobSuccess { job { id status metadata userProvidedSuffix } }
    ... on ValidationError { message field }
    ... on Error { message }
  }
}`;
const POST_JOBS = 'POST /v1/fine_tuning/jobs';

let up: Upstream;
let gw: Gateway;
let trainingFile: string;

const jobsWithSuffix = async (suffix: string) =>
  (await up.client(KEY).fineTuning.jobs.list({ limit: 100 })).data.filter(
    (j) => (j as unknown as { user_provided_suffix: string | null }).user_provided_suffix === suffix,
  );
const input = (suffix: string, idempotencyKey?: string, extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini-2024-07-18',
  trainingFile,
  suffix,
  ...(idempotencyKey ? { idempotencyKey } : {}),
  ...extra,
});

describe('idempotent createFineTuningJob through the gateway (upstream ignores Idempotency-Key)', () => {
  beforeAll(async () => {
    up = await startUpstream({ stepMs: 1000, honourIdempotencyKeys: false });
    trainingFile = await uploadTraining(up.client(KEY));
    gw = await startGateway(up.baseURL, { UPSTREAM_TIMEOUT_MS: '5000' });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });
  afterEach(() => up.emulator.setFaults(undefined));

  it('the upstream really ignores the header: two REST creates with one key make two jobs', async () => {
    const c = up.client(KEY);
    const opts = { headers: { 'Idempotency-Key': 'rest-key' } };
    await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: trainingFile, suffix: 'rest' }, opts);
    await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: trainingFile, suffix: 'rest' }, opts);
    expect(await jobsWithSuffix('rest')).toHaveLength(2);
  });

  it('10 concurrent creates with one key make one job; a repeat after completion returns it', async () => {
    const before = up.count(POST_JOBS);
    const results = await Promise.all(Array.from({ length: 10 }, () => gw.gql(CREATE, { input: input('ten', 'key-ten') })));
    const ids = results.map((r) => {
      expect(r.errors).toBeUndefined();
      expect(r.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
      return r.data.createFineTuningJob.job.id as string;
    });
    expect(new Set(ids).size).toBe(1);
    expect(up.count(POST_JOBS) - before).toBe(1);
    const jobs = await jobsWithSuffix('ten');
    expect(jobs.map((j) => j.id)).toEqual([ids[0]]);

    await sleep(100);
    const again = await gw.gql(CREATE, { input: input('ten', 'key-ten') });
    expect(again.data.createFineTuningJob.job.id).toBe(ids[0]);
    expect(up.count(POST_JOBS) - before).toBe(1);
    expect(await jobsWithSuffix('ten')).toHaveLength(1);

    // Without a key, each create is a new job (the key is what makes a repeat safe).
    await gw.gql(CREATE, { input: input('nokey') });
    await gw.gql(CREATE, { input: input('nokey') });
    expect(await jobsWithSuffix('nokey')).toHaveLength(2);
  });

  it('the same key with different input is a ValidationError on input.idempotencyKey, and sends nothing', async () => {
    const first = await gw.gql(CREATE, { input: input('conflict-a', 'key-conflict') });
    expect(first.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
    const before = up.timed.length;
    const other = await gw.gql(CREATE, { input: input('conflict-b', 'key-conflict') });
    expect(other.errors).toBeUndefined();
    expect(other.data.createFineTuningJob).toMatchObject({ __typename: 'ValidationError', field: 'input.idempotencyKey' });
    expect(other.data.createFineTuningJob.message).toMatch(/already used with different input/);
    expect(up.timed.length).toBe(before);
    expect(await jobsWithSuffix('conflict-b')).toEqual([]);
    // Key order in the input does not matter: the same input is the same request.
    const reordered = await gw.gql(CREATE, {
      input: { suffix: 'conflict-a', trainingFile, idempotencyKey: 'key-conflict', model: 'gpt-4o-mini-2024-07-18' },
    });
    expect(reordered.data.createFineTuningJob.job.id).toBe(first.data.createFineTuningJob.job.id);
    // Keys are per credential: another tenant (its own gateway key) may use the same key for its own job.
    const otherTenant = await startGateway(up.baseURL, { OPENAI_API_KEY: 'sk-hardening-other-tenant-42' });
    try {
      await uploadTraining(up.client('sk-hardening-other-tenant-42')).then((f) => (trainingFile = f));
      const theirs = await otherTenant.gql(CREATE, { input: input('conflict-b', 'key-conflict') });
      expect(theirs.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
    } finally {
      await otherTenant.close();
      trainingFile = await uploadTraining(up.client(KEY));
    }
  });

  it('a create whose response is dropped is found upstream, not sent again', async () => {
    up.emulator.setFaults({ dropRate: 1, routes: [POST_JOBS] });
    const before = up.count(POST_JOBS);
    const r = await gw.gql(CREATE, { input: input('dropped', 'key-dropped') });
    expect(r.errors).toBeUndefined();
    expect(r.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
    expect(up.count(POST_JOBS) - before).toBe(1);
    const jobs = await jobsWithSuffix('dropped');
    expect(jobs.map((j) => j.id)).toEqual([r.data.createFineTuningJob.job.id]);
    // The job carries the tag the gateway looked it up by (a hash, not the key).
    expect(Object.keys(jobs[0]!.metadata ?? {})).toEqual(['gateway_idempotency_key']);
    expect(JSON.stringify(jobs[0]!.metadata)).not.toContain('key-dropped');

    // Without a key the same failure is reported, and not retried: still exactly one job.
    const plain = await gw.gql(CREATE, { input: input('dropped-plain') });
    expect(plain.errors?.[0]?.extensions?.code).toBe('UPSTREAM_UNAVAILABLE');
    expect(await jobsWithSuffix('dropped-plain')).toHaveLength(1);
  });

  it('after failures that did nothing the create is retried; a repeat after an outage makes exactly one job', async () => {
    // Every create fails before the handler (5xx): the gateway retries within its budget, then reports.
    up.emulator.setFaults({ errorRate: 1, errorStatuses: [503], routes: [POST_JOBS] });
    const before = up.count(POST_JOBS);
    const failed = await gw.gql(CREATE, { input: input('outage', 'key-outage') });
    expect(failed.errors?.[0]?.extensions?.code).toBe('UPSTREAM_UNAVAILABLE');
    expect(up.count(POST_JOBS) - before).toBeGreaterThan(1);
    expect(await jobsWithSuffix('outage')).toEqual([]);
    // The outage ends; the client repeats with the same key: one job.
    up.emulator.setFaults(undefined);
    const ok = await gw.gql(CREATE, { input: input('outage', 'key-outage') });
    expect(ok.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
    const again = await gw.gql(CREATE, { input: input('outage', 'key-outage') });
    expect(again.data.createFineTuningJob.job.id).toBe(ok.data.createFineTuningJob.job.id);
    expect(await jobsWithSuffix('outage')).toHaveLength(1);
  });

  it('a 429 on a create without a key is retried (it did nothing) after Retry-After', async () => {
    let first = true;
    up.emulator.setFaults({ rateLimitRate: 1, retryAfterMs: 200, routes: [POST_JOBS] });
    const off = setInterval(() => {
      if (first && up.timed.some((t) => t.fault === 'rate_limit')) {
        first = false;
        up.emulator.setFaults(undefined);
      }
    }, 5);
    try {
      const r = await gw.gql(CREATE, { input: input('limited') });
      expect(r.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
    } finally {
      clearInterval(off);
    }
    const creates = up.timed.filter((t) => t.route === POST_JOBS).slice(-2);
    expect(creates.map((t) => t.status)).toEqual([429, 200]);
    expect(creates[1]!.at - creates[0]!.at).toBeGreaterThanOrEqual(190);
    expect(await jobsWithSuffix('limited')).toHaveLength(1);
  });

  it('keys expire after IDEMPOTENCY_TTL_MS', async () => {
    const short = await startGateway(up.baseURL, { IDEMPOTENCY_TTL_MS: '300' });
    try {
      const a = await short.gql(CREATE, { input: input('ttl', 'key-ttl') });
      const b = await short.gql(CREATE, { input: input('ttl', 'key-ttl') });
      expect(b.data.createFineTuningJob.job.id).toBe(a.data.createFineTuningJob.job.id);
      await sleep(400);
      const c = await short.gql(CREATE, { input: input('ttl', 'key-ttl') });
      expect(c.data.createFineTuningJob.job.id).not.toBe(a.data.createFineTuningJob.job.id);
      expect(await jobsWithSuffix('ttl')).toHaveLength(2);
    } finally {
      await short.close();
    }
  });
});

describe('InMemoryIdempotencyStore', () => {
  it('claims, completes, expires, hands over expired leases and unknown outcomes, and keeps fingerprints', async () => {
    let now = 1_000;
    const store = new InMemoryIdempotencyStore<{ id: string }>({ now: () => now });
    const req = (owner: string, fingerprint = 'fp') => ({ fingerprint, owner, leaseMs: 100, ttlMs: 10_000 });

    // A key this store does not know may have been used by a process before it (crash, restart): look first.
    expect(await store.claim('k', req('a'))).toEqual({ claimed: true, attempted: true });
    expect(await store.claim('k', req('b'))).toMatchObject({ claimed: false, record: { state: 'pending', owner: 'a' } });
    now += 150; // a's lease ran out (a died mid-create): b takes over and must look before creating
    expect(await store.claim('k', req('b'))).toEqual({ claimed: true, attempted: true });
    await store.complete('k', 'a', { id: 'stale' }); // a no longer holds it: ignored
    expect((await store.get('k'))?.state).toBe('pending');
    await store.complete('k', 'b', { id: 'job-1' });
    expect(await store.get('k')).toMatchObject({ state: 'done', result: { id: 'job-1' } });
    expect(await store.claim('k', req('c'))).toMatchObject({ claimed: false, record: { state: 'done', result: { id: 'job-1' } } });
    expect(await store.claim('k', req('c', 'other'))).toMatchObject({ claimed: false, record: { fingerprint: 'fp' } });

    expect(await store.claim('u', req('a'))).toMatchObject({ claimed: true });
    await store.release('u', 'a', 'unknown');
    expect(await store.claim('u', req('b', 'different'))).toMatchObject({ claimed: false, record: { state: 'unknown' } });
    expect(await store.claim('u', req('b'))).toEqual({ claimed: true, attempted: true });
    await store.release('u', 'b', 'forget');
    expect(await store.get('u')).toBeUndefined();

    now += 10_000; // past the TTL of k
    expect(await store.get('k')).toBeUndefined();
    expect(await store.claim('k', req('d', 'new'))).toEqual({ claimed: true, attempted: true });
    await store.close();
  });
});
