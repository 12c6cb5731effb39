/**
 * The trainer: measured metrics that fall as the model memorises the data, determinism, fast-forward
 * after a crash, validation metrics.
 */
import { describe, expect, it } from 'vitest';
import {
  createTrainer,
  planTraining,
  prepareDataset,
  type CheckpointMetrics,
  type PrepareOptions,
  type RequestedHyperparameters,
  type StepMetrics,
  type TokenizedExample,
  type Trainer,
} from '../../src/training/index.js';
import { mixSeed, permutation } from '../../src/training/prng.js';
import { chatRows, completionRows, dpoRows, toJsonl } from './helpers.js';

function examplesOf(content: string, o: Partial<PrepareOptions> = {}): TokenizedExample[] {
  const r = prepareDataset(content, { model: 'gpt-4o-mini', method: 'supervised', role: 'training_file', ...o });
  if (!r.ok) throw new Error(r.message);
  return r.examples;
}

const TRAIN = examplesOf(toJsonl(chatRows(20)));
const VALID = examplesOf(toJsonl(chatRows(6, 100)), { role: 'validation_file' });

interface Run {
  steps: StepMetrics[];
  checkpoints: CheckpointMetrics[];
  trainer: Trainer;
}

function run(train = TRAIN, valid: TokenizedExample[] | null = VALID, seed = 42, requested: RequestedHyperparameters = {}): Run {
  const plan = planTraining(train, requested, 'supervised');
  const trainer = createTrainer(train, valid, plan, seed);
  const steps: StepMetrics[] = [];
  const checkpoints: CheckpointMetrics[] = [];
  while (trainer.stepsDone < plan.totalSteps) {
    const m = trainer.step();
    steps.push(m);
    if (trainer.isEpochEnd(m.step)) checkpoints.push(trainer.checkpointMetrics());
  }
  return { steps, checkpoints, trainer };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function epochMeans(r: Run, key: 'train_loss' | 'train_mean_token_accuracy'): number[] {
  const { stepsPerEpoch, nEpochs } = r.trainer.plan;
  return Array.from({ length: nEpochs }, (_, e) => mean(r.steps.slice(e * stepsPerEpoch, (e + 1) * stepsPerEpoch).map((m) => m[key])));
}

describe('training on ordinary data', () => {
  const r = run();

  it('runs the planned steps (20 examples: 5 epochs of 20 steps)', () => {
    expect(r.trainer.plan).toMatchObject({ nEpochs: 5, batchSize: 1, stepsPerEpoch: 20, totalSteps: 100 });
    expect(r.steps.map((m) => m.step)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(r.checkpoints.map((c) => c.step)).toEqual([20, 40, 60, 80, 100]);
  });

  it('training loss falls from the first epoch to the last, accuracy rises', () => {
    const loss = epochMeans(r, 'train_loss');
    const acc = epochMeans(r, 'train_mean_token_accuracy');
    expect(loss[loss.length - 1]).toBeLessThan(loss[0] * 0.5);
    for (let e = 1; e < loss.length; e++) expect(loss[e]).toBeLessThan(loss[e - 1]);
    expect(acc[acc.length - 1]).toBeGreaterThan(acc[0]);
  });

  it('the first step is measured on an untrained model: ln(vocabulary) nats per token, no correct guess', () => {
    expect(r.steps[0].train_loss).toBeCloseTo(Math.log(200_019), 5);
    expect(r.steps[0].train_mean_token_accuracy).toBe(0);
  });

  it('metrics are finite, in range and rounded to 6 decimals', () => {
    for (const m of [...r.steps, ...r.checkpoints] as CheckpointMetrics[]) {
      for (const [k, v] of Object.entries(m)) {
        if (k === 'step') continue;
        expect(Number.isFinite(v)).toBe(true);
        expect(v).toBeGreaterThanOrEqual(0);
        if (k.endsWith('accuracy')) expect(v).toBeLessThanOrEqual(1);
        expect(Math.abs(Math.round(v * 1e6) - v * 1e6)).toBeLessThan(1e-6);
      }
    }
  });

  it('validation metrics at every step, full validation at checkpoints, validation loss falls too', () => {
    for (const m of r.steps)
      expect(Object.keys(m).sort()).toEqual(['step', 'train_loss', 'train_mean_token_accuracy', 'valid_loss', 'valid_mean_token_accuracy']);
    for (const c of r.checkpoints) {
      expect(c.full_valid_loss).toBeTypeOf('number');
      expect(c.full_valid_mean_token_accuracy).toBeTypeOf('number');
    }
    expect(r.checkpoints[r.checkpoints.length - 1].full_valid_loss!).toBeLessThan(r.checkpoints[0].full_valid_loss!);
    expect(r.steps[r.steps.length - 1].valid_loss!).toBeLessThan(r.steps[0].valid_loss!);
  });

  it('without a validation file there are no validation metrics', () => {
    const nv = run(TRAIN, null);
    for (const m of nv.steps) expect(m.valid_loss).toBeUndefined();
    expect(nv.checkpoints[0].full_valid_loss).toBeUndefined();
    // Validation never changes training.
    expect(nv.steps.map((m) => m.train_loss)).toEqual(r.steps.map((m) => m.train_loss));
  });

  it('a higher learning rate multiplier memorises faster', () => {
    const fast = epochMeans(run(TRAIN, null, 1, { learning_rate_multiplier: 2 }), 'train_loss');
    const slow = epochMeans(run(TRAIN, null, 1, { learning_rate_multiplier: 0.1 }), 'train_loss');
    expect(fast[1]).toBeLessThan(slow[1]);
  });

  it('completion and dpo data train too', () => {
    const comp = examplesOf(toJsonl(completionRows(20)), { model: 'babbage-002' });
    const dpo = examplesOf(toJsonl(dpoRows(20)), { method: 'dpo' });
    for (const ex of [comp, dpo]) {
      const loss = epochMeans(run(ex, null), 'train_loss');
      expect(loss[loss.length - 1]).toBeLessThan(loss[0]);
    }
  });

  it('batches larger than one example', () => {
    const big = examplesOf(toJsonl(chatRows(100)));
    const b = run(big, VALID, 3, { batch_size: 8, n_epochs: 3 });
    expect(b.trainer.plan).toMatchObject({ stepsPerEpoch: 13, totalSteps: 39 });
    const loss = epochMeans(b, 'train_loss');
    expect(loss[2]).toBeLessThan(loss[0]);
  });
});

describe('determinism', () => {
  it('same data, plan and seed give identical metrics', () => {
    const a = run(TRAIN, VALID, 7);
    const b = run(TRAIN, VALID, 7);
    expect(b.steps).toEqual(a.steps);
    expect(b.checkpoints).toEqual(a.checkpoints);
  });

  it('a different seed gives a different order (and so different metrics)', () => {
    const a = run(TRAIN, VALID, 7);
    const b = run(TRAIN, VALID, 8);
    expect(b.steps.slice(0, 20).map((m) => m.train_loss)).not.toEqual(a.steps.slice(0, 20).map((m) => m.train_loss));
  });

  it('each epoch visits every example once, in a seeded order', () => {
    const p1 = permutation(20, mixSeed(7, 1, 0));
    expect([...p1].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect([...permutation(20, mixSeed(7, 1, 0))]).toEqual([...p1]);
    expect([...permutation(20, mixSeed(7, 1, 1))]).not.toEqual([...p1]);
    expect([...permutation(20, mixSeed(8, 1, 0))]).not.toEqual([...p1]);
  });
});

describe('fastForward (crash recovery)', () => {
  const full = run(TRAIN, VALID, 99);

  it.each([0, 1, 7, 20, 21, 57, 99, 100])('after fastForward(%i) the trainer continues exactly like an uninterrupted run', (k) => {
    const t = createTrainer(TRAIN, VALID, full.trainer.plan, 99);
    t.fastForward(k);
    expect(t.stepsDone).toBe(k);
    if (k > 0) {
      const cp = t.checkpointMetrics();
      expect({
        step: cp.step,
        train_loss: cp.train_loss,
        train_mean_token_accuracy: cp.train_mean_token_accuracy,
        valid_loss: cp.valid_loss,
        valid_mean_token_accuracy: cp.valid_mean_token_accuracy,
      }).toEqual(full.steps[k - 1]);
      if (k % 20 === 0) expect(cp).toEqual(full.checkpoints[k / 20 - 1]);
    }
    const rest: StepMetrics[] = [];
    while (t.stepsDone < full.trainer.plan.totalSteps) rest.push(t.step());
    expect(rest).toEqual(full.steps.slice(k));
  });

  it('cannot go back, and cannot run past the end', () => {
    const t = createTrainer(TRAIN, VALID, full.trainer.plan, 99);
    t.fastForward(10);
    expect(() => t.fastForward(5)).toThrow(/back/);
    t.fastForward(10);
    expect(t.stepsDone).toBe(10);
    t.fastForward(1_000);
    expect(t.stepsDone).toBe(100);
    expect(() => t.step()).toThrow(/complete/);
  });

  it('isEpochEnd', () => {
    const t = full.trainer;
    expect([0, 1, 19, 20, 21, 40, 100].map((s) => t.isEpochEnd(s))).toEqual([false, false, false, true, false, true, true]);
  });
});

describe('edge cases', () => {
  it('examples with nothing to train on (all assistant weights 0) report 0, never NaN', () => {
    const rows = chatRows(10).map((r) => ({
      messages: (r.messages as Record<string, unknown>[]).map((m) => (m.role === 'assistant' ? { ...m, weight: 0 } : m)),
    }));
    const ex = examplesOf(toJsonl(rows));
    const r = run(ex, ex, 1, { n_epochs: 1 });
    for (const m of r.steps) expect(m).toMatchObject({ train_loss: 0, train_mean_token_accuracy: 0, valid_loss: 0, valid_mean_token_accuracy: 0 });
  });

  it('checkpoint metrics before any step measure the first batch without training', () => {
    const plan = planTraining(TRAIN, {}, 'supervised');
    const t = createTrainer(TRAIN, VALID, plan, 5);
    const cp = t.checkpointMetrics();
    expect(cp.step).toBe(0);
    expect(t.stepsDone).toBe(0);
    expect(t.step().train_loss).toBe(cp.train_loss);
  });

  it('a 20-example job steps well under a millisecond per step', () => {
    const plan = planTraining(TRAIN, { n_epochs: 25 }, 'supervised');
    const t = createTrainer(TRAIN, VALID, plan, 5);
    const t0 = performance.now();
    while (t.stepsDone < plan.totalSteps) t.step();
    const perStep = (performance.now() - t0) / plan.totalSteps;
    expect(perStep).toBeLessThan(1);
  });
});
