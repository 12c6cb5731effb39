/**
 * Issue 10, finding 7: idempotency keys outlive a single-process gateway. The gateway (a child process, no
 * Redis) is SIGKILLed in the middle of an idempotent create whose job the upstream has already made, against a
 * local service that IGNORES Idempotency-Key; the restarted gateway, asked again with the same key, must find
 * that job by its metadata tag instead of paying for a second one. Jobs are counted in the upstream's own list.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadTraining } from '@finetune-graphql/emulator/testing';
import { KEY, spawnServer, type SpawnedServer, startUpstream, type Upstream } from './helpers.js';

const CREATE = `mutation Create($input: CreateFineTuningJobInput!) {
  createFineTuningJob(input: $input) {
    __typename
    ... on CreateFineTuningJobSuccess { job { id } }
    ... on Error { message }
  }
}`;

let up: Upstream;
let trainingFile: string;
let onRequest: ((route: string) => void) | undefined;

beforeAll(async () => {
  up = await startUpstream({ stepMs: 1000, honourIdempotencyKeys: false, onTimed: (r) => onRequest?.(r.route) });
  trainingFile = await uploadTraining(up.client(KEY));
});
afterAll(async () => {
  await up?.close();
});

const gatewayEnv = () => ({ OPENAI_BASE_URL: up.baseURL, OPENAI_API_KEY: KEY, LOG_LEVEL: 'warn', UPSTREAM_TIMEOUT_MS: '20000' });
const create = (gw: SpawnedServer, suffix: string, idempotencyKey: string) =>
  fetch(`${gw.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: CREATE, variables: { input: { model: 'gpt-4o-mini-2024-07-18', trainingFile, suffix, idempotencyKey } } }),
  });
const jobsWithSuffix = async (suffix: string) =>
  (await up.client(KEY).fineTuning.jobs.list({ limit: 100 })).data.filter(
    (j) => (j as unknown as { user_provided_suffix: string | null }).user_provided_suffix === suffix,
  );

describe('idempotency without Redis, across a crash', () => {
  it('SIGKILL mid-create (the job made upstream, its answer lost), restart, repeat: one job', async () => {
    const first = await spawnServer(gatewayEnv());
    // The create reaches the upstream and makes its job, but its connection is dropped after that (the answer is
    // lost); the gateway would now back off and look for the job by its tag, but it is killed right there.
    up.emulator.setFaults({ dropRate: 1, routes: ['POST /v1/fine_tuning/jobs'] });
    const killed = new Promise<void>((resolve) => {
      onRequest = (route) => {
        if (route !== 'POST /v1/fine_tuning/jobs') return;
        onRequest = undefined;
        first.child.kill('SIGKILL');
        resolve();
      };
    });
    const lost = create(first, 'crash', 'crash-key-1')
      .then((r) => r.text())
      .then(
        (t) => `answered: ${t}`,
        () => 'no answer',
      );
    await killed;
    await first.exited;
    expect(await lost).toBe('no answer');
    up.emulator.setFaults(undefined);
    expect(await jobsWithSuffix('crash')).toHaveLength(1);

    const second = await spawnServer(gatewayEnv());
    try {
      const res = (await (await create(second, 'crash', 'crash-key-1')).json()) as {
        data: { createFineTuningJob: { __typename: string; job: { id: string } } };
      };
      expect(res.data.createFineTuningJob.__typename).toBe('CreateFineTuningJobSuccess');
      const jobs = await jobsWithSuffix('crash');
      expect(jobs).toHaveLength(1);
      expect(res.data.createFineTuningJob.job.id).toBe(jobs[0]!.id);
      // A new key is still a new job.
      const other = (await (await create(second, 'crash', 'crash-key-2')).json()) as { data: { createFineTuningJob: { job: { id: string } } } };
      expect(other.data.createFineTuningJob.job.id).not.toBe(jobs[0]!.id);
      expect(await jobsWithSuffix('crash')).toHaveLength(2);
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
  });
});
