/**
 * With 20 % of upstream calls failing by injection (500/502/503, 429 with Retry-After, dropped connections),
 * GraphQL queries of several shapes still succeed at least 99 % of the time, and subscriptions (graphql-ws and
 * SSE) deliver every event exactly once and in order (compared with the REST events list once the job is done).
 * The finished-job cache is off, so every query really calls the upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaultOptions } from '@finetune-graphql/emulator';
import { trainingJsonl, uploadTraining, waitForStatus } from '@finetune-graphql/emulator/testing';
import { collectSse } from '../live/helpers.js';
import { collect, type Gateway, KEY, startGateway, startUpstream, type Upstream, wsClient } from './helpers.js';

const FAULTS: FaultOptions = {
  errorRate: 0.1, // 500, 502, 503
  rateLimitRate: 0.05,
  retryAfterMs: 100,
  dropRate: 0.05,
  seed: 20_260_101,
};
const QUERIES = 1000;
const CONCURRENCY = 8;

let up: Upstream;
let gw: Gateway;
let fileId: string;
const jobIds: string[] = [];

beforeAll(async () => {
  up = await startUpstream({ stepMs: 50 });
  const c = up.client(KEY);
  fileId = await uploadTraining(c, trainingJsonl(20));
  for (let i = 0; i < 3; i++) {
    const job = await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: fileId, hyperparameters: { n_epochs: 1 } });
    jobIds.push(job.id);
  }
  for (const id of jobIds) await waitForStatus(c, id, ['succeeded']);
  gw = await startGateway(up.baseURL, { FINISHED_JOB_CACHE_SIZE: '0', LOG_LEVEL: 'warn' }, { live: { pollIntervalMs: 100, maxBackoffMs: 500 } });
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});

type Shape = { name: string; query: string; variables: (i: number) => Record<string, unknown>; check: (data: any, v: Record<string, unknown>) => boolean };

const SHAPES: Shape[] = [
  {
    name: 'job + training file',
    query: 'query($id: ID!) { fineTuningJob(id: $id) { id status trainingFile { id filename } } }',
    variables: (i) => ({ id: jobIds[i % jobIds.length] }),
    check: (d, v) => d.fineTuningJob.id === v.id && d.fineTuningJob.status === 'SUCCEEDED' && d.fineTuningJob.trainingFile.id === fileId,
  },
  {
    name: 'jobs page',
    query: '{ fineTuningJobs(first: 10) { edges { node { id status } } pageInfo { hasNextPage } } }',
    variables: () => ({}),
    check: (d) => d.fineTuningJobs.edges.length === jobIds.length,
  },
  {
    name: 'job + events',
    query: 'query($id: ID!) { fineTuningJob(id: $id) { id events(first: 5) { edges { node { id message } } } } }',
    variables: (i) => ({ id: jobIds[i % jobIds.length] }),
    check: (d) => d.fineTuningJob.events.edges.length === 5,
  },
  {
    name: 'job + checkpoints + metrics',
    query: 'query($id: ID!) { fineTuningJob(id: $id) { id checkpoints(first: 3) { edges { node { id stepNumber } } } metrics { step trainLoss } } }',
    variables: (i) => ({ id: jobIds[i % jobIds.length] }),
    check: (d) => d.fineTuningJob.checkpoints.edges.length > 0 && d.fineTuningJob.metrics.length > 0,
  },
  {
    name: 'files page',
    query: '{ files(first: 10) { edges { node { id filename } } } }',
    variables: () => ({}),
    check: (d) => d.files.edges.some((e: any) => e.node.id === fileId),
  },
  {
    name: 'node(file)',
    query: 'query($id: ID!) { node(id: $id) { id ... on File { bytes } } }',
    variables: () => ({ id: fileId }),
    check: (d) => d.node.id === fileId && d.node.bytes > 0,
  },
];

describe('with 20 % of upstream calls failing', () => {
  it(`${QUERIES} queries of ${SHAPES.length} shapes succeed at least 99 % of the time`, async () => {
    up.emulator.setFaults(FAULTS);
    const firstCall = up.timed.length;
    const failures: { shape: string; detail: string }[] = [];
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < QUERIES; i = next++) {
        const shape = SHAPES[i % SHAPES.length]!;
        const variables = shape.variables(i);
        const r = await gw.gql(shape.query, variables);
        const ok = r.status === 200 && !r.errors && r.data && shape.check(r.data, variables);
        if (!ok) failures.push({ shape: shape.name, detail: JSON.stringify(r.errors ?? r.data).slice(0, 200) });
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const elapsed = Date.now() - t0;
    up.emulator.setFaults(undefined);

    const calls = up.timed.slice(firstCall);
    const faulted = calls.filter((c) => c.fault === 'error' || c.fault === 'rate_limit' || c.fault === 'drop');
    const byKind = (k: string) => faulted.filter((c) => c.fault === k).length;
    const rate = (QUERIES - failures.length) / QUERIES;
    console.log(
      `[resilience] ${QUERIES - failures.length}/${QUERIES} queries succeeded (${(rate * 100).toFixed(2)} %) in ${elapsed} ms; ` +
        `upstream calls ${calls.length}, injected failures ${faulted.length} (${((faulted.length / calls.length) * 100).toFixed(1)} %: ` +
        `${byKind('error')} 5xx, ${byKind('rate_limit')} 429, ${byKind('drop')} dropped)` +
        (failures.length ? `; failed: ${JSON.stringify(failures.slice(0, 5))}` : ''),
    );
    // The injection really hit about a fifth of the calls…
    expect(faulted.length / calls.length).toBeGreaterThan(0.15);
    expect(faulted.length / calls.length).toBeLessThan(0.25);
    expect(byKind('error')).toBeGreaterThan(0);
    expect(byKind('rate_limit')).toBeGreaterThan(0);
    expect(byKind('drop')).toBeGreaterThan(0);
    // …and the queries still succeeded.
    expect(rate).toBeGreaterThanOrEqual(0.99);
  });

  it('subscriptions deliver every event exactly once, in order (graphql-ws and SSE), and the job states in order', async () => {
    const phaseStart = up.timed.length;
    up.emulator.setFaults({ ...FAULTS, seed: 7 });
    // The job is created through the gateway, under faults: with an idempotency key a client may repeat the
    // mutation until it gets an answer, and still makes one job.
    const CREATE = `mutation($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) {
      __typename ... on CreateFineTuningJobSuccess { job { id } } } }`;
    let jobId: string | undefined;
    for (let attempt = 0; attempt < 5 && !jobId; attempt++) {
      const r = await gw.gql(CREATE, {
        input: {
          model: 'gpt-4o-mini-2024-07-18',
          trainingFile: fileId,
          suffix: 'live-faults',
          idempotencyKey: 'live-faults-1',
          hyperparameters: { nEpochs: 3 },
        },
      });
      jobId = r.data?.createFineTuningJob?.job?.id;
    }
    expect(jobId).toMatch(/^ftjob-/);

    // The oldest event ("Created fine-tuning job"), as a client would read it; everything after it is streamed.
    let oldest: string | undefined;
    for (let attempt = 0; attempt < 5 && !oldest; attempt++) {
      const r = await gw.gql('query($id: ID!) { fineTuningJob(id: $id) { events(first: 100) { edges { node { id } } } } }', { id: jobId });
      oldest = r.data?.fineTuningJob?.events.edges.at(-1)?.node.id;
    }
    expect(oldest).toMatch(/^ftevent-/);

    const EVENTS = 'subscription($jobId: ID!, $after: ID) { fineTuningJobEvents(jobId: $jobId, after: $after) { id message } }';
    const UPDATED = 'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id status trainedTokens } }';
    const clients = [wsClient(gw.wsUrl), wsClient(gw.wsUrl), wsClient(gw.wsUrl)];
    try {
      const streams = clients.map((c) => collect<{ fineTuningJobEvents: { id: string } }>(c, EVENTS, { jobId, after: oldest }));
      const sse = collectSse<{ id: string }>({ httpUrl: gw.endpoint } as never, EVENTS, { jobId, after: oldest }, 'fineTuningJobEvents');
      const states = collect<{ fineTuningJobUpdated: { status: string } }>(clients[0]!, UPDATED, { id: jobId });
      await Promise.all([...streams.map((s) => s.done), sse.done, states.done]);
      const during = up.timed.slice(phaseStart);
      const faultedDuring = during.filter((t) => t.fault && t.fault !== 'latency').length;
      up.emulator.setFaults(undefined);
      // The polls really went through the faults.
      expect(faultedDuring).toBeGreaterThanOrEqual(5);

      const rest: { id: string }[] = [];
      for await (const e of up.client(KEY).fineTuning.jobs.listEvents(jobId!, { limit: 100 })) rest.push(e);
      const expected = rest.reverse().map((e) => e.id);
      expect(expected[0]).toBe(oldest);
      expected.shift();
      expect(expected.length).toBeGreaterThan(10);
      for (const s of streams) {
        expect(s.errors).toEqual([]);
        expect(s.items.map((i) => i.fineTuningJobEvents.id)).toEqual(expected);
      }
      expect(sse.errors).toEqual([]);
      expect(sse.completed).toBe(true);
      expect(sse.items.map((i) => i.id)).toEqual(expected);

      expect(states.errors).toEqual([]);
      const statuses = states.items.map((s) => s.fineTuningJobUpdated.status);
      expect(statuses.at(-1)).toBe('SUCCEEDED');
      const order = ['VALIDATING_FILES', 'QUEUED', 'RUNNING', 'SUCCEEDED'];
      for (let i = 1; i < statuses.length; i++) expect(order.indexOf(statuses[i]!)).toBeGreaterThanOrEqual(order.indexOf(statuses[i - 1]!));
      console.log(
        `[resilience] subscriptions: ${expected.length} events delivered once and in order to 3 graphql-ws and 1 SSE subscribers; ` +
          `${statuses.length} job states (${statuses.join(' → ')}); ${faultedDuring} of ${during.length} upstream calls failed by injection meanwhile`,
      );
      // One job, whatever the repeats.
      const jobs = (await up.client(KEY).fineTuning.jobs.list({ limit: 100 })).data;
      expect(jobs.filter((j) => (j as unknown as { user_provided_suffix: string }).user_provided_suffix === 'live-faults')).toHaveLength(1);
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });
});
