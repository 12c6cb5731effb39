/**
 * Durability: SIGKILL the standalone service mid-training, restart it on the same database, and show that
 * nothing was lost and that the job finishes with exactly the metrics of an uninterrupted run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import { type SpawnedEmulator, spawnEmulator, startEmulator, trainingJsonl, uploadTraining, waitFor, waitForStatus } from '../kit/index.js';

type Event = OpenAI.FineTuning.Jobs.FineTuningJobEvent;

async function allEvents(client: OpenAI, jobId: string): Promise<Event[]> {
  const out: Event[] = [];
  for await (const e of client.fineTuning.jobs.listEvents(jobId, { limit: 100 })) out.push(e);
  return out.reverse();
}
async function allCheckpoints(client: OpenAI, jobId: string) {
  const out: OpenAI.FineTuning.Jobs.FineTuningJobCheckpoint[] = [];
  for await (const c of client.fineTuning.jobs.checkpoints.list(jobId, { limit: 100 })) out.push(c);
  return out.reverse();
}
const metrics = (events: Event[]) => events.filter((e) => e.type === 'metrics').map((e) => e.data as Record<string, number>);

describe('crash recovery', () => {
  const dir = mkdtempSync(join(tmpdir(), 'emu-crash-'));
  const dbPath = join(dir, 'emulator.db');
  let proc: SpawnedEmulator | undefined;
  afterAll(async () => {
    await proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('SIGKILL twice mid-training: files, jobs and events survive, and the job finishes as if never interrupted', async () => {
    const content = trainingJsonl(20);
    const jobParams = {
      model: 'gpt-4o-mini-2024-07-18',
      seed: 1234,
      suffix: 'crash',
      method: { type: 'supervised' as const, supervised: { hyperparameters: { n_epochs: 3, batch_size: 1 } } },
    };

    proc = await spawnEmulator({ dbPath, stepMs: 40 });
    let client = proc.client('sk-crash');
    const fileId = await uploadTraining(client, content);
    const extraFile = await client.files.create({ file: new File(['notes'], 'notes.txt'), purpose: 'user_data' });
    const created = await client.fineTuning.jobs.create({ training_file: fileId, ...jobParams });

    for (const minSteps of [8, 25]) {
      await waitFor(async () => metrics(await allEvents(client, created.id)).length >= minSteps, 30_000, 20);
      const filesBefore = (await client.files.list()).data;
      const jobBefore = await client.fineTuning.jobs.retrieve(created.id);
      const eventsBefore = await allEvents(client, created.id);
      const checkpointsBefore = await allCheckpoints(client, created.id);
      expect(jobBefore.status).toBe('running');

      const oldURL = proc.baseURL;
      const exit = await proc.kill('SIGKILL');
      expect(exit.signal).toBe('SIGKILL');
      // Really gone (no second process left training on the same database).
      await expect(fetch(`${oldURL}/files`)).rejects.toThrow();

      proc = await spawnEmulator({ dbPath, stepMs: 40 });
      client = proc.client('sk-crash');
      // Nothing lost: same files, same job, every event recorded before the kill still there, in order.
      expect((await client.files.list()).data).toEqual(filesBefore);
      expect(filesBefore.map((f) => f.id).sort()).toEqual([fileId, extraFile.id].sort());
      expect(await (await client.files.content(fileId)).text()).toBe(content);
      const jobAfter = await client.fineTuning.jobs.retrieve(created.id);
      expect({ ...jobAfter, status: undefined, estimated_finish: undefined }).toEqual({
        ...jobBefore,
        status: undefined,
        estimated_finish: undefined,
      });
      const eventsAfter = await allEvents(client, created.id);
      expect(eventsAfter.slice(0, eventsBefore.length)).toEqual(eventsBefore);
      expect((await allCheckpoints(client, created.id)).slice(0, checkpointsBefore.length)).toEqual(checkpointsBefore);
    }

    const done = await waitForStatus(client, created.id, ['succeeded', 'failed'], 60_000);
    expect(done.status).toBe('succeeded');
    const events = await allEvents(client, created.id);
    const steps = metrics(events);
    const total = steps[0].total_steps;
    expect(steps.map((m) => m.step)).toEqual(Array.from({ length: total }, (_, i) => i + 1)); // no gap, no repeat
    const checkpoints = await allCheckpoints(client, created.id);
    const results = await (await client.files.content(done.result_files[0])).text();
    await proc.kill('SIGTERM');
    proc = undefined;

    // The same job, uninterrupted, in process.
    const ref = await startEmulator({ stepMs: 2 });
    try {
      const rc = ref.client('sk-crash');
      const refFile = await uploadTraining(rc, content);
      const refJob = await rc.fineTuning.jobs.create({ training_file: refFile, ...jobParams });
      const refDone = await waitForStatus(rc, refJob.id, ['succeeded', 'failed'], 60_000);
      expect(refDone.status).toBe('succeeded');
      expect(refDone.trained_tokens).toBe(done.trained_tokens);
      expect(refDone.hyperparameters).toEqual(done.hyperparameters);
      expect(metrics(await allEvents(rc, refJob.id))).toEqual(steps);
      const refCheckpoints = await allCheckpoints(rc, refJob.id);
      expect(refCheckpoints.map((c) => [c.step_number, c.metrics])).toEqual(checkpoints.map((c) => [c.step_number, c.metrics]));
      expect(await (await rc.files.content(refDone.result_files[0])).text()).toBe(results);
    } finally {
      await ref.close();
    }
  });

  it('a job killed while validating_files continues after the restart', async () => {
    const db = join(dir, 'early.db');
    let p = await spawnEmulator({ dbPath: db, stepMs: 60 });
    let c = p.client('sk-early');
    const file = await uploadTraining(c, trainingJsonl(10));
    const job = await c.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: file, hyperparameters: { n_epochs: 1 } });
    expect(job.status).toBe('validating_files');
    await p.kill('SIGKILL');
    p = await spawnEmulator({ dbPath: db, stepMs: 5 });
    try {
      c = p.client('sk-early');
      const done = await waitForStatus(c, job.id, ['succeeded', 'failed'], 30_000);
      expect(done.status).toBe('succeeded');
      const messages = (await allEvents(c, job.id)).map((e) => e.message);
      expect(messages.slice(0, 4)).toEqual([
        `Created fine-tuning job: ${job.id}`,
        `Validating training file: ${file}`,
        'Files validated, moving job to queued state',
        'Fine-tuning job started',
      ]);
    } finally {
      await p.kill('SIGKILL');
    }
  });

  it('SIGTERM closes the standalone service cleanly (exit code 0)', async () => {
    const p = await spawnEmulator({ dbPath: join(dir, 'term.db'), stepMs: 50 });
    const f = await uploadTraining(p.client());
    expect(f).toMatch(/^file-/);
    const exit = await p.kill('SIGTERM');
    expect(exit.code).toBe(0);
  });
});
