import { z } from 'zod';
import { createJob, changeJob, deleteFile, uploadFile } from '../resolvers/mutations.js';
import { builder } from './builder.js';
import { FilePurpose, FineTuneMethodType, UPLOAD_PURPOSES } from './enums.js';
import { MUTATION_ERRORS } from './errors.js';
import { metadataSchema } from './query.js';
import { FileRef, JobRef } from './types.js';

// ---- input types: ranges from OpenAI's spec, checked before any upstream call ---------------------------

const nEpochs = z.number().int().min(1, 'must be between 1 and 50').max(50, 'must be between 1 and 50').nullish();
const batchSize = z.number().int().min(1, 'must be between 1 and 256').max(256, 'must be between 1 and 256').nullish();
const lrm = z.number().gt(0, 'must be greater than 0').nullish();

export const HyperparametersInput = builder.inputType('FineTuningHyperparametersInput', {
  description: 'Hyperparameters; leave a field out for `auto`.',
  fields: (t) => ({
    nEpochs: t.int({ description: 'Epochs, 1–50.', validate: nEpochs }),
    batchSize: t.int({ description: 'Examples per batch, 1–256.', validate: batchSize }),
    learningRateMultiplier: t.float({ description: 'Learning-rate scaling factor, > 0.', validate: lrm }),
  }),
});

export const DpoHyperparametersInput = builder.inputType('DpoHyperparametersInput', {
  description: 'DPO hyperparameters; leave a field out for `auto`.',
  fields: (t) => ({
    beta: t.float({
      description: 'Penalty weight between the policy and the reference model, in (0, 2].',
      validate: z.number().gt(0, 'must be greater than 0 and at most 2').max(2, 'must be greater than 0 and at most 2').nullish(),
    }),
    nEpochs: t.int({ description: 'Epochs, 1–50.', validate: nEpochs }),
    batchSize: t.int({ description: 'Examples per batch, 1–256.', validate: batchSize }),
    learningRateMultiplier: t.float({ description: 'Learning-rate scaling factor, > 0.', validate: lrm }),
  }),
});

const SupervisedInput = builder.inputType('SupervisedMethodInput', {
  fields: (t) => ({ hyperparameters: t.field({ type: HyperparametersInput }) }),
});
const DpoInput = builder.inputType('DpoMethodInput', {
  fields: (t) => ({ hyperparameters: t.field({ type: DpoHyperparametersInput }) }),
});

export const MethodInput = builder.inputType('FineTuneMethodInput', {
  description: 'The fine-tuning method and its settings (give the settings object matching `type`).',
  fields: (t) => ({
    type: t.field({ type: FineTuneMethodType, required: true }),
    supervised: t.field({ type: SupervisedInput }),
    dpo: t.field({ type: DpoInput }),
    reinforcement: t.field({ type: 'JSON', description: 'Reinforcement settings (grader, hyperparameters), passed through as given.' }),
  }),
});

const fileId = (what: string) =>
  z
    .string()
    .min(1, `must be the id of a ${what} file (file-…)`)
    .refine((id) => /^file-[A-Za-z0-9_-]+$/.test(id), `must be the id of a ${what} file (file-…)`);

export const CreateJobInput = builder.inputType('CreateFineTuningJobInput', {
  description: "A new fine-tuning job. Values outside the ranges of OpenAI's spec are rejected before anything is sent.",
  fields: (t) => ({
    model: t.string({
      required: true,
      description: 'The base model, e.g. gpt-4o-mini-2024-07-18.',
      validate: z.string().trim().min(1, 'must not be empty').max(256, 'is too long'),
    }),
    trainingFile: t.id({ required: true, description: 'An uploaded file with purpose FINE_TUNE.', validate: fileId('training') }),
    validationFile: t.id({ description: 'An uploaded file with purpose FINE_TUNE.', validate: fileId('validation').nullish() }),
    hyperparameters: t.field({
      type: HyperparametersInput,
      description: 'Deprecated upstream in favour of `method`, still accepted.',
    }),
    method: t.field({ type: MethodInput }),
    suffix: t.string({
      description: "Up to 64 characters added to the fine-tuned model's name.",
      validate: z.string().min(1, 'must be 1–64 characters').max(64, 'must be 1–64 characters').nullish(),
    }),
    seed: t.int({
      description: 'For reproducibility, 0–2147483647.',
      validate: z.number().int().min(0, 'must be between 0 and 2147483647').max(2147483647).nullish(),
    }),
    metadata: t.field({
      type: 'JSON',
      description: 'Up to 16 string key-value pairs (keys ≤ 64 characters, values ≤ 512).',
      validate: metadataSchema.nullish(),
    }),
    idempotencyKey: t.string({
      description:
        'Sent as Idempotency-Key: repeating the create with the same key returns the first job instead of creating another, and lets this server retry the create safely.',
      validate: z.string().min(1, 'must be 1–256 characters').max(256, 'must be 1–256 characters').nullish(),
    }),
  }),
});

// ---- result unions --------------------------------------------------------------------------------------

const jobResult = (name: string) => ({
  types: MUTATION_ERRORS,
  dataField: { name: 'job', description: 'The job as the upstream returned it.' },
  result: { name: `${name}Success` },
  union: { name: `${name}Result` },
});

const jobIdArg = z.string().refine((id) => /^ftjob-[A-Za-z0-9_-]+$/.test(id), 'must be a fine-tuning job id (ftjob-…)');

const DeletedFile = builder.objectRef<{ id: string; deleted: boolean }>('DeleteFileSuccess').implement({
  description: 'The file was deleted.',
  fields: (t) => ({
    id: t.exposeID('id', { description: "The deleted file's id." }),
    deleted: t.exposeBoolean('deleted'),
  }),
});

builder.mutationFields((t) => ({
  createFineTuningJob: t.field({
    type: JobRef,
    description: 'Creates a fine-tuning job from an uploaded training file.',
    args: { input: t.arg({ type: CreateJobInput, required: true }) },
    errors: jobResult('CreateFineTuningJob'),
    resolve: (_root, { input }, ctx) => createJob(ctx, input),
  }),
  cancelFineTuningJob: t.field({
    type: JobRef,
    description: 'Cancels a job that has not finished. A finished job gives a ConflictError (or ValidationError).',
    args: { id: t.arg.id({ required: true, validate: jobIdArg }) },
    errors: jobResult('CancelFineTuningJob'),
    resolve: (_root, { id }, ctx) => changeJob(ctx, 'cancel', id),
  }),
  pauseFineTuningJob: t.field({
    type: JobRef,
    description: 'Pauses a running job (status PAUSED).',
    args: { id: t.arg.id({ required: true, validate: jobIdArg }) },
    errors: jobResult('PauseFineTuningJob'),
    resolve: (_root, { id }, ctx) => changeJob(ctx, 'pause', id),
  }),
  resumeFineTuningJob: t.field({
    type: JobRef,
    description: 'Resumes a paused job.',
    args: { id: t.arg.id({ required: true, validate: jobIdArg }) },
    errors: jobResult('ResumeFineTuningJob'),
    resolve: (_root, { id }, ctx) => changeJob(ctx, 'resume', id),
  }),
  uploadFile: t.field({
    type: FileRef,
    description: 'Uploads a file with the GraphQL multipart request spec (`file` is a multipart part). For fine-tuning use purpose FINE_TUNE and a JSONL file.',
    args: {
      file: t.arg({ type: 'Upload', required: true }),
      purpose: t.arg({
        type: FilePurpose,
        required: true,
        validate: z.enum(UPLOAD_PURPOSES, { message: `must be one of ${UPLOAD_PURPOSES.join(', ')}` }),
      }),
    },
    errors: {
      types: MUTATION_ERRORS,
      dataField: { name: 'file', description: 'The uploaded file.' },
      result: { name: 'UploadFileSuccess' },
      union: { name: 'UploadFileResult' },
    },
    resolve: (_root, { file, purpose }, ctx) => uploadFile(ctx, file, purpose),
  }),
  deleteFile: t.field({
    type: DeletedFile,
    description: 'Deletes a file.',
    args: { id: t.arg.id({ required: true, validate: z.string().refine((id) => /^file-[A-Za-z0-9_-]+$/.test(id), 'must be a file id (file-…)') }) },
    errors: { types: MUTATION_ERRORS, directResult: true, union: { name: 'DeleteFileResult' } },
    resolve: (_root, { id }, ctx) => deleteFile(ctx, id),
  }),
}));
