/**
 * Resolving "auto" hyperparameters and the shape of a training run.
 *
 * n_epochs "auto" (OpenAI cookbook, "Data preparation and analysis for chat model fine-tuning"): target
 *   3 epochs, so that between 100 and 25,000 examples are trained, with 1 to 25 epochs:
 *     n * 3 < 100    → min(25, ceil(100 / n))
 *     n * 3 > 25,000 → max(1, floor(25,000 / n))
 *     otherwise      → 3
 *   (The cookbook writes floor division in the first branch too; ceil is used so that at least 100
 *   examples are really trained, e.g. 30 examples → 4 epochs, not 3.)
 * batch_size "auto": about 0.2% of the examples, ceil(n * 0.002), clamped to 1..256.
 * learning_rate_multiplier "auto": 2 / sqrt(batch_size), clamped to 0.1..2 and rounded to 2 decimals
 *   (2 for batch size 1, 1 for 4, 0.5 for 16, 0.13 for 256).
 * beta (dpo) "auto": 0.1.
 * stepsPerEpoch = ceil(n / batch_size); totalSteps = stepsPerEpoch * n_epochs;
 * trainedTokens = sum of billable tokens per example * n_epochs.
 */
import type { FineTuneMethodType, RequestedHyperparameters, TokenizedExample, TrainingPlan } from './types.js';

export const TARGET_EPOCHS = 3;
export const MIN_TARGET_EXAMPLES = 100;
export const MAX_TARGET_EXAMPLES = 25_000;
export const MIN_DEFAULT_EPOCHS = 1;
export const MAX_DEFAULT_EPOCHS = 25;
export const DEFAULT_DPO_BETA = 0.1;

export function autoEpochs(nExamples: number): number {
  const n = Math.max(1, Math.floor(nExamples));
  if (n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES) return Math.min(MAX_DEFAULT_EPOCHS, Math.ceil(MIN_TARGET_EXAMPLES / n));
  if (n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES) return Math.max(MIN_DEFAULT_EPOCHS, Math.floor(MAX_TARGET_EXAMPLES / n));
  return TARGET_EPOCHS;
}

export function autoBatchSize(nExamples: number): number {
  return Math.min(256, Math.max(1, Math.ceil(nExamples * 0.002)));
}

export function autoLearningRateMultiplier(batchSize: number): number {
  const lr = Math.min(2, Math.max(0.1, 2 / Math.sqrt(Math.max(1, batchSize))));
  return Math.round(lr * 100) / 100;
}

const given = (v: number | 'auto' | undefined): v is number => typeof v === 'number' && Number.isFinite(v);

export function planTraining(examples: TokenizedExample[], requested: RequestedHyperparameters, method: FineTuneMethodType): TrainingPlan {
  const n = examples.length;
  const req = requested ?? {};
  const nEpochs = given(req.n_epochs) ? Math.max(1, Math.floor(req.n_epochs)) : autoEpochs(n);
  // A batch cannot be larger than the data set.
  const batchSize = Math.max(1, Math.min(given(req.batch_size) ? Math.floor(req.batch_size) : autoBatchSize(n), Math.max(1, n)));
  const learningRateMultiplier =
    given(req.learning_rate_multiplier) && req.learning_rate_multiplier > 0 ? req.learning_rate_multiplier : autoLearningRateMultiplier(batchSize);
  const stepsPerEpoch = Math.max(1, Math.ceil(n / batchSize));
  let billable = 0;
  for (const e of examples) billable += e.billableTokens;
  const plan: TrainingPlan = {
    nEpochs,
    batchSize,
    learningRateMultiplier,
    stepsPerEpoch,
    totalSteps: stepsPerEpoch * nEpochs,
    trainedTokens: billable * nEpochs,
  };
  if (method === 'dpo') plan.beta = given(req.beta) && req.beta > 0 ? req.beta : DEFAULT_DPO_BETA;
  return plan;
}
