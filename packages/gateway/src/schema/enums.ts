import { builder } from './builder.js';

export const JOB_STATUSES = ['validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'paused'] as const;

export const FineTuningJobStatus = builder.enumType('FineTuningJobStatus', {
  description:
    "Where a job is in its life. `UNKNOWN` stands for a status the upstream added after this server was written: the job is still returned, and `rawStatus` has the upstream's value.",
  values: {
    VALIDATING_FILES: { value: 'validating_files', description: 'The training and validation files are being checked.' },
    QUEUED: { value: 'queued', description: 'Waiting for capacity.' },
    RUNNING: { value: 'running', description: 'Training.' },
    SUCCEEDED: { value: 'succeeded', description: 'Finished: `fineTunedModel` is ready.' },
    FAILED: { value: 'failed', description: 'Finished with an error (see `error`).' },
    CANCELLED: { value: 'cancelled', description: 'Cancelled by a user.' },
    PAUSED: { value: 'paused', description: 'Paused by a user; resume it with `resumeFineTuningJob`.' },
    UNKNOWN: { value: 'unknown', description: 'A status this server does not know yet; see `rawStatus`.' },
  } as const,
});

export const FilePurpose = builder.enumType('FilePurpose', {
  description: 'What a file is for. Uploads accept ASSISTANTS, BATCH, FINE_TUNE, VISION, USER_DATA and EVALS.',
  values: {
    ASSISTANTS: { value: 'assistants' },
    ASSISTANTS_OUTPUT: { value: 'assistants_output' },
    BATCH: { value: 'batch' },
    BATCH_OUTPUT: { value: 'batch_output' },
    FINE_TUNE: { value: 'fine-tune', description: 'Training or validation data for fine-tuning (JSONL).' },
    FINE_TUNE_RESULTS: { value: 'fine-tune-results', description: 'The results CSV of a fine-tuning job.' },
    VISION: { value: 'vision' },
    USER_DATA: { value: 'user_data' },
    EVALS: { value: 'evals' },
  } as const,
});
export const FILE_PURPOSES = new Set([
  'assistants',
  'assistants_output',
  'batch',
  'batch_output',
  'fine-tune',
  'fine-tune-results',
  'vision',
  'user_data',
  'evals',
]);
export const UPLOAD_PURPOSES = ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] as const;

export const FineTuningJobEventLevel = builder.enumType('FineTuningJobEventLevel', {
  description: 'Severity of an event. A level the upstream adds later is reported as INFO.',
  values: { INFO: { value: 'info' }, WARN: { value: 'warn' }, ERROR: { value: 'error' } } as const,
});

export const FineTuningJobEventType = builder.enumType('FineTuningJobEventType', {
  description: 'MESSAGE for a text event, METRICS for a training step (its numbers are in `data`).',
  values: { MESSAGE: { value: 'message' }, METRICS: { value: 'metrics' } } as const,
});

export const FineTuneMethodType = builder.enumType('FineTuneMethodType', {
  description: 'The fine-tuning method.',
  values: {
    SUPERVISED: { value: 'supervised', description: 'Supervised fine-tuning on chat (or prompt/completion) examples.' },
    DPO: { value: 'dpo', description: 'Direct preference optimisation on preferred/non-preferred pairs.' },
    REINFORCEMENT: { value: 'reinforcement', description: 'Reinforcement fine-tuning with a grader.' },
  } as const,
});
