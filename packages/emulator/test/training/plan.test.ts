/**
 * planTraining: "auto" hyperparameters at their boundaries, explicit values, and the run's shape.
 */
import { describe, expect, it } from 'vitest';
import { autoBatchSize, autoEpochs, autoLearningRateMultiplier, planTraining, type TokenizedExample } from '../../src/training/index.js';

const examples = (n: number, billable = (i: number) => 10 + i): TokenizedExample[] =>
  Array.from({ length: n }, (_, i) => ({ tokens: [1, 2, 3], trainMask: [false, true, true], billableTokens: billable(i) }));

describe('n_epochs auto (target 3; 100 to 25,000 examples trained; 1 to 25 epochs)', () => {
  it.each([
    [1, 25],
    [3, 25],
    [4, 25], // 100/4 = 25
    [5, 20],
    [10, 10],
    [20, 5],
    [30, 4], // 3 epochs would train only 90 examples
    [33, 4],
    [34, 3], // 102 examples at 3 epochs
    [1000, 3],
    [8333, 3], // 24,999 examples at 3 epochs
    [8334, 2], // 25,002 > 25,000 → floor(25,000 / 8,334)
    [12_500, 2],
    [12_501, 1],
    [100_000, 1],
  ])('%i examples → %i epochs', (n, epochs) => {
    expect(autoEpochs(n)).toBe(epochs);
    expect(planTraining(examples(n), { n_epochs: 'auto' }, 'supervised').nEpochs).toBe(epochs);
  });

  it('stays within 100..25,000 trained examples wherever 1..25 epochs allow it', () => {
    for (let n = 1; n <= 30_000; n += n < 200 ? 1 : 97) {
      const e = autoEpochs(n);
      expect(e).toBeGreaterThanOrEqual(1);
      expect(e).toBeLessThanOrEqual(25);
      if (n >= 4) expect(n * e).toBeGreaterThanOrEqual(100);
      if (n <= 25_000) expect(n * e).toBeLessThanOrEqual(25_000);
    }
  });
});

describe('batch_size auto (about 0.2% of the examples, 1..256)', () => {
  it.each([
    [1, 1],
    [10, 1],
    [500, 1],
    [501, 2],
    [1000, 2],
    [1001, 3],
    [50_000, 100],
    [127_500, 255],
    [128_000, 256],
    [1_000_000, 256],
  ])('%i examples → batch size %i', (n, bs) => {
    expect(autoBatchSize(n)).toBe(bs);
  });
});

describe('learning_rate_multiplier auto (2 / sqrt(batch size), 0.1..2)', () => {
  it.each([
    [1, 2],
    [2, 1.41],
    [4, 1],
    [16, 0.5],
    [100, 0.2],
    [256, 0.13],
  ])('batch size %i → %d', (bs, lr) => {
    expect(autoLearningRateMultiplier(bs)).toBe(lr);
  });
});

describe('planTraining', () => {
  it('resolves everything for a 20-example file', () => {
    const ex = examples(20);
    const billable = ex.reduce((s, e) => s + e.billableTokens, 0);
    expect(planTraining(ex, {}, 'supervised')).toEqual({
      nEpochs: 5,
      batchSize: 1,
      learningRateMultiplier: 2,
      stepsPerEpoch: 20,
      totalSteps: 100,
      trainedTokens: billable * 5,
    });
  });

  it('keeps explicit values and derives steps from them', () => {
    const plan = planTraining(examples(23), { n_epochs: 2, batch_size: 4, learning_rate_multiplier: 0.3 }, 'supervised');
    expect(plan).toMatchObject({ nEpochs: 2, batchSize: 4, learningRateMultiplier: 0.3, stepsPerEpoch: 6, totalSteps: 12 });
    expect(plan.beta).toBeUndefined();
  });

  it('trained tokens are billable tokens times epochs', () => {
    const plan = planTraining(
      examples(50, () => 1000),
      { n_epochs: 3 },
      'supervised',
    );
    expect(plan.trainedTokens).toBe(150_000);
  });

  it('a batch is never larger than the data set', () => {
    expect(planTraining(examples(12), { batch_size: 64 }, 'supervised')).toMatchObject({ batchSize: 12, stepsPerEpoch: 1 });
  });

  it('dpo gets beta, auto 0.1', () => {
    expect(planTraining(examples(10), {}, 'dpo').beta).toBe(0.1);
    expect(planTraining(examples(10), { beta: 0.5 }, 'dpo').beta).toBe(0.5);
    expect(planTraining(examples(10), { beta: 'auto' }, 'dpo').beta).toBe(0.1);
  });
});
