/** Store rows → the response objects of OpenAI's spec (FineTuningJob, OpenAIFile, events, checkpoints). */
import type { CheckpointRow, EventRow, FileRow, JobRow } from './store.js';

type HyperValue = number | 'auto';

export function serializeFile(f: FileRow) {
  return {
    object: 'file' as const,
    id: f.id,
    bytes: f.bytes,
    created_at: f.created_at,
    // The spec types expires_at as an integer, so it is left out for files that never expire.
    ...(f.expires_at != null ? { expires_at: f.expires_at } : {}),
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed' as const,
  };
}

/** Hyperparameters as the job reports them: the requested values (or "auto") until the plan resolves them. */
export function jobHyperparameters(job: JobRow): {
  batch_size: HyperValue;
  learning_rate_multiplier: HyperValue;
  n_epochs: HyperValue;
  beta?: HyperValue;
} {
  const plan = job.plan;
  const req = job.requested;
  const hp = {
    batch_size: plan ? plan.batchSize : (req.batch_size ?? 'auto'),
    learning_rate_multiplier: plan ? plan.learningRateMultiplier : (req.learning_rate_multiplier ?? 'auto'),
    n_epochs: plan ? plan.nEpochs : (req.n_epochs ?? 'auto'),
  };
  if (job.method === 'dpo') return { beta: plan?.beta ?? req.beta ?? 'auto', ...hp };
  return hp;
}

export function serializeJob(job: JobRow, ctx: { stepMs: number; nowMs: number }) {
  const hp = jobHyperparameters(job);
  const { beta: _beta, ...common } = hp;
  let estimatedFinish: number | null = null;
  if (job.status === 'running' && job.plan) {
    const remaining = Math.max(0, job.plan.totalSteps - job.current_step);
    estimatedFinish = Math.ceil((ctx.nowMs + remaining * ctx.stepMs) / 1000);
  }
  return {
    object: 'fine_tuning.job' as const,
    id: job.id,
    model: job.model,
    created_at: job.created_at,
    finished_at: job.finished_at,
    fine_tuned_model: job.fine_tuned_model,
    organization_id: job.org_id,
    result_files: job.result_files,
    status: job.status,
    validation_file: job.validation_file,
    training_file: job.training_file,
    hyperparameters: common,
    trained_tokens: job.trained_tokens,
    error: job.error,
    user_provided_suffix: job.suffix,
    seed: job.seed,
    estimated_finish: estimatedFinish,
    integrations: job.integrations ?? [],
    method:
      job.method === 'dpo' ? { type: 'dpo' as const, dpo: { hyperparameters: hp } } : { type: 'supervised' as const, supervised: { hyperparameters: common } },
    metadata: job.metadata,
  };
}

export function serializeEvent(e: EventRow) {
  return {
    object: 'fine_tuning.job.event' as const,
    id: e.id,
    created_at: e.created_at,
    level: e.level,
    message: e.message,
    data: e.data,
    type: e.type,
  };
}

export function serializeCheckpoint(c: CheckpointRow) {
  return {
    object: 'fine_tuning.job.checkpoint' as const,
    id: c.id,
    created_at: c.created_at,
    fine_tuned_model_checkpoint: c.fine_tuned_model_checkpoint,
    fine_tuning_job_id: c.job_id,
    metrics: c.metrics,
    step_number: c.step_number,
  };
}
