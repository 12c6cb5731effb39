import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import { expectApiError, type RunningEmulator, startEmulator, trainingJsonl, uploadTraining, waitFor, waitForStatus } from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';

async function allEvents(client: OpenAI, jobId: string) {
  const out: OpenAI.FineTuning.Jobs.FineTuningJobEvent[] = [];
  for await (const e of client.fineTuning.jobs.listEvents(jobId, { limit: 100 })) out.push(e);
  return out.reverse(); // oldest first
}

const metricSteps = (events: OpenAI.FineTuning.Jobs.FineTuningJobEvent[]) =>
  events.filter((e) => e.type === 'metrics').map((e) => (e.data as { step: number }).step);

describe('cancel, pause and resume', () => {
  let svc: RunningEmulator;
  let client: OpenAI;
  let fileId: string;
  beforeAll(async () => {
    svc = await startEmulator({ stepMs: 15 });
    client = svc.client('sk-controls');
    fileId = await uploadTraining(client, trainingJsonl(20));
  });
  afterAll(() => svc.close());

  it('cancels a running job: status cancelled, a cancellation event, no further steps', async () => {
    const job = await client.fineTuning.jobs.create({
      model: 'gpt-4o-mini',
      training_file: fileId,
      hyperparameters: { n_epochs: 3 },
    });
    await waitFor(async () => metricSteps(await allEvents(client, job.id)).length >= 3);
    const cancelled = await client.fineTuning.jobs.cancel(job.id);
    expectMatchesSchema(cancelled, 'FineTuningJob');
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.estimated_finish).toBeNull();
    const events = await allEvents(client, job.id);
    const last = events[events.length - 1];
    expect(last).toMatchObject({ level: 'warn', message: 'Fine tuning process stopping due to job cancellation', type: 'message', data: {} });
    const stepsAtCancel = metricSteps(events).length;
    await new Promise((r) => setTimeout(r, 150));
    const later = await allEvents(client, job.id);
    expect(later).toHaveLength(events.length);
    expect(metricSteps(later)).toHaveLength(stepsAtCancel);
    expect((await client.fineTuning.jobs.retrieve(job.id)).status).toBe('cancelled');

    // A finished job cannot be cancelled again, paused or resumed.
    await expectApiError(client.fineTuning.jobs.cancel(job.id), { status: 400, message: /cannot be cancelled/ });
    await expectApiError(client.fineTuning.jobs.pause(job.id), { status: 400, message: /only a running job can be paused/ });
    await expectApiError(client.fineTuning.jobs.resume(job.id), { status: 400, message: /only a paused job can be resumed/ });
  });

  it('cancels a job that is still validating or queued', async () => {
    const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileId });
    expect(job.status).toBe('validating_files');
    const cancelled = await client.fineTuning.jobs.cancel(job.id);
    expect(cancelled.status).toBe('cancelled');
    await new Promise((r) => setTimeout(r, 250));
    const events = await allEvents(client, job.id);
    expect(events.map((e) => e.message)).toEqual([
      `Created fine-tuning job: ${job.id}`,
      `Validating training file: ${fileId}`,
      'Fine tuning process stopping due to job cancellation',
    ]);
  });

  it('pauses a running job (no steps while paused) and resumes it from the same step through queued', async () => {
    const job = await client.fineTuning.jobs.create({
      model: 'gpt-4o-mini',
      training_file: fileId,
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 2, batch_size: 2 } } },
    });
    await expectApiError(client.fineTuning.jobs.pause(job.id), { status: 400, message: /status is validating_files/ });
    await expectApiError(client.fineTuning.jobs.resume(job.id), { status: 400 });

    const running = await waitForStatus(client, job.id, ['running']);
    expect(running.estimated_finish).toEqual(expect.any(Number));
    expect(running.estimated_finish!).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000));
    await waitFor(async () => metricSteps(await allEvents(client, job.id)).length >= 2);

    const paused = await client.fineTuning.jobs.pause(job.id);
    expectMatchesSchema(paused, 'FineTuningJob');
    expect(paused.status).toBe('paused');
    expect(paused.estimated_finish).toBeNull();
    await expectApiError(client.fineTuning.jobs.pause(job.id), { status: 400 });
    const atPause = await allEvents(client, job.id);
    const stepsAtPause = metricSteps(atPause);
    expect(atPause[atPause.length - 1].message).toBe(
      `Fine-tuning job paused at step ${stepsAtPause.length}/${(atPause.find((e) => e.type === 'metrics')!.data as { total_steps: number }).total_steps}`,
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(metricSteps(await allEvents(client, job.id))).toEqual(stepsAtPause);
    expect((await client.fineTuning.jobs.retrieve(job.id)).status).toBe('paused');

    const resumed = await client.fineTuning.jobs.resume(job.id);
    expectMatchesSchema(resumed, 'FineTuningJob');
    expect(resumed.status).toBe('queued');
    await expectApiError(client.fineTuning.jobs.resume(job.id), { status: 400 });

    const done = await waitForStatus(client, job.id, ['succeeded', 'failed']);
    expect(done.status).toBe('succeeded');
    const events = await allEvents(client, job.id);
    const steps = metricSteps(events);
    const total = (events.find((e) => e.type === 'metrics')!.data as { total_steps: number }).total_steps;
    // Every step exactly once, in order: the job went on from where it paused.
    expect(steps).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const messages = events.map((e) => e.message);
    const iPaused = messages.findIndex((m) => m.startsWith('Fine-tuning job paused at step'));
    expect(messages.slice(iPaused, iPaused + 3)).toEqual([
      `Fine-tuning job paused at step ${stepsAtPause.length}/${total}`,
      'Fine-tuning job resumed, moving job to queued state',
      `Fine-tuning job resumed at step ${stepsAtPause.length}/${total}`,
    ]);
    expect(messages[iPaused + 3]).toMatch(new RegExp(`^Step ${stepsAtPause.length + 1}/${total}: training loss=`));
  });

  it('a paused job can be cancelled', async () => {
    const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: fileId, hyperparameters: { n_epochs: 3 } });
    await waitForStatus(client, job.id, ['running']);
    await client.fineTuning.jobs.pause(job.id);
    const cancelled = await client.fineTuning.jobs.cancel(job.id);
    expect(cancelled.status).toBe('cancelled');
    await expectApiError(client.fineTuning.jobs.resume(job.id), { status: 400 });
  });

  it('deleting the training file of a running job is allowed and the job still finishes', async () => {
    const own = await uploadTraining(client, trainingJsonl(12));
    const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: own, hyperparameters: { n_epochs: 1 } });
    await waitForStatus(client, job.id, ['running']);
    expect((await client.files.delete(own)).deleted).toBe(true);
    await expectApiError(client.files.retrieve(own), { status: 404 });
    const done = await waitForStatus(client, job.id, ['succeeded', 'failed']);
    expect(done.status).toBe('succeeded');
  });
});
