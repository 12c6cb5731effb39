/** Part 3 of the issue, request side: every field of POST /v1/fine_tuning/jobs checked as the spec says. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toFile } from 'openai';
import type OpenAI from 'openai';
import { expectApiError, type RunningEmulator, startEmulator, uploadTraining } from '../kit/index.js';
import { expectMatchesSchema } from '../kit/spec.js';

type Body = Record<string, unknown>;

describe('create job: request validation', () => {
  let svc: RunningEmulator;
  let client: OpenAI;
  let fileId: string;
  beforeAll(async () => {
    // Slow steps: accepted jobs stay in validating_files and are cancelled right away.
    svc = await startEmulator({ stepMs: 1000 });
    client = svc.client('sk-validation');
    fileId = await uploadTraining(client);
  });
  afterAll(() => svc.close());

  const create = (body: Body) => client.fineTuning.jobs.create(body as never);
  const base = (extra: Body = {}): Body => ({ model: 'gpt-4o-mini', training_file: fileId, ...extra });

  async function rejects(body: Body, param: string | null, code?: string, message?: RegExp) {
    const err = await expectApiError(create(body), { status: 400, param, code, message });
    expectMatchesSchema({ error: err.error }, 'Error');
    return err;
  }

  it('model: required and must be a fine-tunable model', async () => {
    await rejects({ training_file: fileId }, 'model', 'missing_required_parameter', /Missing required parameter: 'model'/);
    await rejects(base({ model: 42 }), 'model', 'invalid_type');
    await rejects(base({ model: 'gpt-5-ultra' }), 'model', 'model_not_available', /gpt-5-ultra/);
    await rejects(base({ model: 'text-davinci-003' }), 'model', 'model_not_available');
  });

  it('training_file: required, must exist, belong to the caller and have purpose fine-tune', async () => {
    await rejects({ model: 'gpt-4o-mini' }, 'training_file', 'missing_required_parameter');
    await rejects(base({ training_file: 'file-doesnotexist' }), 'training_file', 'file_not_found');
    const foreign = await uploadTraining(svc.client('sk-someone-else'));
    await rejects(base({ training_file: foreign }), 'training_file', 'file_not_found');
    const wrongPurpose = await client.files.create({
      file: await toFile(Buffer.from('{"messages":[]}\n'), 'data.jsonl'),
      purpose: 'user_data',
    });
    await rejects(base({ training_file: wrongPurpose.id }), 'training_file', 'invalid_file_purpose', /purpose 'fine-tune'/);
    await rejects(base({ validation_file: 'file-nope' }), 'validation_file', 'file_not_found');
    await rejects(base({ validation_file: wrongPurpose.id }), 'validation_file', 'invalid_file_purpose');
  });

  const hyperCases: [string, unknown, string][] = [
    ['n_epochs', 0, 'integer_below_min_value'],
    ['n_epochs', 51, 'integer_above_max_value'],
    ['n_epochs', 2.5, 'invalid_type'],
    ['n_epochs', 'many', 'invalid_value'],
    ['batch_size', 0, 'integer_below_min_value'],
    ['batch_size', 257, 'integer_above_max_value'],
    ['batch_size', true, 'invalid_type'],
    ['learning_rate_multiplier', 0, 'decimal_below_min_value'],
    ['learning_rate_multiplier', -0.5, 'decimal_below_min_value'],
    ['learning_rate_multiplier', 'fast', 'invalid_value'],
  ];

  it('hyperparameters out of range, top-level (deprecated) and under method.supervised', async () => {
    for (const [name, value, code] of hyperCases) {
      await rejects(base({ hyperparameters: { [name]: value } }), `hyperparameters.${name}`, code);
      await rejects(
        base({ method: { type: 'supervised', supervised: { hyperparameters: { [name]: value } } } }),
        `method.supervised.hyperparameters.${name}`,
        code,
      );
      await rejects(base({ method: { type: 'dpo', dpo: { hyperparameters: { [name]: value } } } }), `method.dpo.hyperparameters.${name}`, code);
    }
    await rejects(base({ hyperparameters: { n_epochs: 2, warmup: 3 } }), 'hyperparameters.warmup', 'unknown_parameter');
    await rejects(
      base({ hyperparameters: { n_epochs: 2 }, method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 3 } } } }),
      'hyperparameters',
      'invalid_value',
    );
  });

  it('suffix: 1 to 64 characters', async () => {
    await rejects(base({ suffix: '' }), 'suffix', 'string_below_min_length');
    await rejects(base({ suffix: 'x'.repeat(65) }), 'suffix', 'string_above_max_length', /maximum length 64/);
    await rejects(base({ suffix: 7 }), 'suffix', 'invalid_type');
  });

  it('seed: an integer from 0 to 2147483647', async () => {
    await rejects(base({ seed: -1 }), 'seed', 'integer_below_min_value');
    await rejects(base({ seed: 2147483648 }), 'seed', 'integer_above_max_value');
    await rejects(base({ seed: 1.5 }), 'seed', 'invalid_type');
    await rejects(base({ seed: '42' }), 'seed', 'invalid_type');
  });

  it('method: supervised or dpo, and dpo beta in (0, 2]', async () => {
    await rejects(base({ method: { type: 'reinforcement' } }), 'method.type', 'invalid_value');
    await rejects(base({ method: { type: 'magic' } }), 'method.type', 'invalid_value', /'supervised' and 'dpo'/);
    await rejects(base({ method: {} }), 'method.type', 'missing_required_parameter');
    await rejects(base({ model: 'gpt-3.5-turbo', method: { type: 'dpo' } }), 'method.type', 'invalid_value', /does not support the 'dpo' method/);
    await rejects(base({ model: 'babbage-002', method: { type: 'dpo' } }), 'method.type', 'invalid_value');
    await rejects(base({ method: 'dpo' }), 'method', 'invalid_type');
    await rejects(base({ method: { type: 'supervised', dpo: { hyperparameters: { beta: 0.1 } } } }), 'method.dpo', 'invalid_value');
    await rejects(base({ method: { type: 'dpo', dpo: { hyperparameters: { beta: 0 } } } }), 'method.dpo.hyperparameters.beta', 'decimal_below_min_value');
    await rejects(base({ method: { type: 'dpo', dpo: { hyperparameters: { beta: 2.5 } } } }), 'method.dpo.hyperparameters.beta', 'decimal_above_max_value');
    await rejects(
      base({ method: { type: 'supervised', supervised: { hyperparameters: { beta: 0.5 } } } }),
      'method.supervised.hyperparameters.beta',
      'unknown_parameter',
    );
  });

  it('metadata: at most 16 pairs, keys up to 64 and values up to 512 characters', async () => {
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    await rejects(base({ metadata: many }), 'metadata', 'object_above_max_properties');
    await rejects(base({ metadata: { ['k'.repeat(65)]: 'v' } }), 'metadata', 'string_above_max_length');
    await rejects(base({ metadata: { team: 'v'.repeat(513) } }), 'metadata.team', 'string_above_max_length');
    await rejects(base({ metadata: { team: 5 } }), 'metadata.team', 'invalid_type');
  });

  it('unknown fields and malformed bodies', async () => {
    await rejects(base({ epochs: 3 }), 'epochs', 'unknown_parameter');
    await rejects(base({ integrations: [{ type: 'slack' }] }), 'integrations[0].type', 'invalid_value');
    const res = await fetch(`${svc.baseURL}/fine_tuning/jobs`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-validation', 'content-type': 'application/json' },
      body: '{"model": "gpt-4o-mini", ',
    });
    expect(res.status).toBe(400);
    const body = await res.json();
    expectMatchesSchema(body, 'Error');
    expect(body.error.code).toBe('invalid_json');
    const arr = await fetch(`${svc.baseURL}/fine_tuning/jobs`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-validation', 'content-type': 'application/json' },
      body: '[1,2]',
    });
    expect(arr.status).toBe(400);
  });

  it('nothing was stored by any rejected request', async () => {
    expect((await client.fineTuning.jobs.list()).data).toEqual([]);
  });

  it('accepts the boundary values and reports what it was given', async () => {
    const accepted: Body[] = [
      base({ hyperparameters: { n_epochs: 1, batch_size: 1, learning_rate_multiplier: 0.0001 } }),
      base({ hyperparameters: { n_epochs: 50, batch_size: 256, learning_rate_multiplier: 'auto' } }),
      base({ suffix: 's'.repeat(64), seed: 0 }),
      base({ suffix: 'a', seed: 2147483647, metadata: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'.repeat(512)])) }),
      base({ method: { type: 'dpo', dpo: { hyperparameters: { beta: 2, n_epochs: 2 } } } }),
      base({ integrations: [{ type: 'wandb', wandb: { project: 'p' } }] }),
      base({ hyperparameters: { n_epochs: 4 }, method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 4, batch_size: 2 } } } }),
    ];
    for (const body of accepted) {
      const job = await create(body);
      expectMatchesSchema(job, 'FineTuningJob');
      expect(job.status).toBe('validating_files');
      await client.fineTuning.jobs.cancel(job.id);
    }
    const jobs = (await client.fineTuning.jobs.list({ limit: 100 })).data.reverse();
    expect(jobs).toHaveLength(accepted.length);
    expect(jobs[0].hyperparameters).toEqual({ n_epochs: 1, batch_size: 1, learning_rate_multiplier: 0.0001 });
    expect(jobs[0].method).toEqual({
      type: 'supervised',
      supervised: { hyperparameters: { n_epochs: 1, batch_size: 1, learning_rate_multiplier: 0.0001 } },
    });
    expect(jobs[1].hyperparameters).toEqual({ n_epochs: 50, batch_size: 256, learning_rate_multiplier: 'auto' });
    expect(jobs[2].seed).toBe(0);
    expect(jobs[3].seed).toBe(2147483647);
    expect(Object.keys(jobs[3].metadata!)).toHaveLength(16);
    expect(jobs[4].method).toEqual({
      type: 'dpo',
      dpo: { hyperparameters: { beta: 2, n_epochs: 2, batch_size: 'auto', learning_rate_multiplier: 'auto' } },
    });
    expect(jobs[5].integrations).toEqual([{ type: 'wandb', wandb: { project: 'p', name: null, entity: null, tags: [] } }]);
    expect(jobs[6].hyperparameters).toEqual({ n_epochs: 4, batch_size: 2, learning_rate_multiplier: 'auto' });
    // No seed given: one is chosen and reported.
    for (const j of [jobs[0], jobs[1], jobs[4]]) {
      expect(Number.isInteger(j.seed)).toBe(true);
      expect(j.seed).toBeGreaterThanOrEqual(0);
      expect(j.seed).toBeLessThanOrEqual(2147483647);
    }
  });
});
