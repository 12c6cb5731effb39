/** The upstream's objects, as OpenAI's spec defines them (snake_case). Loose where upstreams differ. */

export type HyperValue = number | 'auto' | string | null | undefined;

export interface RawHyperparameters {
  n_epochs?: HyperValue;
  batch_size?: HyperValue;
  learning_rate_multiplier?: HyperValue;
  beta?: HyperValue;
  [k: string]: unknown;
}

export interface RawMethod {
  type: string;
  supervised?: { hyperparameters?: RawHyperparameters } | null;
  dpo?: { hyperparameters?: RawHyperparameters } | null;
  reinforcement?: Record<string, unknown> | null;
}

export interface RawIntegration {
  type: string;
  wandb?: { project: string; name?: string | null; entity?: string | null; tags?: string[] | null } | null;
}

export interface RawJob {
  object?: string;
  id: string;
  created_at: number;
  error: { code?: string | null; message?: string | null; param?: string | null } | null;
  fine_tuned_model: string | null;
  finished_at: number | null;
  hyperparameters?: RawHyperparameters | null;
  model: string;
  organization_id: string;
  result_files: string[];
  status: string;
  trained_tokens: number | null;
  training_file: string;
  validation_file: string | null;
  integrations?: RawIntegration[] | null;
  seed: number;
  estimated_finish?: number | null;
  method?: RawMethod | null;
  metadata?: Record<string, string> | null;
  user_provided_suffix?: string | null;
}

export interface RawEvent {
  object?: string;
  id: string;
  created_at: number;
  level: string;
  message: string;
  type?: string | null;
  data?: Record<string, unknown> | null;
}

export interface RawCheckpoint {
  object?: string;
  id: string;
  created_at: number;
  fine_tuned_model_checkpoint: string;
  step_number: number;
  metrics: Record<string, number | null | undefined>;
  fine_tuning_job_id: string;
}

export interface RawFile {
  object?: string;
  id: string;
  bytes: number;
  created_at: number;
  expires_at?: number | null;
  filename: string;
  purpose: string;
  status?: string | null;
  status_details?: string | null;
}

export interface Page<T> {
  data: T[];
  has_more: boolean;
}

export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);
export const isTerminal = (job: { status: string }) => TERMINAL_STATUSES.has(job.status);
