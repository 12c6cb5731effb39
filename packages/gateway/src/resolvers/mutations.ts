/** Mutations: GraphQL input → the upstream's request bodies. */
import type { GraphQLContext } from './context.js';
import type { RawFile, RawJob } from '../upstream/types.js';

type Hyper = { nEpochs?: number | null; batchSize?: number | null; learningRateMultiplier?: number | null; beta?: number | null };

export interface CreateJobInput {
  model: string;
  trainingFile: string;
  validationFile?: string | null;
  hyperparameters?: Hyper | null;
  method?: {
    type: string;
    supervised?: { hyperparameters?: Hyper | null } | null;
    dpo?: { hyperparameters?: Hyper | null } | null;
    reinforcement?: unknown;
  } | null;
  suffix?: string | null;
  seed?: number | null;
  metadata?: unknown;
  idempotencyKey?: string | null;
}

/** Drops null/undefined values. */
function compact<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined)) as Partial<T>;
}

function hyper(h: Hyper | null | undefined) {
  if (!h) return undefined;
  return compact({
    n_epochs: h.nEpochs,
    batch_size: h.batchSize,
    learning_rate_multiplier: h.learningRateMultiplier,
    beta: h.beta,
  });
}

export function createJobBody(input: CreateJobInput): Record<string, unknown> {
  const m = input.method;
  const method = m
    ? compact({
        type: m.type,
        supervised: m.supervised ? compact({ hyperparameters: hyper(m.supervised.hyperparameters) }) : undefined,
        dpo: m.dpo ? compact({ hyperparameters: hyper(m.dpo.hyperparameters) }) : undefined,
        reinforcement: m.reinforcement ?? undefined,
      })
    : undefined;
  return compact({
    model: input.model.trim(),
    training_file: input.trainingFile,
    validation_file: input.validationFile,
    hyperparameters: hyper(input.hyperparameters),
    method,
    suffix: input.suffix,
    seed: input.seed,
    metadata: input.metadata ?? undefined,
  });
}

export function createJob(ctx: GraphQLContext, input: CreateJobInput): Promise<RawJob> {
  return ctx.api.createJob(createJobBody(input), input.idempotencyKey);
}

export async function changeJob(ctx: GraphQLContext, action: 'cancel' | 'pause' | 'resume', id: string): Promise<RawJob> {
  const job = await ctx.api.changeJob(action, id);
  // Live subscribers of this job get the new state at once, not at the next poll (src/live).
  ctx.live?.notifyJobChanged(ctx.credential, job);
  return job;
}

export function uploadFile(ctx: GraphQLContext, file: File, purpose: string): Promise<RawFile> {
  return ctx.api.uploadFile(file, purpose);
}

export function deleteFile(ctx: GraphQLContext, id: string) {
  return ctx.api.deleteFile(id);
}
