/**
 * The local fine-tuning service: an OpenAI-compatible /v1 REST API (files and fine-tuning jobs) that
 * really runs jobs, durably, in SQLite.
 *
 *   const emulator = createEmulator({ dbPath: ':memory:', stepMs: 10 });
 *   emulator.start();                                 // starts the scheduler, recovers unfinished jobs
 *   createServer(requestListener(emulator)).listen(); // node:http; every route is under /v1
 *   await emulator.fetch(new Request(...));           // or in-process, as a fetch handler
 *   emulator.setFaults({ errorRate: 0.2 }); // fault injection at run time (faults.ts); undefined turns it off
 *   await emulator.close();
 *
 * A database file is held by one service at a time (store.ts): createEmulator throws DatabaseInUseError when
 * another one, in this process or another, has it open; close() (or the process's end) lets it go.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { routePath } from 'hono/route';
import { authMiddleware } from './auth.js';
import { ApiError } from './errors.js';
import { ConnectionDropped, type FaultOptions, faultOf, Faults } from './faults.js';
import { type EmulatorEnv, errorResponse } from './http.js';
import { type EmulatorOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { fileRoutes } from './routes/files.js';
import { jobRoutes } from './routes/jobs.js';
import { Scheduler } from './scheduler.js';
import { Store } from './store.js';
import * as training from './training/index.js';

export { type Environment, faultsFromEnv, optionsFromEnv } from './env.js';
export { describeFaults, validateFaults } from './faults.js';
export { DEFAULT_DB_PATH, type EmulatorOptions, type FaultKind, type FaultOptions, type RequestInfo, type ResolvedOptions } from './options.js';
export { DatabaseInUseError, type Store } from './store.js';

export interface Emulator {
  /** The Hono app; routes are under /v1/... */
  app: Hono<EmulatorEnv>;
  /** The service as a fetch handler. `env` is @hono/node-server's `{ incoming, outgoing }` (lets faults drop the socket). */
  fetch(req: Request, env?: unknown): Response | Promise<Response>;
  /** Start the scheduler and pick up every unfinished job from the database. */
  start(): void;
  /** Stop every timer and close the database (which lets another service open its file). */
  close(): Promise<void>;
  /** Resolved options (step time, database path, …). */
  readonly options: ResolvedOptions;
  readonly store: Store;
  /** Replaces the fault injection for the requests from now on; undefined turns it off (see faults.ts). */
  setFaults(faults: FaultOptions | undefined): void;
  /** The faults in effect. */
  readonly faults: FaultOptions | undefined;
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
  const faults = new Faults(opts.faults);

  // Report each request (method, path, route pattern, status, org, injected fault) once its response is ready
  // (or once a fault dropped it: then `finally`, with status 0 when no handler answered).
  app.use('*', async (c, next) => {
    let dropped = false;
    try {
      await next();
    } catch (err) {
      dropped = err instanceof ConnectionDropped;
      throw err;
    } finally {
      if (opts.onRequest) {
        const pattern = routePath(c, -1);
        const matched = pattern && pattern !== '*' && pattern !== '/*' && pattern !== '/v1/*';
        const fault = faultOf(c.req.raw);
        try {
          opts.onRequest({
            method: c.req.method,
            path: c.req.path,
            route: `${c.req.method} ${matched ? pattern : '<unmatched>'}`,
            status: dropped && fault === 'hang' ? 0 : c.res.status,
            orgId: c.get('orgId'),
            ...(fault ? { fault } : {}),
          });
        } catch (err) {
          log('onRequest hook threw', err);
        }
      }
    }
  });
  // Injected faults come before authentication (as a proxy's or a load balancer's would).
  app.use('/v1/*', faults.middleware());
  app.use('/v1/*', authMiddleware());

  const deps = {
    store,
    scheduler,
    opts,
    models: { isSupportedModel: training.isSupportedModel, supportsMethod: training.supportsMethod },
  };
  fileRoutes(app, deps);
  jobRoutes(app, deps);

  app.notFound((c) => errorResponse(new ApiError(404, `Invalid URL (${c.req.method} ${c.req.path})`, 'invalid_request_error', null, 'unknown_url'), c, log));
  app.onError((err, c) => {
    if (err instanceof ConnectionDropped) throw err; // no response at all
    return errorResponse(err, c, log);
  });

  let closed = false;
  return {
    app,
    fetch: (req: Request, env?: unknown) => {
      if (!opts.honourIdempotencyKeys && req.headers.has('idempotency-key')) {
        // An upstream without idempotency support: the header never reaches the routes.
        const headers = new Headers(req.headers);
        headers.delete('idempotency-key');
        req = new Request(req, { headers });
      }
      return app.fetch(req, env as object | undefined);
    },
    setFaults: (next: FaultOptions | undefined) => faults.set(next),
    get faults() {
      return faults.options;
    },
    start: () => scheduler.start(),
    close: async () => {
      if (closed) return;
      closed = true;
      faults.close();
      scheduler.close();
      store.close();
    },
    options: opts,
    store,
  };
}

/** A node:http request listener. */
export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The service as a node:http request listener (`createServer(requestListener(emulator))`, or mounted under /v1 of
 * another server). It hands the node bindings to `fetch`, so that injected faults can drop the socket.
 */
export function requestListener(emulator: Pick<Emulator, 'fetch'>): RequestListener {
  const listener = getRequestListener((req, env) => emulator.fetch(req, env));
  return (req, res) => void listener(req, res);
}
