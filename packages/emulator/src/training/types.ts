/**
 * The contract between the local fine-tuning service (routes, store, scheduler) and its
 * data side (file validation, tokenization, the real training that produces metrics).
 *
 * The scheduler calls `prepareDataset` while the job is `validating_files`, `planTraining`
 * when it moves to `running`, then drives a `Trainer` one step at a time. Training is
 * deterministic: the same examples, plan and seed give the same metrics, so after a crash the
 * scheduler re-creates the trainer and calls `fastForward(lastRecordedStep)` to continue.
 */

export type FineTuneMethodType = 'supervised' | 'dpo';

/** One training example after tokenization. */
export interface TokenizedExample {
  /** Every token of the example, in order (the model's context). */
  tokens: number[];
  /** Parallel to `tokens`: true where the token is trained on (assistant output / completion / preferred output). */
  trainMask: boolean[];
  /** Billable tokens of this example, already capped at the model's per-example limit. */
  billableTokens: number;
}

export interface DatasetWarning {
  /** Event text, e.g. "3 examples were truncated to 65536 tokens". */
  message: string;
}

export type DatasetResult =
  | { ok: true; examples: TokenizedExample[]; warnings: DatasetWarning[] }
  | {
      ok: false;
      /** OpenAI-style machine code, e.g. "invalid_training_file". */
      code: string;
      /** Human-readable reason, naming the line when it is line-specific. */
      message: string;
    };

export interface PrepareOptions {
  /** Base model name as the user gave it (e.g. "gpt-4o-mini-2024-07-18", "babbage-002"). */
  model: string;
  method: FineTuneMethodType;
  /** "training_file" or "validation_file": validation files need no minimum example count. */
  role: 'training_file' | 'validation_file';
}

/** Hyperparameters as requested: a number or "auto". */
export interface RequestedHyperparameters {
  n_epochs?: number | 'auto';
  batch_size?: number | 'auto';
  learning_rate_multiplier?: number | 'auto';
  beta?: number | 'auto';
}

/** Hyperparameters once "auto" is resolved, as reported on the job when it runs. */
export interface TrainingPlan {
  nEpochs: number;
  batchSize: number;
  learningRateMultiplier: number;
  beta?: number;
  stepsPerEpoch: number;
  totalSteps: number;
  /** trained_tokens as OpenAI bills it: sum of billable tokens per example, times epochs. */
  trainedTokens: number;
}

export interface StepMetrics {
  step: number;
  train_loss: number;
  train_mean_token_accuracy: number;
  /** Present only when there is a validation file. */
  valid_loss?: number;
  valid_mean_token_accuracy?: number;
}

export interface CheckpointMetrics extends StepMetrics {
  /** Over the whole validation set, when there is one. */
  full_valid_loss?: number;
  full_valid_mean_token_accuracy?: number;
}

export interface Trainer {
  readonly plan: TrainingPlan;
  /** Steps done so far (0 before the first). */
  readonly stepsDone: number;
  /** Run one step (one batch) and return its measured metrics. */
  step(): StepMetrics;
  /** True when this step number closes an epoch. */
  isEpochEnd(step: number): boolean;
  /** Metrics for a checkpoint at the current step (full validation pass when there is one). */
  checkpointMetrics(): CheckpointMetrics;
  /** Re-run the first `steps` steps silently (crash recovery); metrics are identical to the first run. */
  fastForward(steps: number): void;
}
