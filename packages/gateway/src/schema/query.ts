import { z } from 'zod';
import { DEFAULT_LIMITS } from '../config.js';
import { filesConnection } from '../resolvers/files.js';
import { expectId } from '../resolvers/ids.js';
import { jobsConnection } from '../resolvers/jobs.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../resolvers/connections.js';
import { builder } from './builder.js';
import { FilePurpose } from './enums.js';
import { FileRef, FORWARD_ONLY, firstSchema, JobRef } from './types.js';

export const metadataSchema = z
  .record(z.string().max(64, 'keys are at most 64 characters'), z.string().max(512, 'values are strings of at most 512 characters'))
  .refine((m) => Object.keys(m).length <= 16, 'at most 16 key-value pairs');

/** The bound every list states (src/http/plugins/use-upstream-cost.ts). */
const UPSTREAM_BOUND = `One request makes at most ${DEFAULT_LIMITS.maxUpstreamCalls} upstream calls by default (GRAPHQL_MAX_UPSTREAM_CALLS): each page is one, and so is each listed item's \`metrics\`, file, \`events\` or \`checkpoints\`; a request whose variables and pages add up to more is refused (QUERY_LIMIT_EXCEEDED, \`limit: "upstreamCalls"\`) before anything is sent.`;

export const JobConnection = builder.connectionObject(
  { type: JobRef, name: 'FineTuningJobConnection', description: `Fine-tuning jobs, newest first. ${FORWARD_ONLY}` },
  { name: 'FineTuningJobEdge' },
);
export const FileConnection = builder.connectionObject(
  { type: FileRef, name: 'FileConnection', description: `Files, newest first. ${FORWARD_ONLY}` },
  { name: 'FileEdge' },
);

builder.queryFields((t) => ({
  fineTuningJob: t.field({
    type: JobRef,
    nullable: true,
    description: 'A fine-tuning job by id (ftjob-…). Null, with a NOT_FOUND error, when it does not exist.',
    args: { id: t.arg.id({ required: true, description: 'The job id, e.g. ftjob-abc123.' }) },
    resolve: (_root, { id }) => expectId(id, 'FineTuningJob', 'id'),
  }),
  fineTuningJobs: t.field({
    type: JobConnection,
    description: `The organisation's fine-tuning jobs, newest first (the upstream's order). ${FORWARD_ONLY} ${UPSTREAM_BOUND}`,
    args: {
      first: t.arg.int({ description: `Page size, 0–${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE}).`, validate: firstSchema }),
      after: t.arg.string({ description: 'The `endCursor` of the previous page.' }),
      metadata: t.arg({
        type: 'JSON',
        description: 'Only jobs whose metadata has all these key-value pairs, e.g. {team: "search"}.',
        validate: metadataSchema.nullish(),
      }),
    },
    resolve: (_root, args, ctx) => jobsConnection(ctx, { first: args.first, after: args.after, metadata: args.metadata as Record<string, string> | null }),
  }),
  file: t.field({
    type: FileRef,
    nullable: true,
    description: 'A file by id (file-…). Null, with a NOT_FOUND error, when it does not exist.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }) => expectId(id, 'File', 'id'),
  }),
  files: t.field({
    type: FileConnection,
    description: `The organisation's files, newest first. ${FORWARD_ONLY} ${UPSTREAM_BOUND}`,
    args: {
      first: t.arg.int({ description: `Page size, 0–${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE}).`, validate: firstSchema }),
      after: t.arg.string({ description: 'The `endCursor` of the previous page.' }),
      purpose: t.arg({ type: FilePurpose, description: 'Only files with this purpose.' }),
    },
    resolve: (_root, args, ctx) => filesConnection(ctx, args),
  }),
}));
