/**
 * Part 3 of the issue, data side as the service reports it: a bad file fails the job with
 * error {code, message, param: "training_file" | "validation_file"} and an error event; nothing crashes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import {
  badJsonl,
  chatExamples,
  completionJsonl,
  type RunningEmulator,
  startEmulator,
  toJsonl,
  trainingJsonl,
  uploadTraining,
  waitForStatus,
} from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';
import { modelTokenLimit } from '../../src/training/index.js';
import { expectedTrainedTokens } from '../kit/token-count.js';

type Event = OpenAI.FineTuning.Jobs.FineTuningJobEvent;

async function allEvents(client: OpenAI, jobId: string): Promise<Event[]> {
  const out: Event[] = [];
  for await (const e of client.fineTuning.jobs.listEvents(jobId, { limit: 100 })) out.push(e);
  return out.reverse();
}

describe('bad training data fails the job, clearly', () => {
  let svc: RunningEmulator;
  let client: OpenAI;
  beforeAll(async () => {
    svc = await startEmulator({ stepMs: 3 });
    client = svc.client('sk-datasets');
  });
  afterAll(() => svc.close());

  async function failsWith(
    content: string,
    opts: {
      model?: string;
      param?: 'training_file' | 'validation_file';
      code?: string;
      message: RegExp;
      method?: 'supervised' | 'dpo';
    },
  ) {
    const good = await uploadTraining(client, trainingJsonl(12, 50), 'good.jsonl');
    const bad = await uploadTraining(client, content, 'bad.jsonl');
    const param = opts.param ?? 'training_file';
    const job = await client.fineTuning.jobs.create({
      model: opts.model ?? 'gpt-4o-mini',
      training_file: param === 'training_file' ? bad : good,
      validation_file: param === 'validation_file' ? bad : undefined,
      method: opts.method ? { type: opts.method } : undefined,
    });
    const failed = await waitForStatus(client, job.id, ['failed', 'succeeded']);
    expectMatchesSchema(failed, 'FineTuningJob');
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ param, code: opts.code ?? (param === 'training_file' ? 'invalid_training_file' : 'invalid_validation_file') });
    expect(failed.error!.message).toMatch(opts.message);
    expect(failed.error!.message).toMatch(new RegExp(`^The job failed due to an invalid ${param === 'training_file' ? 'training' : 'validation'} file\\. `));
    expect(failed.fine_tuned_model).toBeNull();
    expect(failed.trained_tokens).toBeNull();
    expect(failed.result_files).toEqual([]);
    const events = await allEvents(client, job.id);
    expect(events.filter((e) => e.type === 'metrics')).toEqual([]);
    expect(events.map((e) => e.message)).not.toContain('Files validated, moving job to queued state');
    const last = events[events.length - 1];
    expect(last).toMatchObject({ level: 'error', type: 'message', message: failed.error!.message });
    return failed;
  }

  it('a line that is not JSON (the line is named)', async () => {
    await failsWith(badJsonl.notJson(), { message: /line 3/i });
  });

  it('an example without messages', async () => {
    await failsWith(badJsonl.missingMessages(), { message: /messages/i });
  });

  it('a message with an unknown role', async () => {
    await failsWith(badJsonl.badRole(), { message: /robot|role/i });
  });

  it('a message with a key that is not allowed', async () => {
    await failsWith(badJsonl.extraKey(), { message: /mood/ });
  });

  it('an example without an assistant message', async () => {
    await failsWith(badJsonl.noAssistant(), { message: /assistant/i });
  });

  it('fewer than 10 examples in the training file', async () => {
    await failsWith(badJsonl.tooFew(5), { code: 'invalid_n_examples', message: /5 example\(s\), but must have at least 10/ });
  });

  it('chat lines for babbage-002 and prompt/completion lines for gpt-4o-mini', async () => {
    await failsWith(trainingJsonl(12), { model: 'babbage-002', message: /prompt|completion/i });
    await failsWith(completionJsonl(12), { message: /messages/i });
  });

  it('a bad validation file names validation_file', async () => {
    await failsWith(badJsonl.noAssistant(), { param: 'validation_file', message: /assistant/i });
  });

  it('an empty-looking file (only blank lines)', async () => {
    await failsWith('\n\n\n', { code: 'invalid_n_examples', message: /0 example\(s\)/ });
  });

  it('a short validation file is fine (no minimum for validation)', async () => {
    const train = await uploadTraining(client, trainingJsonl(10));
    const valid = await uploadTraining(client, trainingJsonl(2, 30), 'v.jsonl');
    const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: train, validation_file: valid, hyperparameters: { n_epochs: 1 } });
    expect((await waitForStatus(client, job.id, ['failed', 'succeeded'])).status).toBe('succeeded');
  });

  it('an over-long example is truncated with a warn event, and billed at the limit', async () => {
    const model = 'gpt-3.5-turbo-0125';
    const limit = modelTokenLimit(model);
    const content = badJsonl.overlong(Math.ceil(limit * 0.75));
    const file = await uploadTraining(client, content, 'long.jsonl');
    const job = await client.fineTuning.jobs.create({ model, training_file: file, hyperparameters: { n_epochs: 1, batch_size: 4 } });
    const done = await waitForStatus(client, job.id, ['failed', 'succeeded'], 60_000);
    expect(done.status).toBe('succeeded');
    const events = await allEvents(client, job.id);
    const warnings = events.filter((e) => e.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0].message).toMatch(new RegExp(String(limit)));
    const messages = events.map((e) => e.message);
    expect(messages.indexOf(warnings[0].message)).toBeLessThan(messages.indexOf('Files validated, moving job to queued state'));
    const examples = content
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(done.trained_tokens).toBe(expectedTrainedTokens(examples, model, 1));
    expect(done.trained_tokens).toBeLessThan(expectedTrainedTokens(examples, model, 1, Infinity));
  });

  it('the service stays up and other jobs are unaffected', async () => {
    const file = await uploadTraining(client, toJsonl(chatExamples(10)));
    const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: file, hyperparameters: { n_epochs: 1 } });
    expect((await waitForStatus(client, job.id, ['failed', 'succeeded'])).status).toBe('succeeded');
    const all = (await client.fineTuning.jobs.list({ limit: 100 })).data;
    expect(all.filter((j) => j.status === 'failed').length).toBeGreaterThanOrEqual(10);
  });
});
