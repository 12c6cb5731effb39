/** /v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints. */
import { randomInt } from 'node:crypto';
import type { Context, Hono } from 'hono';
import { ApiError, badRequest, jobNotFound } from '../errors.js';
import { type EmulatorEnv, type RouteDeps, parseLimit, unknownAfter } from '../http.js';
import { newEventId, newJobId, nowSeconds } from '../ids.js';
import { idempotencyMiddleware } from '../idempotency.js';
import { serializeCheckpoint, serializeEvent, serializeJob } from '../serialize.js';
import { type JobRow, type Page, UnknownCursorError } from '../store.js';
import { validateCreateJob } from '../validate-create-job.js';

const MAX_SEED = 2147483647;

export function jobRoutes(app: Hono<EmulatorEnv>, deps: RouteDeps): void {
  const { store, scheduler, opts } = deps;
  const idempotent = idempotencyMiddleware(store, opts.idempotencyTtlMs);
  const view = (job: JobRow) => serializeJob(job, { stepMs: opts.stepMs, nowMs: Date.now() });

  const ownJob = (c: Context<EmulatorEnv>): JobRow => {
    const id = c.req.param('id')!;
    const job = store.getJob(c.get('orgId'), id);
    if (!job) throw jobNotFound(id);
    return job;
  };

  const paged = <T>(what: string, run: () => Page<T>): Page<T> => {
    try {
      return run();
    } catch (err) {
      if (err instanceof UnknownCursorError) throw unknownAfter(err.after, what);
      throw err;
    }
  };

  /** A file given as training_file/validation_file: it must exist, belong to the caller and be for fine-tuning. */
  const checkFile = (orgId: string, id: string, param: 'training_file' | 'validation_file') => {
    const file = store.getFile(orgId, id, nowSeconds());
    if (!file) throw badRequest(`invalid ${param}: ${id}. No such file.`, param, 'file_not_found');
    if (file.purpose !== 'fine-tune') {
      throw badRequest(
        `invalid ${param}: ${id}. The file has purpose '${file.purpose}', but fine-tuning requires purpose 'fine-tune'.`,
        param,
        'invalid_file_purpose',
      );
    }
  };

  app.post('/v1/fine_tuning/jobs', idempotent, async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw new ApiError(
        400,
        'We could not parse the JSON body of your request. The API expects a JSON payload; what was sent was not valid JSON.',
        'invalid_request_error',
        null,
        'invalid_json',
      );
    }
    const input = validateCreateJob(body, deps.models);
    const orgId = c.get('orgId');
    checkFile(orgId, input.training_file, 'training_file');
    if (input.validation_file) checkFile(orgId, input.validation_file, 'validation_file');

    const now = nowSeconds();
    const job: JobRow = {
      id: newJobId(),
      org_id: orgId,
      model: input.model,
      status: 'validating_files',
      training_file: input.training_file,
      validation_file: input.validation_file,
      created_at: now,
      finished_at: null,
      fine_tuned_model: null,
      trained_tokens: null,
      error: null,
      seed: input.seed ?? randomInt(0, MAX_SEED + 1),
      suffix: input.suffix,
      method: input.method,
      requested: input.requested,
      plan: null,
      current_step: 0,
      metadata: input.metadata,
      integrations: input.integrations,
      result_files: [],
      phase_started_ms: Date.now(),
      model_tag: null,
    };
    const validating = input.validation_file
      ? `Validating training file: ${input.training_file} and validation file: ${input.validation_file}`
      : `Validating training file: ${input.training_file}`;
    store.tx(() => {
      store.insertJob(job);
      for (const message of [`Created fine-tuning job: ${job.id}`, validating]) {
        store.insertEvent({ id: newEventId(), job_id: job.id, created_at: now, level: 'info', message, type: 'message', data: {} });
      }
    });
    scheduler.jobCreated(job);
    return c.json(view(job));
  });

  app.get('/v1/fine_tuning/jobs', (c) => {
    const limit = parseLimit(c.req.query('limit'), 20, 100);
    const after = c.req.query('after');
    // metadata[k]=v filters (deepObject); metadata=null (or metadata=) asks for jobs without metadata.
    let metadata: Record<string, string> | null | undefined;
    for (const [k, v] of new URL(c.req.url).searchParams) {
      const m = /^metadata\[(.*)\]$/.exec(k);
      if (m) {
        if (metadata === null) throw badRequest("'metadata=null' cannot be combined with 'metadata[key]' filters.", 'metadata', 'invalid_value');
        metadata = { ...(metadata ?? {}), [m[1]]: v };
      } else if (k === 'metadata') {
        if (v !== 'null' && v !== '') {
          throw badRequest("Invalid 'metadata' filter: use metadata[key]=value, or metadata=null for jobs without metadata.", 'metadata', 'invalid_value');
        }
        if (metadata) throw badRequest("'metadata=null' cannot be combined with 'metadata[key]' filters.", 'metadata', 'invalid_value');
        metadata = null;
      }
    }
    const page = paged('fine-tuning job', () => store.listJobs(c.get('orgId'), { after, limit, metadata }));
    return c.json({ object: 'list', data: page.items.map(view), has_more: page.hasMore });
  });

  app.get('/v1/fine_tuning/jobs/:id', (c) => c.json(view(ownJob(c))));

  app.post('/v1/fine_tuning/jobs/:id/cancel', idempotent, (c) => c.json(view(scheduler.cancel(ownJob(c)))));
  app.post('/v1/fine_tuning/jobs/:id/pause', idempotent, (c) => c.json(view(scheduler.pause(ownJob(c)))));
  app.post('/v1/fine_tuning/jobs/:id/resume', idempotent, (c) => c.json(view(scheduler.resume(ownJob(c)))));

  app.get('/v1/fine_tuning/jobs/:id/events', (c) => {
    const job = ownJob(c);
    const limit = parseLimit(c.req.query('limit'), 20, 100);
    const page = paged('event', () => store.listEvents(job.id, { after: c.req.query('after'), limit }));
    return c.json({ object: 'list', data: page.items.map(serializeEvent), has_more: page.hasMore });
  });

  app.get('/v1/fine_tuning/jobs/:id/checkpoints', (c) => {
    const job = ownJob(c);
    const limit = parseLimit(c.req.query('limit'), 10, 100);
    const page = paged('checkpoint', () => store.listCheckpoints(job.id, { after: c.req.query('after'), limit }));
    const data = page.items.map(serializeCheckpoint);
    return c.json({
      object: 'list',
      data,
      first_id: data[0]?.id ?? null,
      last_id: data[data.length - 1]?.id ?? null,
      has_more: page.hasMore,
    });
  });
}
