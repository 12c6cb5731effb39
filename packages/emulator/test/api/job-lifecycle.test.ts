/**
 * A real job, end to end through the official SDK: upload, create, watch it run, retrieve, list events and
 * checkpoints page by page, download the results file. Every body is validated against the spec.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import {
  type ChatExample,
  chatExamples,
  completionJsonl,
  dpoJsonl,
  type RunningEmulator,
  startEmulator,
  toJsonl,
  trainingJsonl,
  uploadTraining,
  waitForStatus,
} from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';
import { expectedTrainedTokens } from '../kit/token-count.js';

type Event = OpenAI.FineTuning.Jobs.FineTuningJobEvent;
type Job = OpenAI.FineTuning.Jobs.FineTuningJob;

async function allEvents(client: OpenAI, jobId: string): Promise<Event[]> {
  const out: Event[] = [];
  for await (const e of client.fineTuning.jobs.listEvents(jobId, { limit: 7 })) out.push(e);
  return out.reverse(); // oldest first
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const metricsOf = (events: Event[]) => events.filter((e) => e.type === 'metrics').map((e) => e.data as Record<string, number>);

describe('a 20-example job, end to end', () => {
  let svc: RunningEmulator;
  let client: OpenAI;
  let examples: ChatExample[];
  let fileId: string;
  let created: Job;
  let done: Job;
  let events: Event[];
  const seen = new Set<string>();
  const epochs = () => done.hyperparameters.n_epochs as number;

  beforeAll(async () => {
    svc = await startEmulator({ stepMs: 5 });
    client = svc.client('sk-lifecycle');
    examples = chatExamples(20);
    fileId = await uploadTraining(client, toJsonl(examples));
    created = await client.fineTuning.jobs.create({
      model: 'gpt-4o-mini-2024-07-18',
      training_file: fileId,
      suffix: 'demo',
      seed: 42,
      metadata: { purpose: 'lifecycle-test' },
    });
    // Poll the job through the SDK until it finishes, validating every body and noting the statuses seen.
    done = await (async () => {
      for (;;) {
        const raw = await client.fineTuning.jobs
          .retrieve(created.id)
          .asResponse()
          .then((r) => r.json());
        expectMatchesSchema(raw, 'FineTuningJob');
        seen.add(raw.status);
        if (raw.status === 'running') {
          expect(raw.estimated_finish).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000));
        } else {
          expect(raw.estimated_finish).toBeNull();
        }
        if (['succeeded', 'failed', 'cancelled'].includes(raw.status)) return raw as Job;
        await new Promise((r) => setTimeout(r, 3));
      }
    })();
    events = await allEvents(client, created.id);
  });
  afterAll(() => svc.close());

  it('creation returns the job as OpenAI does, in validating_files', () => {
    expectMatchesSchema(created, 'FineTuningJob');
    expect(created).toMatchObject({
      object: 'fine_tuning.job',
      model: 'gpt-4o-mini-2024-07-18',
      status: 'validating_files',
      training_file: fileId,
      validation_file: null,
      fine_tuned_model: null,
      finished_at: null,
      trained_tokens: null,
      result_files: [],
      error: null,
      seed: 42,
      estimated_finish: null,
      integrations: [],
      metadata: { purpose: 'lifecycle-test' },
      hyperparameters: { n_epochs: 'auto', batch_size: 'auto', learning_rate_multiplier: 'auto' },
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 'auto', batch_size: 'auto', learning_rate_multiplier: 'auto' } } },
    });
    expect(created.id).toMatch(/^ftjob-[A-Za-z0-9]{24}$/);
  });

  it('runs through running to succeeded', () => {
    expect(seen.has('running')).toBe(true);
    expect(done.status).toBe('succeeded');
    expect(done.error).toBeNull();
    expect(done.finished_at).toBeGreaterThanOrEqual(done.created_at);
    expect(done.fine_tuned_model).toMatch(new RegExp(`^ft:gpt-4o-mini-2024-07-18:${done.organization_id}:demo:[A-Za-z0-9]{8}$`));
  });

  it('resolves "auto" with the cookbook heuristic: 20 examples → 5 epochs (at least 100 examples trained)', () => {
    expect(done.hyperparameters.n_epochs).toBe(5);
    expect(Number.isInteger(done.hyperparameters.batch_size)).toBe(true);
    expect(done.hyperparameters.batch_size as number).toBeGreaterThanOrEqual(1);
    expect(done.hyperparameters.learning_rate_multiplier as number).toBeGreaterThan(0);
    expect(done.method).toEqual({ type: 'supervised', supervised: { hyperparameters: done.hyperparameters } });
  });

  it('trained_tokens equals an independent count of the billable tokens times the epochs', () => {
    expect(done.trained_tokens).toBe(expectedTrainedTokens(examples, 'gpt-4o-mini-2024-07-18', epochs()));
  });

  it("events carry OpenAI's texts in OpenAI's order", () => {
    for (const e of events) expectMatchesSchema(e, 'FineTuningJobEvent');
    const messages = events.map((e) => e.message);
    const steps = metricsOf(events);
    const total = steps.length;
    const model = done.fine_tuned_model!;
    expect(messages.slice(0, 4)).toEqual([
      `Created fine-tuning job: ${created.id}`,
      `Validating training file: ${fileId}`,
      'Files validated, moving job to queued state',
      'Fine-tuning job started',
    ]);
    expect(messages.slice(-2)).toEqual([`New fine-tuned model created: ${model}`, 'The job has successfully completed']);
    // Between them: one metrics event per step, and a checkpoint event after each of the last three epochs.
    const middle = events.slice(4, -2);
    const spe = total / epochs();
    const expected: string[] = [];
    for (let n = 1; n <= total; n++) {
      expected.push(`Step ${n}/${total}:`);
      if (n % spe === 0 && n / spe > epochs() - 3) expected.push(`Checkpoint created at step ${n} with Snapshot ID: ft:`);
    }
    expect(middle.map((e, i) => e.message.startsWith(expected[i]))).toEqual(expected.map(() => true));
    for (const e of events.filter((x) => x.type === 'message')) expect(e.data).toEqual({});
    expect(events.every((e) => e.level === 'info')).toBe(true);
  });

  it('metrics events: OpenAI text and data {step, train_loss, train_mean_token_accuracy, total_steps}', () => {
    const metricEvents = events.filter((e) => e.type === 'metrics');
    metricEvents.forEach((e, i) => {
      const d = e.data as Record<string, number>;
      expect(Object.keys(d).sort()).toEqual(['step', 'total_steps', 'train_loss', 'train_mean_token_accuracy']);
      expect(d.step).toBe(i + 1);
      expect(d.total_steps).toBe(metricEvents.length);
      expect(e.message).toBe(`Step ${d.step}/${d.total_steps}: training loss=${d.train_loss.toFixed(2)}`);
      expect(d.train_loss).toBeGreaterThan(0);
      expect(d.train_mean_token_accuracy).toBeGreaterThanOrEqual(0);
      expect(d.train_mean_token_accuracy).toBeLessThanOrEqual(1);
    });
  });

  it('training loss falls from the first epoch to the last', () => {
    const losses = metricsOf(events).map((m) => m.train_loss);
    const spe = losses.length / epochs();
    expect(mean(losses.slice(-spe))).toBeLessThan(mean(losses.slice(0, spe)));
  });

  it('checkpoints for the last three epochs, newest first, the last one being the final model', async () => {
    const total = metricsOf(events).length;
    const spe = total / epochs();
    const raw = await client.fineTuning.jobs.checkpoints
      .list(created.id)
      .asResponse()
      .then((r) => r.json());
    expectMatchesSchema(raw, 'ListFineTuningJobCheckpointsResponse');
    expect(raw.data.map((c: { step_number: number }) => c.step_number)).toEqual([total, total - spe, total - 2 * spe]);
    expect(raw.first_id).toBe(raw.data[0].id);
    expect(raw.last_id).toBe(raw.data[2].id);
    expect(raw.has_more).toBe(false);
    expect(raw.data[0].fine_tuned_model_checkpoint).toBe(done.fine_tuned_model);
    for (const c of raw.data.slice(1)) {
      expect(c.fine_tuned_model_checkpoint).toMatch(
        new RegExp(`^ft:gpt-4o-mini-2024-07-18:${done.organization_id}:demo:[A-Za-z0-9]{8}:ckpt-step-${c.step_number}$`),
      );
    }
    const byStep = new Map(metricsOf(events).map((m) => [m.step, m]));
    for (const c of raw.data) {
      expect(c.fine_tuning_job_id).toBe(created.id);
      expect(c.id).toMatch(/^ftckpt_[A-Za-z0-9]{24}$/);
      expect(c.metrics.step).toBe(c.step_number);
      expect(c.metrics.train_loss).toBe(byStep.get(c.step_number)!.train_loss);
    }
    // Page by page.
    const p1 = await client.fineTuning.jobs.checkpoints.list(created.id, { limit: 2 });
    expect(p1.has_more).toBe(true);
    const p2 = await client.fineTuning.jobs.checkpoints.list(created.id, { limit: 2, after: p1.data[1].id });
    expect([...p1.data, ...p2.data].map((c) => c.id)).toEqual(raw.data.map((c: { id: string }) => c.id));
    expect(p2.has_more).toBe(false);
  });

  it('events page by page, newest first (limit + after, and the SDK auto-pagination)', async () => {
    const newestFirst = events
      .slice()
      .reverse()
      .map((e) => e.id);
    const first = await client.fineTuning.jobs
      .listEvents(created.id)
      .asResponse()
      .then((r) => r.json());
    expectMatchesSchema(first, 'ListFineTuningJobEventsResponse');
    expect(first.data.map((e: { id: string }) => e.id)).toEqual(newestFirst.slice(0, 20));
    expect(first.has_more).toBe(true);
    const walked: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await client.fineTuning.jobs.listEvents(created.id, { limit: 33, after });
      walked.push(...page.data.map((e) => e.id));
      if (!page.has_more) break;
      after = page.data[page.data.length - 1].id;
    }
    expect(walked).toEqual(newestFirst);
  });

  it('a results file: purpose fine-tune-results, CSV with one row per step', async () => {
    expect(done.result_files).toHaveLength(1);
    const file = await client.files.retrieve(done.result_files[0]);
    expectMatchesSchema(file, 'OpenAIFile');
    expect(file.purpose).toBe('fine-tune-results');
    const csv = await (await client.files.content(file.id)).text();
    expect(Buffer.byteLength(csv)).toBe(file.bytes);
    const [header, ...rows] = csv.trim().split('\n');
    expect(header).toBe('step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy');
    const steps = metricsOf(events);
    expect(rows).toHaveLength(steps.length);
    rows.forEach((row, i) => {
      const [step, loss, acc, vloss, vacc] = row.split(',');
      expect(Number(step)).toBe(i + 1);
      expect(Number(loss)).toBe(steps[i].train_loss);
      expect(Number(acc)).toBe(steps[i].train_mean_token_accuracy);
      expect([vloss, vacc]).toEqual(['', '']);
    });
    // It is listed among the org's files, filtered by purpose.
    expect((await client.files.list({ purpose: 'fine-tune-results' })).data.map((f) => f.id)).toEqual([file.id]);
  });

  it('the same job with the same seed gives identical metrics', async () => {
    const again = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: fileId, suffix: 'demo', seed: 42 });
    const finished = await waitForStatus(client, again.id, ['succeeded', 'failed']);
    expect(finished.status).toBe('succeeded');
    expect(finished.trained_tokens).toBe(done.trained_tokens);
    expect(finished.hyperparameters).toEqual(done.hyperparameters);
    expect(metricsOf(await allEvents(client, again.id))).toEqual(metricsOf(events));
    const a = (await client.fineTuning.jobs.checkpoints.list(created.id)).data.map((c) => c.metrics);
    const b = (await client.fineTuning.jobs.checkpoints.list(again.id)).data.map((c) => c.metrics);
    expect(b).toEqual(a);
    expect(finished.fine_tuned_model).not.toBe(done.fine_tuned_model);
  });
});

describe('other shapes of job', () => {
  let svc: RunningEmulator;
  let client: OpenAI;
  beforeAll(async () => {
    svc = await startEmulator({ stepMs: 3 });
    client = svc.client('sk-shapes');
  });
  afterAll(() => svc.close());

  it('with a validation file: validation metrics on every step, full validation on checkpoints, CSV columns filled', async () => {
    const train = await uploadTraining(client, trainingJsonl(12));
    const valid = await uploadTraining(client, trainingJsonl(5, 100), 'valid.jsonl');
    const job = await client.fineTuning.jobs.create({
      model: 'gpt-4o-mini',
      training_file: train,
      validation_file: valid,
      hyperparameters: { n_epochs: 3, batch_size: 4 },
    });
    expect(job.validation_file).toBe(valid);
    const done = await waitForStatus(client, job.id, ['succeeded', 'failed']);
    expect(done.status).toBe('succeeded');
    const events = await allEvents(client, job.id);
    expect(events[1].message).toBe(`Validating training file: ${train} and validation file: ${valid}`);
    const metricEvents = events.filter((e) => e.type === 'metrics');
    expect(metricEvents).toHaveLength(9); // ceil(12 / 4) × 3
    for (const e of metricEvents) {
      const d = e.data as Record<string, number>;
      expect(Object.keys(d).sort()).toEqual(
        ['step', 'total_steps', 'train_loss', 'train_mean_token_accuracy', 'valid_loss', 'valid_mean_token_accuracy'].sort(),
      );
      expect(e.message).toBe(`Step ${d.step}/9: training loss=${d.train_loss.toFixed(2)}, validation loss=${d.valid_loss.toFixed(2)}`);
    }
    const checkpoints = await client.fineTuning.jobs.checkpoints.list(job.id);
    expect(checkpoints.data.map((c) => c.step_number)).toEqual([9, 6, 3]);
    for (const c of checkpoints.data) {
      expect(c.metrics.full_valid_loss).toEqual(expect.any(Number));
      expect(c.metrics.full_valid_mean_token_accuracy).toEqual(expect.any(Number));
    }
    const csv = await (await client.files.content(done.result_files[0])).text();
    for (const row of csv.trim().split('\n').slice(1)) {
      const cells = row.split(',');
      expect(cells).toHaveLength(5);
      expect(cells.every((c) => c !== '' && Number.isFinite(Number(c)))).toBe(true);
    }
  });

  it('babbage-002 trains on prompt/completion lines', async () => {
    const file = await uploadTraining(client, completionJsonl(12), 'completions.jsonl');
    const job = await client.fineTuning.jobs.create({ model: 'babbage-002', training_file: file, hyperparameters: { n_epochs: 1 } });
    const done = await waitForStatus(client, job.id, ['succeeded', 'failed']);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.fine_tuned_model).toMatch(/^ft:babbage-002:org-[A-Za-z0-9]{24}::[A-Za-z0-9]{8}$/);
  });

  it('dpo on gpt-4o-mini: preference data, beta resolved and reported under method.dpo', async () => {
    const file = await uploadTraining(client, dpoJsonl(12), 'prefs.jsonl');
    const job = await client.fineTuning.jobs.create({
      model: 'gpt-4o-mini',
      training_file: file,
      method: { type: 'dpo', dpo: { hyperparameters: { n_epochs: 2 } } },
    });
    expect(job.method).toEqual({
      type: 'dpo',
      dpo: { hyperparameters: { beta: 'auto', n_epochs: 2, batch_size: 'auto', learning_rate_multiplier: 'auto' } },
    });
    const done = await waitForStatus(client, job.id, ['succeeded', 'failed']);
    expectMatchesSchema(done, 'FineTuningJob');
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    const hp = done.method!.dpo!.hyperparameters!;
    expect(hp.n_epochs).toBe(2);
    expect(hp.beta).toEqual(expect.any(Number));
    expect(hp.beta as number).toBeGreaterThan(0);
    expect(done.hyperparameters).toEqual({ n_epochs: 2, batch_size: hp.batch_size, learning_rate_multiplier: hp.learning_rate_multiplier });
    // A chat-format file for a dpo job fails validation, naming the format.
    const chat = await uploadTraining(client, trainingJsonl(12));
    const wrong = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: chat, method: { type: 'dpo' } });
    const failed = await waitForStatus(client, wrong.id, ['succeeded', 'failed']);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ param: 'training_file', code: 'invalid_training_file' });
  });

  it('a job with only one or two epochs checkpoints every epoch', async () => {
    const file = await uploadTraining(client, trainingJsonl(10));
    const job = await client.fineTuning.jobs.create({ model: 'gpt-3.5-turbo', training_file: file, hyperparameters: { n_epochs: 2, batch_size: 5 } });
    const done = await waitForStatus(client, job.id, ['succeeded', 'failed']);
    expect(done.status).toBe('succeeded');
    expect((await client.fineTuning.jobs.checkpoints.list(job.id)).data.map((c) => c.step_number)).toEqual([4, 2]);
  });
});
