/** The object types: File, FineTuningJob (+ its parts), FineTuningJobEvent, FineTuningJobCheckpoint. */
import { z } from 'zod';
import { loadFiles } from '../resolvers/files.js';
import { checkpointsConnection, eventsConnection, findCheckpoint, findEvent, loadJobs } from '../resolvers/jobs.js';
import { jobMetrics, type TrainingMetric } from '../resolvers/metrics.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../resolvers/connections.js';
import { ApiError } from '../upstream/errors.js';
import type { RawCheckpoint, RawEvent, RawFile, RawHyperparameters, RawIntegration, RawJob, RawMethod } from '../upstream/types.js';
import { builder } from './builder.js';
import { FILE_PURPOSES, FilePurpose, FineTuneMethodType, FineTuningJobEventLevel, FineTuningJobEventType, FineTuningJobStatus, JOB_STATUSES } from './enums.js';
import { fromUnix, fromUnixOptional } from './scalars.js';

// ---- shared connection arguments ------------------------------------------------------------------------

export const FORWARD_ONLY =
  'Forward pagination only: pass `first` and then `after: pageInfo.endCursor`. `last` and `before` are not offered because the upstream API only pages forward.';

export const firstSchema = z.number().int().min(0, `must be between 0 and ${MAX_PAGE_SIZE}`).max(MAX_PAGE_SIZE, `must be between 0 and ${MAX_PAGE_SIZE}`);

// ---- File -----------------------------------------------------------------------------------------------

export const FileRef = builder.loadableNodeRef('File', {
  id: { resolve: (f: RawFile) => f.id },
  load: (ids: string[], ctx) => loadFiles(ctx, ids),
  toKey: (f) => f.id,
  cacheResolved: true,
});

FileRef.implement({
  description: "An uploaded file (training data, validation data, or a job's results CSV).",
  fields: (t) => ({
    bytes: t.exposeInt('bytes', { description: 'Size in bytes.' }),
    createdAt: t.field({ type: 'DateTime', resolve: (f) => fromUnix(f.created_at)! }),
    expiresAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When the file will expire; null if it never does.',
      resolve: (f) => fromUnix(f.expires_at),
    }),
    filename: t.exposeString('filename'),
    purpose: t.field({
      type: FilePurpose,
      nullable: true,
      description: 'Null for a purpose this server does not know yet; see `rawPurpose`.',
      resolve: (f) => (FILE_PURPOSES.has(f.purpose) ? (f.purpose as never) : null),
    }),
    rawPurpose: t.exposeString('purpose', { description: 'The purpose exactly as the upstream reports it.' }),
    status: t.string({
      nullable: true,
      deprecationReason: 'Deprecated upstream; see FineTuningJob.error for validation failures.',
      resolve: (f) => f.status ?? null,
    }),
    statusDetails: t.string({
      nullable: true,
      deprecationReason: 'Deprecated upstream; see FineTuningJob.error for validation failures.',
      resolve: (f) => f.status_details ?? null,
    }),
  }),
});

// ---- FineTuningJob parts --------------------------------------------------------------------------------

const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const intOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);

const Hyperparameters = builder.objectRef<RawHyperparameters>('FineTuningHyperparameters').implement({
  description: 'Hyperparameters of a job. A null value means `auto` that the upstream has not resolved yet (it does once training is planned).',
  fields: (t) => ({
    nEpochs: t.int({ nullable: true, description: 'Epochs (1–50).', resolve: (h) => intOrNull(h.n_epochs) }),
    batchSize: t.int({ nullable: true, description: 'Examples per batch (1–256).', resolve: (h) => intOrNull(h.batch_size) }),
    learningRateMultiplier: t.float({
      nullable: true,
      description: 'Learning-rate scaling factor (> 0).',
      resolve: (h) => numOrNull(h.learning_rate_multiplier),
    }),
    beta: t.float({
      nullable: true,
      description: 'DPO only: weight of the penalty between the policy and the reference model (0–2].',
      resolve: (h) => numOrNull(h.beta),
    }),
  }),
});

const MethodConfig = builder.objectRef<{ hyperparameters?: RawHyperparameters }>('FineTuneMethodConfig').implement({
  description: 'Settings of one fine-tuning method.',
  fields: (t) => ({
    hyperparameters: t.field({ type: Hyperparameters, resolve: (m) => m.hyperparameters ?? {} }),
  }),
});

const METHOD_TYPES = new Set(['supervised', 'dpo', 'reinforcement']);
const Method = builder.objectRef<RawMethod>('FineTuneMethod').implement({
  description: 'The method used for fine-tuning and its settings.',
  fields: (t) => ({
    type: t.field({
      type: FineTuneMethodType,
      nullable: true,
      description: 'Null for a method this server does not know yet; see `rawType`.',
      resolve: (m) => (METHOD_TYPES.has(m.type) ? (m.type as never) : null),
    }),
    rawType: t.exposeString('type', { description: 'The method type exactly as the upstream reports it.' }),
    supervised: t.field({ type: MethodConfig, nullable: true, resolve: (m) => m.supervised ?? null }),
    dpo: t.field({ type: MethodConfig, nullable: true, resolve: (m) => m.dpo ?? null }),
    reinforcement: t.field({
      type: 'JSON',
      nullable: true,
      description: 'Reinforcement settings (grader and hyperparameters) as the upstream reports them.',
      resolve: (m) => m.reinforcement ?? null,
    }),
  }),
});

type RawError = NonNullable<RawJob['error']>;
const JobError = builder.objectRef<RawError>('FineTuningJobError').implement({
  description: 'Why a job failed.',
  fields: (t) => ({
    code: t.string({ description: 'A machine-readable code.', resolve: (e) => e.code ?? 'unknown' }),
    message: t.string({ description: 'For a person.', resolve: (e) => e.message ?? '' }),
    param: t.string({
      nullable: true,
      description: 'The parameter that was invalid (usually `training_file` or `validation_file`), if any.',
      resolve: (e) => e.param ?? null,
    }),
  }),
});

const Wandb = builder.objectRef<NonNullable<RawIntegration['wandb']>>('WandbIntegration').implement({
  description: 'Weights and Biases settings of a job.',
  fields: (t) => ({
    project: t.exposeString('project'),
    name: t.string({ nullable: true, resolve: (w) => w.name ?? null }),
    entity: t.string({ nullable: true, resolve: (w) => w.entity ?? null }),
    tags: t.stringList({ resolve: (w) => w.tags ?? [] }),
  }),
});

const Integration = builder.objectRef<RawIntegration>('FineTuningIntegration').implement({
  description: 'An integration enabled for a job (today only `wandb`).',
  fields: (t) => ({
    type: t.exposeString('type'),
    wandb: t.field({ type: Wandb, nullable: true, resolve: (i) => i.wandb ?? null }),
  }),
});

export const TrainingMetrics = builder.objectRef<TrainingMetric>('TrainingMetrics').implement({
  description: 'The training and validation numbers of one step.',
  fields: (t) => ({
    step: t.exposeInt('step'),
    trainLoss: t.exposeFloat('trainLoss', { nullable: true }),
    trainMeanTokenAccuracy: t.exposeFloat('trainMeanTokenAccuracy', { nullable: true }),
    validLoss: t.exposeFloat('validLoss', { nullable: true, description: 'Only with a validation file.' }),
    validMeanTokenAccuracy: t.exposeFloat('validMeanTokenAccuracy', { nullable: true }),
    fullValidLoss: t.exposeFloat('fullValidLoss', { nullable: true }),
    fullValidMeanTokenAccuracy: t.exposeFloat('fullValidMeanTokenAccuracy', { nullable: true }),
  }),
});

// ---- events and checkpoints -----------------------------------------------------------------------------

const EVENT_TYPES = new Set(['message', 'metrics']);
const LEVELS = new Set(['info', 'warn', 'error']);

export const EventRef = builder.objectRef<RawEvent>('FineTuningJobEvent');
builder.node(EventRef, {
  description:
    'Something that happened to a job. `node(id)` finds an event once it has been listed through its job (the upstream cannot fetch one event by id).',
  id: { resolve: (e) => e.id },
  // An Error value (not a rejection) fails only its own item in nodes(ids:), not the whole list.
  loadOne: (id, ctx) => findEvent(ctx, id).catch((e: Error) => e as never),
  isTypeOf: (v) => typeof v === 'object' && v !== null && 'message' in v && 'level' in v,
  fields: (t) => ({
    createdAt: t.field({ type: 'DateTime', resolve: (e) => fromUnix(e.created_at)! }),
    level: t.field({
      type: FineTuningJobEventLevel,
      resolve: (e) => (LEVELS.has(e.level) ? (e.level as never) : ('info' as never)),
    }),
    message: t.exposeString('message'),
    type: t.field({
      type: FineTuningJobEventType,
      nullable: true,
      resolve: (e) => (e.type && EVENT_TYPES.has(e.type) ? (e.type as never) : null),
    }),
    data: t.field({
      type: 'JSON',
      nullable: true,
      description: 'Event data; for METRICS events {step, train_loss, train_mean_token_accuracy, total_steps, …}.',
      resolve: (e) => e.data ?? null,
    }),
  }),
});

export const CheckpointRef = builder.objectRef<RawCheckpoint>('FineTuningJobCheckpoint');

const CheckpointMetrics = builder.objectRef<RawCheckpoint['metrics']>('FineTuningJobCheckpointMetrics').implement({
  description: "Metrics at the checkpoint's step.",
  fields: (t) => ({
    step: t.float({ nullable: true, resolve: (m) => numOrNull(m.step) }),
    trainLoss: t.float({ nullable: true, resolve: (m) => numOrNull(m.train_loss) }),
    trainMeanTokenAccuracy: t.float({ nullable: true, resolve: (m) => numOrNull(m.train_mean_token_accuracy) }),
    validLoss: t.float({ nullable: true, resolve: (m) => numOrNull(m.valid_loss) }),
    validMeanTokenAccuracy: t.float({ nullable: true, resolve: (m) => numOrNull(m.valid_mean_token_accuracy) }),
    fullValidLoss: t.float({ nullable: true, resolve: (m) => numOrNull(m.full_valid_loss) }),
    fullValidMeanTokenAccuracy: t.float({ nullable: true, resolve: (m) => numOrNull(m.full_valid_mean_token_accuracy) }),
  }),
});

// ---- FineTuningJob --------------------------------------------------------------------------------------

export const JobRef = builder.loadableNodeRef('FineTuningJob', {
  id: { resolve: (j: RawJob) => j.id },
  load: (ids: string[], ctx) => loadJobs(ctx, ids),
  toKey: (j) => j.id,
  cacheResolved: true,
});

export const EventConnection = builder.connectionObject(
  { type: EventRef, name: 'FineTuningJobEventConnection', description: `Events of a job, newest first. ${FORWARD_ONLY}` },
  { name: 'FineTuningJobEventEdge' },
);
export const CheckpointConnection = builder.connectionObject(
  {
    type: CheckpointRef,
    name: 'FineTuningJobCheckpointConnection',
    description: `Checkpoints of a job, newest first. ${FORWARD_ONLY}`,
  },
  { name: 'FineTuningJobCheckpointEdge' },
);

const KNOWN_STATUSES = new Set<string>(JOB_STATUSES);

/** A related file that no longer exists is null rather than an error. */
async function optionalFile(load: () => Promise<RawFile>): Promise<RawFile | null> {
  try {
    return await load();
  } catch (err) {
    if (err instanceof ApiError && err.code === 'NOT_FOUND') return null;
    throw err;
  }
}

JobRef.implement({
  description: "A fine-tuning job: every field of OpenAI's job object in camelCase, plus its events, checkpoints, files and training curve.",
  fields: (t) => ({
    createdAt: t.field({ type: 'DateTime', resolve: (j) => fromUnix(j.created_at)! }),
    finishedAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'Null while the job is not finished.',
      resolve: (j) => fromUnixOptional(j.finished_at),
    }),
    estimatedFinish: t.field({
      type: 'DateTime',
      nullable: true,
      description: "The upstream's estimate of when the job will finish; null when it is not running.",
      resolve: (j) => fromUnixOptional(j.estimated_finish),
    }),
    status: t.field({
      type: FineTuningJobStatus,
      description: 'UNKNOWN (never null) for a status the upstream adds later; `rawStatus` then has its value.',
      resolve: (j) => (KNOWN_STATUSES.has(j.status) ? (j.status as never) : ('unknown' as never)),
    }),
    rawStatus: t.exposeString('status', { description: 'The status exactly as the upstream reports it.' }),
    model: t.exposeString('model', { description: 'The base model being fine-tuned.' }),
    fineTunedModel: t.string({
      nullable: true,
      description: "The fine-tuned model's name; null until the job succeeds.",
      resolve: (j) => j.fine_tuned_model ?? null,
    }),
    organizationId: t.exposeString('organization_id'),
    userProvidedSuffix: t.string({ nullable: true, resolve: (j) => j.user_provided_suffix ?? null }),
    trainingFileId: t.exposeString('training_file', { description: "The training file's id, even if it was deleted." }),
    trainingFile: t.field({
      type: FileRef,
      nullable: true,
      description: 'The training file (loaded in batch with every other file of the request); null if it was deleted.',
      resolve: (j, _a, ctx) => optionalFile(() => FileRef.getDataloader(ctx).load(j.training_file)),
    }),
    validationFileId: t.string({ nullable: true, resolve: (j) => j.validation_file ?? null }),
    validationFile: t.field({
      type: FileRef,
      nullable: true,
      description: 'The validation file, if any; null if there is none or it was deleted.',
      resolve: (j, _a, ctx) => (j.validation_file ? optionalFile(() => FileRef.getDataloader(ctx).load(j.validation_file!)) : null),
    }),
    resultFileIds: t.stringList({ resolve: (j) => j.result_files ?? [] }),
    resultFiles: t.field({
      type: [FileRef],
      description: 'The results files (a CSV of the training metrics), once the job has succeeded. Deleted files are left out.',
      resolve: async (j, _a, ctx) => {
        const loader = FileRef.getDataloader(ctx);
        const files = await Promise.all((j.result_files ?? []).map((id) => optionalFile(() => loader.load(id))));
        return files.filter((f): f is RawFile => f !== null);
      },
    }),
    hyperparameters: t.field({
      type: Hyperparameters,
      description: 'Hyperparameters (for supervised jobs; see `method` for every method).',
      resolve: (j) => j.hyperparameters ?? j.method?.supervised?.hyperparameters ?? j.method?.dpo?.hyperparameters ?? {},
    }),
    method: t.field({ type: Method, nullable: true, resolve: (j) => j.method ?? null }),
    error: t.field({
      type: JobError,
      nullable: true,
      description: 'Why the job failed; null unless it failed.',
      resolve: (j) => (j.error && (j.error.code || j.error.message) ? j.error : null),
    }),
    metadata: t.field({
      type: 'JSON',
      nullable: true,
      description: 'Up to 16 string key-value pairs attached at creation.',
      resolve: (j) => j.metadata ?? null,
    }),
    integrations: t.field({ type: [Integration], resolve: (j) => j.integrations ?? [] }),
    seed: t.exposeInt('seed'),
    trainedTokens: t.int({
      nullable: true,
      description: 'Billable tokens processed; null until the job finishes.',
      resolve: (j) => j.trained_tokens ?? null,
    }),
    events: t.field({
      type: EventConnection,
      description: `The job's events, newest first (the upstream's order). ${FORWARD_ONLY}`,
      args: {
        first: t.arg.int({
          description: `Page size, 0–${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE}).`,
          validate: firstSchema,
        }),
        after: t.arg.string({ description: 'The `endCursor` of the previous page.' }),
      },
      resolve: (j, args, ctx) => eventsConnection(ctx, j, args),
    }),
    checkpoints: t.field({
      type: CheckpointConnection,
      description: `The job's checkpoints (one per epoch of the last epochs), newest first. ${FORWARD_ONLY}`,
      args: {
        first: t.arg.int({
          description: `Page size, 0–${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE}).`,
          validate: firstSchema,
        }),
        after: t.arg.string({ description: 'The `endCursor` of the previous page.' }),
      },
      resolve: (j, args, ctx) => checkpointsConnection(ctx, j, args),
    }),
    metrics: t.field({
      type: [TrainingMetrics],
      description:
        'The training curve, one entry per step, oldest first. From the results CSV for a succeeded job (one upstream call), otherwise from the METRICS events (every events page); cached once the job is finished.',
      resolve: (j, _a, ctx) => jobMetrics(ctx, j),
    }),
  }),
});

builder.node(CheckpointRef, {
  description: 'A model checkpoint of a job. `node(id)` finds a checkpoint once it has been listed through its job (the upstream cannot fetch one by id).',
  id: { resolve: (c) => c.id },
  loadOne: (id, ctx) => findCheckpoint(ctx, id).catch((e: Error) => e as never),
  isTypeOf: (v) => typeof v === 'object' && v !== null && 'fine_tuned_model_checkpoint' in v,
  fields: (t) => ({
    createdAt: t.field({ type: 'DateTime', resolve: (c) => fromUnix(c.created_at)! }),
    fineTunedModelCheckpoint: t.exposeString('fine_tuned_model_checkpoint', {
      description: "The checkpoint model's name (usable like a fine-tuned model).",
    }),
    stepNumber: t.exposeInt('step_number'),
    metrics: t.field({ type: CheckpointMetrics, resolve: (c) => c.metrics ?? {} }),
    fineTuningJobId: t.exposeString('fine_tuning_job_id'),
    job: t.field({
      type: JobRef,
      description: 'The job this checkpoint belongs to.',
      resolve: (c) => c.fine_tuning_job_id,
    }),
  }),
});
