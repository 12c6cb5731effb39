/**
 * One writer per local database: a second local fine-tuning service on a file that one already holds refuses to
 * start (one line naming the file and what to do, exit 1) and the holder is unaffected; the hold ends with the
 * holder, SIGKILL included. The services are real child processes (`npm run emulator`'s entry file) on temp files.
 * The gateway's side (its embedded service on a held file, and both commands' default files) is in
 * packages/gateway/test/hardening/single-writer.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type OpenAI from 'openai';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createEmulator, DatabaseInUseError } from '../../src/index.js';
import {
  assertDatabaseRefusal,
  EMULATOR_ENTRY,
  killEntries,
  restEventsOf,
  runEntry,
  type SpawnedEmulator,
  spawnEmulator,
  trainingJsonl,
  uploadTraining,
  waitForStatus,
} from '../kit/index.js';

const LOCAL_KEY = 'sk-local-dev';

const JOB = {
  model: 'gpt-4o-mini-2024-07-18',
  seed: 7,
  method: { type: 'supervised' as const, supervised: { hyperparameters: { n_epochs: 2, batch_size: 1 } } },
};

/** The job's metrics steps, in order: must be 1..total_steps, each once. */
async function metricSteps(client: OpenAI, jobId: string) {
  const steps = (await restEventsOf(client, jobId)).filter((e) => e.type === 'metrics').map((e) => e.data as { step: number; total_steps: number });
  return { steps: steps.map((s) => s.step), total: steps[0]?.total_steps ?? 0 };
}

describe('one local service per database file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'emu-single-writer-'));
  let holders: SpawnedEmulator[] = [];
  afterEach(async () => {
    for (const h of holders) await h.kill('SIGKILL');
    holders = [];
  });
  afterAll(() => {
    killEntries();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a second standalone service on the same file exits 1 with the message; the first keeps serving and its running job succeeds', async () => {
    const dbPath = join(dir, 'shared.db');
    const first = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(first);
    const client = first.client('sk-single-writer');
    const job = await client.fineTuning.jobs.create({ training_file: await uploadTraining(client, trainingJsonl(20)), ...JOB });
    await waitForStatus(client, job.id, ['running']);

    const second = await runEntry(EMULATOR_ENTRY, { EMULATOR_DB: dbPath });
    assertDatabaseRefusal(second, dbPath);

    const done = await waitForStatus(client, job.id, ['succeeded', 'failed', 'cancelled'], 60_000);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    // Every step recorded once. (Two services on one file both drove the job: their steps raced, and the one that
    // lost a race failed the job with "UNIQUE constraint failed: step_metrics.job_id, step_metrics.step".)
    const { steps, total } = await metricSteps(client, job.id);
    expect(total).toBe(40);
    expect(steps).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(first.child.exitCode).toBeNull();
  });

  it('after a SIGKILL of the holder a new service starts on the file, finishes the job, and holds the file in turn', async () => {
    const dbPath = join(dir, 'killed.db');
    const first = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(first);
    let client = first.client('sk-single-writer');
    const job = await client.fineTuning.jobs.create({ training_file: await uploadTraining(client, trainingJsonl(20)), ...JOB });
    await waitForStatus(client, job.id, ['running']);
    expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL');

    const next = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(next);
    client = next.client('sk-single-writer');
    const done = await waitForStatus(client, job.id, ['succeeded', 'failed', 'cancelled'], 60_000);
    expect(done.status).toBe('succeeded');
    const { steps, total } = await metricSteps(client, job.id);
    expect(steps).toEqual(Array.from({ length: total }, (_, i) => i + 1));

    assertDatabaseRefusal(await runEntry(EMULATOR_ENTRY, { EMULATOR_DB: dbPath }), dbPath);
  });

  it('in one process: a second service on a held file throws DatabaseInUseError, the first is unaffected, and close() lets the file go; :memory: is unaffected', async () => {
    const dbPath = join(dir, 'in-process.db');
    const one = createEmulator({ dbPath, stepMs: 40 });
    try {
      expect(() => createEmulator({ dbPath, stepMs: 40 })).toThrow(DatabaseInUseError);
      const res = await one.fetch(new Request('http://local/v1/files', { headers: { authorization: `Bearer ${LOCAL_KEY}` } }));
      expect(res.status).toBe(200);
    } finally {
      await one.close();
    }
    const again = createEmulator({ dbPath, stepMs: 40 });
    await again.close();

    const m1 = createEmulator({ dbPath: ':memory:' });
    const m2 = createEmulator({ dbPath: ':memory:' });
    await m1.close();
    await m2.close();
  });
});
