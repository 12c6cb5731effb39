/**
 * Idempotency keys in Redis: the store's semantics (claim, complete, release, takeover after an expired lease,
 * TTL), then createFineTuningJob with one key on one instance and again on another (and concurrently on both)
 * against an upstream that ignores Idempotency-Key: one job, one create at the upstream.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisIdempotencyStore } from '../../src/upstream/idempotency-redis.js';
import { idempotencyStoreKey } from '../../src/upstream/idempotency.js';
import {
  deletePrefix,
  dumpPrefix,
  gql,
  type Instance,
  instanceEnv,
  KEY,
  newPrefix,
  redisClient,
  sleep,
  startInstance,
  startUpstream,
  type Upstream,
} from './helpers.js';
import { uploadTraining } from '@finetune-graphql/emulator/testing';

const prefix = newPrefix();
const redis = redisClient();

afterAll(async () => {
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

describe('RedisIdempotencyStore', () => {
  const store = new RedisIdempotencyStore<{ id: string; list: unknown[]; nested: Record<string, unknown> }>(redis, prefix);
  const req = (owner: string, leaseMs = 10_000, ttlMs = 60_000, fingerprint = 'fp-1') => ({ fingerprint, owner, leaseMs, ttlMs });

  it('first claim wins, others see it pending; complete stores the result as given; repeats get it back', async () => {
    const key = randomUUID();
    expect(await store.claim(key, req('o1'))).toEqual({ claimed: true, attempted: false });
    const second = await store.claim(key, req('o2'));
    expect(second.claimed).toBe(false);
    expect(second.claimed === false && second.record).toMatchObject({ state: 'pending', fingerprint: 'fp-1', owner: 'o1' });
    // Another owner cannot complete or release it.
    await store.complete(key, 'o2', { id: 'wrong', list: [], nested: {} });
    await store.release(key, 'o2', 'forget');
    expect(await store.get(key)).toMatchObject({ state: 'pending', owner: 'o1' });
    // Empty arrays and objects survive (the result is never re-encoded by Lua's cjson).
    const job = { id: 'ftjob-1', list: [], nested: { a: [], b: {}, c: null } };
    await store.complete(key, 'o1', job);
    const done = await store.claim(key, req('o3'));
    expect(done).toEqual({ claimed: false, record: expect.objectContaining({ state: 'done', fingerprint: 'fp-1', result: job }) });
    // Other input with the same key: the record says which fingerprint it was used with.
    const other = await store.claim(key, req('o4', 10_000, 60_000, 'fp-2'));
    expect(other.claimed === false && other.record.fingerprint).toBe('fp-1');
  });

  it('an expired lease is taken over (attempted: the first holder may have sent the create); unknown outcomes too', async () => {
    const key = randomUUID();
    expect(await store.claim(key, req('o1', 50))).toEqual({ claimed: true, attempted: false });
    await sleep(80);
    expect(await store.claim(key, req('o2', 10_000))).toEqual({ claimed: true, attempted: true });
    await store.complete(key, 'o1', { id: 'late', list: [], nested: {} }); // the old holder lost it
    expect(await store.get(key)).toMatchObject({ state: 'pending', owner: 'o2' });
    await store.release(key, 'o2', 'unknown');
    expect(await store.get(key)).toMatchObject({ state: 'unknown', fingerprint: 'fp-1' });
    expect(await store.claim(key, req('o3'))).toEqual({ claimed: true, attempted: true });
    await store.release(key, 'o3', 'forget');
    expect(await store.get(key)).toBeUndefined();
    expect(await store.claim(key, req('o4'))).toEqual({ claimed: true, attempted: false });
  });

  it('keys expire with their TTL (set at the first claim, kept by later writes)', async () => {
    const key = randomUUID();
    await store.claim(key, req('o1', 10_000, 300));
    await store.complete(key, 'o1', { id: 'x', list: [], nested: {} });
    const ttl = await redis.pttl(`${prefix}idem:${key}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(300);
    await sleep(350);
    expect(await store.get(key)).toBeUndefined();
  });
});

const CREATE = `mutation Create($input: CreateFineTuningJobInput!) {
  createFineTuningJob(input: $input) {
    __typename
    ... on CreateFineTuningJobSuccess { job { id status } }
    ... on ValidationError { message field }
    ... on Error { message }
  }
}`;
const POST_JOBS = 'POST /v1/fine_tuning/jobs';

describe('idempotent createFineTuningJob across instances (upstream ignores Idempotency-Key)', () => {
  let up: Upstream;
  let a: Instance;
  let b: Instance;
  let trainingFile: string;
  const creates = () => up.timed.filter((r) => r.route === POST_JOBS).length;
  const input = (suffix: string, idempotencyKey: string) => ({ model: 'gpt-4o-mini-2024-07-18', trainingFile, suffix, idempotencyKey });
  const jobId = (r: { data?: any; errors?: unknown[] }) => {
    expect(r.errors).toBeUndefined();
    expect(r.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
    return r.data.createFineTuningJob.job.id as string;
  };

  beforeAll(async () => {
    up = await startUpstream({ stepMs: 1000, honourIdempotencyKeys: false });
    trainingFile = await uploadTraining(up.client(KEY));
    a = await startInstance(instanceEnv(up, prefix, 'idem-a'));
    b = await startInstance(instanceEnv(up, prefix, 'idem-b'));
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await up?.close();
  });

  it('a key used on one instance and retried on another yields one job', async () => {
    const before = creates();
    const first = jobId(await gql(a, CREATE, { input: input('xa', 'key-cross') }));
    const retried = jobId(await gql(b, CREATE, { input: input('xa', 'key-cross') }));
    expect(retried).toBe(first);
    expect(creates() - before).toBe(1);
    const jobs = (await up.client(KEY).fineTuning.jobs.list({ limit: 100 })).data.filter(
      (j) => (j as unknown as { user_provided_suffix: string | null }).user_provided_suffix === 'xa',
    );
    expect(jobs.map((j) => j.id)).toEqual([first]);
    // Other input with the same key is refused on either instance, naming the field.
    const reused = await gql(b, CREATE, { input: input('xb', 'key-cross') });
    expect(reused.data.createFineTuningJob).toMatchObject({ __typename: 'ValidationError', field: 'input.idempotencyKey' });
  });

  it('the same key sent concurrently to both instances (5 each) makes one job', async () => {
    const before = creates();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => gql(i % 2 ? a : b, CREATE, { input: input('conc', 'key-conc') })));
    const ids = new Set(results.map(jobId));
    expect(ids.size).toBe(1);
    expect(creates() - before).toBe(1);
    const jobs = (await up.client(KEY).fineTuning.jobs.list({ limit: 100 })).data.filter(
      (j) => (j as unknown as { user_provided_suffix: string | null }).user_provided_suffix === 'conc',
    );
    expect(jobs).toHaveLength(1);
  });

  it("Redis holds hashes only: neither the API key nor the client's idempotency key", async () => {
    const dump = await dumpPrefix(redis, prefix);
    const idem = dump.filter((d) => d.key.startsWith(`${prefix}idem:`));
    expect(idem.length).toBeGreaterThanOrEqual(2);
    expect(idem.map((d) => d.key)).toContain(`${prefix}idem:${idempotencyStoreKey(KEY, 'key-cross')}`);
    for (const { key, value } of dump) {
      for (const secret of [KEY, 'key-cross', 'key-conc']) {
        expect(key).not.toContain(secret);
        expect(value).not.toContain(secret);
      }
    }
  });
});
