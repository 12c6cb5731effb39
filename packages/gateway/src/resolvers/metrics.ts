/**
 * The per-step training curve of a job, oldest step first.
 *
 * Source, chosen for the fewest upstream calls:
 * - a succeeded job with a results file: that CSV (one call, whatever the number of steps), cached forever;
 * - otherwise (running, paused, failed, cancelled, or no readable results file): the `metrics` events, walking
 *   every events page 100 at a time through the request's loader (shared with `events(first: 100)`);
 *   cached forever once the job is finished.
 */
import type { GraphQLContext } from './context.js';
import { allEvents } from './jobs.js';
import { ApiError } from '../upstream/errors.js';
import type { RawJob } from '../upstream/types.js';

export interface TrainingMetric {
  step: number;
  trainLoss: number | null;
  trainMeanTokenAccuracy: number | null;
  validLoss: number | null;
  validMeanTokenAccuracy: number | null;
  fullValidLoss: number | null;
  fullValidMeanTokenAccuracy: number | null;
}

const num = (v: unknown): number | null => {
  if (v === null || v === undefined || v === '') return null;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : null;
};

/** Column names of OpenAI's results CSV (old and new) → our fields. */
const CSV_COLUMNS: Record<string, keyof TrainingMetric> = {
  step: 'step',
  train_loss: 'trainLoss',
  train_accuracy: 'trainMeanTokenAccuracy',
  train_mean_token_accuracy: 'trainMeanTokenAccuracy',
  valid_loss: 'validLoss',
  valid_accuracy: 'validMeanTokenAccuracy',
  valid_mean_token_accuracy: 'validMeanTokenAccuracy',
  full_valid_loss: 'fullValidLoss',
  full_valid_mean_token_accuracy: 'fullValidMeanTokenAccuracy',
};

const empty = (step: number): TrainingMetric => ({
  step,
  trainLoss: null,
  trainMeanTokenAccuracy: null,
  validLoss: null,
  validMeanTokenAccuracy: null,
  fullValidLoss: null,
  fullValidMeanTokenAccuracy: null,
});

/** Parses a results CSV; null when it does not look like one (then the events are used). */
export function parseResultsCsv(csv: string): TrainingMetric[] | null {
  const lines = csv.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0) return null;
  const header = lines[0]!.split(',').map((h) => h.trim());
  if (!header.includes('step')) return null;
  const rows: TrainingMetric[] = [];
  for (const line of lines.slice(1)) {
    const cells = line.split(',');
    const m = empty(0);
    header.forEach((name, i) => {
      const key = CSV_COLUMNS[name];
      if (key) (m as unknown as Record<string, number | null>)[key] = num(cells[i]);
    });
    if (m.step === null) continue;
    rows.push(m);
  }
  return rows.sort((a, b) => a.step - b.step);
}

export function metricFromEventData(data: Record<string, unknown>): TrainingMetric | null {
  const step = num(data.step);
  if (step === null) return null;
  return {
    step,
    trainLoss: num(data.train_loss),
    trainMeanTokenAccuracy: num(data.train_mean_token_accuracy ?? data.train_accuracy),
    validLoss: num(data.valid_loss),
    validMeanTokenAccuracy: num(data.valid_mean_token_accuracy ?? data.valid_accuracy),
    fullValidLoss: num(data.full_valid_loss),
    fullValidMeanTokenAccuracy: num(data.full_valid_mean_token_accuracy),
  };
}

async function fromEvents(ctx: GraphQLContext, job: RawJob): Promise<TrainingMetric[]> {
  const byStep = new Map<number, TrainingMetric>();
  for (const e of await allEvents(ctx, job)) {
    if (e.type !== 'metrics' || !e.data) continue;
    const m = metricFromEventData(e.data);
    // Newest first: keep the newest value of a step (a resumed job may repeat one).
    if (m && !byStep.has(m.step)) byStep.set(m.step, m);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

async function compute(ctx: GraphQLContext, job: RawJob): Promise<TrainingMetric[]> {
  const resultFile = job.status === 'succeeded' ? job.result_files?.[0] : undefined;
  if (resultFile) {
    try {
      const rows = parseResultsCsv(await ctx.api.fileContent(resultFile));
      if (rows && rows.length > 0) return rows;
    } catch (err) {
      // A deleted or unreadable results file: fall back to the events. Anything else is a real failure.
      if (!(err instanceof ApiError) || (err.code !== 'NOT_FOUND' && err.code !== 'BAD_USER_INPUT')) throw err;
    }
  }
  return fromEvents(ctx, job);
}

export function jobMetrics(ctx: GraphQLContext, job: RawJob): Promise<TrainingMetric[]> {
  let p = ctx.loaders.metrics.get(job.id) as Promise<TrainingMetric[]> | undefined;
  if (!p) {
    p = ctx.api.finishedOr(job, 'metrics', () => compute(ctx, job));
    ctx.loaders.metrics.set(job.id, p);
  }
  return p;
}
