/**
 * The local fine-tuning service: an OpenAI-compatible /v1 REST API (files and fine-tuning jobs) that
 * really runs jobs, durably, in SQLite.
 *
 *   const emulator = createEmulator({ dbPath: ':memory:', stepMs: 10 });
 *   emulator.start();                       // starts the scheduler, recovers unfinished jobs
 *   serve({ fetch: emulator.fetch });       // every route is under /v1
 *   await emulator.close();
 */
import { Hono } from 'hono';
import { routePath } from 'hono/route';
import { authMiddleware } from './auth.js';
import { ApiError } from './errors.js';
import { type EmulatorEnv, errorResponse } from './http.js';
import { type EmulatorOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { fileRoutes } from './routes/files.js';
import { jobRoutes } from './routes/jobs.js';
import { Scheduler } from './scheduler.js';
import { Store } from './store.js';
import * as training from './training/index.js';

export type { EmulatorOptions, FaultOptions, RequestInfo } from './options.js';

export interface Emulator {
  /** The Hono app; routes are under /v1/... */
  app: Hono<EmulatorEnv>;
  fetch(req: Request): Response | Promise<Response>;
  /** Start the scheduler and pick up every unfinished job from the database. */
  start(): void;
  /** Stop every timer and close the database. */
  close(): Promise<void>;
  /** Resolved options (step time, database path, …). */
  readonly options: ResolvedOptions;
  readonly store: Store;
}

function defaultLog(msg: string, err?: unknown): void {
  const detail = err instanceof Error ? (err.stack ?? err.message) : err === undefined ? '' : String(err);
  process.stderr.write(`[emulator] ${msg}${detail ? `: ${detail}` : ''}\n`);
}

export function createEmulator(options: EmulatorOptions = {}): Emulator {
  const opts = resolveOptions(options);
  const store = new Store({ path: opts.dbPath, synchronous: opts.synchronous });
  const log = defaultLog;
  const scheduler = new Scheduler(store, opts, training, log);
  const app = new Hono<EmulatorEnv>();

  // Report each request (method, path, route pattern, status, org) once its response is ready.
  app.use('*', async (c, next) => {
    await next();
    if (!opts.onRequest) return;
    const pattern = routePath(c, -1);
    const matched = pattern && pattern !== '*' && pattern !== '/*' && pattern !== '/v1/*';
    try {
      opts.onRequest({
        method: c.req.method,
        path: c.req.path,
        route: `${c.req.method} ${matched ? pattern : '<unmatched>'}`,
        status: c.res.status,
        orgId: c.get('orgId'),
      });
    } catch (err) {
      log('onRequest hook threw', err);
    }
  });
  app.use('/v1/*', authMiddleware());

  const deps = {
    store,
    scheduler,
    opts,
    models: { isSupportedModel: training.isSupportedModel, supportsMethod: training.supportsMethod },
  };
  fileRoutes(app, deps);
  jobRoutes(app, deps);

  app.notFound((c) =>
    errorResponse(
      new ApiError(404, `Invalid URL (${c.req.method} ${c.req.path})`, 'invalid_request_error', null, 'unknown_url'),
      c,
      log,
    ),
  );
  app.onError((err, c) => errorResponse(err, c, log));

  let closed = false;
  return {
    app,
    fetch: (req: Request) => app.fetch(req),
    start: () => scheduler.start(),
    close: async () => {
      if (closed) return;
      closed = true;
      scheduler.close();
      store.close();
    },
    options: opts,
    store,
  };
}
