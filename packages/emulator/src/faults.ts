/**
 * Fault injection for the local fine-tuning service: off by default, for resilience tests.
 *
 *   createEmulator({ faults: { errorRate: 0.1, rateLimitRate: 0.05, dropRate: 0.05, seed: 7 } })
 *   emulator.setFaults({ latencyMs: 300, routes: ['GET *'] });   // at run time; setFaults(undefined) turns them off
 *   EMULATOR_FAULTS='{"errorRate":0.2,"seed":1}' npm run emulator   // the standalone service (env.ts)
 *
 * Each request under /v1 that matches `routes` draws one number u in [0, 1) from a seeded PRNG (mulberry32) and
 * gets at most one of these faults, in this order of the cumulative rates (their sum must be at most 1):
 *
 *   hangRate       never answered: held until the client gives up (or the faults are turned off, or the
 *                  service closes); nothing is done. For timeout tests.
 *   rateLimitRate  429 with `Retry-After` (whole seconds, rounded up) and `retry-after-ms`, BEFORE the handler:
 *                  nothing is done, so a retry is always safe (as with OpenAI's own 429s).
 *   errorRate      a 5xx from `errorStatuses` (default 500, 502, 503), BEFORE the handler: nothing is done.
 *   dropRate       the connection is destroyed AFTER the handler ran: the work is done (a POST created its job)
 *                  but the client never sees the response, which is the ambiguous case a gateway must handle.
 *                  Over a socket the socket is destroyed; called in-process (no socket), `fetch` rejects.
 *
 * `latencyMs` (+ a uniform `jitterMs`) delays every matching request before the above. With a fixed `seed`, a
 * run that sends the same requests in the same order sees the same faults. Faults never corrupt state: a
 * faulted request either did nothing (hang, 429, 5xx) or completed (drop).
 */
import type { MiddlewareHandler } from 'hono';
import { mulberry32 } from './training/prng.js';

export interface FaultOptions {
  /** Share (0–1) of matching requests answered with a 5xx from `errorStatuses`, before the handler. */
  errorRate?: number;
  /** Statuses of injected errors, drawn uniformly. Default [500, 502, 503]. */
  errorStatuses?: number[];
  /** Share (0–1) of matching requests answered 429 with Retry-After, before the handler. */
  rateLimitRate?: number;
  /** Retry-After of injected 429s, in ms. Sent as `Retry-After` (seconds, rounded up) and `retry-after-ms`. Default 1000. */
  retryAfterMs?: number;
  /** Also send `retry-after-ms` (OpenAI does). Default true; false leaves only the whole-seconds `Retry-After`. */
  retryAfterMsHeader?: boolean;
  /** Share (0–1) of matching requests whose connection is dropped after the handler ran (response lost). */
  dropRate?: number;
  /** Share (0–1) of matching requests never answered (held until the client goes away). */
  hangRate?: number;
  /** Added latency per matching request, in ms. */
  latencyMs?: number;
  /** Extra latency drawn uniformly from [0, jitterMs). */
  jitterMs?: number;
  /**
   * Only requests matching one of these: "METHOD PATH", where METHOD is a verb or `*`, PATH is a path whose
   * `:name` segments match any one segment and a final `*` matches the rest; "GET" alone means every GET.
   * E.g. ["GET *"], ["POST /v1/fine_tuning/jobs"], ["GET /v1/fine_tuning/jobs/:id/events"]. Default: every request.
   */
  routes?: string[];
  /** PRNG seed (an integer). Default: a random one (logged nowhere; pass one for reproducible runs). */
  seed?: number;
}

export type FaultKind = 'latency' | 'hang' | 'rate_limit' | 'error' | 'drop';

/** Thrown (and rethrown by the app's error handler) so that the request ends without a response. */
export class ConnectionDropped extends Error {
  constructor() {
    super('connection dropped by fault injection');
    this.name = 'ConnectionDropped';
  }
}

const RATE_KEYS = ['errorRate', 'rateLimitRate', 'dropRate', 'hangRate'] as const;
const KNOWN_KEYS = new Set<string>([...RATE_KEYS, 'errorStatuses', 'retryAfterMs', 'retryAfterMsHeader', 'latencyMs', 'jitterMs', 'routes', 'seed']);

interface RouteMatcher {
  method: string;
  /** Path segments; undefined matches every path. */
  segments?: string[];
  /** The last segment was `*`. */
  rest: boolean;
}

function parseRoute(spec: string): RouteMatcher {
  const parts = spec.trim().split(/\s+/);
  if (parts.length === 0 || parts.length > 2 || !parts[0]) {
    throw new Error(`faults.routes: "${spec}" is not "METHOD PATH" (e.g. "GET /v1/fine_tuning/jobs/:id" or "GET *")`);
  }
  const method = parts[0].toUpperCase();
  if (method !== '*' && !/^[A-Z]+$/.test(method)) throw new Error(`faults.routes: "${spec}" has no valid method`);
  const path = parts[1];
  if (path === undefined || path === '*') return { method, rest: true };
  if (!path.startsWith('/')) throw new Error(`faults.routes: the path of "${spec}" must start with / (or be *)`);
  const segments = path.split('/').slice(1);
  const rest = segments[segments.length - 1] === '*';
  if (rest) segments.pop();
  return { method, segments, rest };
}

function matches(m: RouteMatcher, method: string, path: string): boolean {
  if (m.method !== '*' && m.method !== method) return false;
  if (!m.segments) return true;
  const segs = path.split('/').slice(1);
  if (m.rest ? segs.length < m.segments.length : segs.length !== m.segments.length) return false;
  for (let i = 0; i < m.segments.length; i++) {
    const want = m.segments[i]!;
    if (want.startsWith(':') ? segs[i] === '' : want !== segs[i]) return false;
  }
  return true;
}

/** Checks and normalises fault options; throws an Error naming the wrong field. */
export function validateFaults(input: unknown): FaultOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new Error('faults must be an object');
  const f = input as Record<string, unknown>;
  for (const k of Object.keys(f)) if (!KNOWN_KEYS.has(k)) throw new Error(`faults.${k} is not a known fault option`);
  const num = (k: string, max = Infinity): number | undefined => {
    const v = f[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) {
      throw new Error(`faults.${k} must be a number between 0 and ${max === Infinity ? 'any' : max}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  let total = 0;
  for (const k of RATE_KEYS) total += num(k, 1) ?? 0;
  if (total > 1 + 1e-9) throw new Error(`faults: errorRate + rateLimitRate + dropRate + hangRate must be at most 1, got ${total}`);
  num('retryAfterMs');
  num('latencyMs');
  num('jitterMs');
  if (f.seed !== undefined && (typeof f.seed !== 'number' || !Number.isInteger(f.seed))) throw new Error('faults.seed must be an integer');
  if (f.retryAfterMsHeader !== undefined && typeof f.retryAfterMsHeader !== 'boolean') throw new Error('faults.retryAfterMsHeader must be a boolean');
  if (f.errorStatuses !== undefined) {
    const s = f.errorStatuses;
    if (!Array.isArray(s) || s.length === 0 || s.some((x) => !Number.isInteger(x) || (x as number) < 500 || (x as number) > 599)) {
      throw new Error('faults.errorStatuses must be a non-empty array of 5xx statuses (e.g. [500, 502, 503])');
    }
  }
  if (f.routes !== undefined) {
    if (!Array.isArray(f.routes) || f.routes.some((r) => typeof r !== 'string')) throw new Error('faults.routes must be an array of "METHOD PATH" strings');
    for (const r of f.routes as string[]) parseRoute(r);
  }
  return { ...(f as FaultOptions) };
}

/** A short description for a start-up line (rates and latency only). */
export function describeFaults(f: FaultOptions | undefined): string {
  if (!f) return 'none';
  const parts: string[] = [];
  for (const k of [...RATE_KEYS, 'latencyMs', 'jitterMs', 'retryAfterMs', 'seed'] as const) if (f[k] !== undefined) parts.push(`${k}=${f[k]}`);
  if (f.routes) parts.push(`routes=${f.routes.join('|')}`);
  return parts.join(' ') || 'none';
}

interface Active {
  options: FaultOptions;
  routes?: RouteMatcher[];
  random: () => number;
}

const faultOfRequest = new WeakMap<Request, FaultKind>();

/** The fault injected into this request, if any (for the request hook). */
export function faultOf(req: Request): FaultKind | undefined {
  return faultOfRequest.get(req);
}

/**
 * The faults of one service instance. `middleware()` goes before authentication on /v1/*; the app's error
 * handler must rethrow ConnectionDropped.
 */
export class Faults {
  private active: Active | undefined;
  /** Requests held by a hang or a latency sleep; released on setFaults (hangs) and on close (all). */
  private readonly hanging = new Set<() => void>();
  private readonly sleeping = new Set<() => void>();
  private closed = false;

  constructor(options?: FaultOptions) {
    this.set(options);
  }

  get options(): FaultOptions | undefined {
    return this.active?.options;
  }

  /** Replaces the faults for the requests from now on (undefined: none). Requests held by a hang are dropped. */
  set(options: FaultOptions | undefined): void {
    if (options === undefined) {
      this.active = undefined;
    } else {
      const o = validateFaults(options);
      const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
      this.active = { options: o, routes: o.routes?.map(parseRoute), random: mulberry32(seed) };
    }
    for (const release of [...this.hanging]) release();
  }

  close(): void {
    this.closed = true;
    this.active = undefined;
    for (const release of [...this.hanging, ...this.sleeping]) release();
  }

  /** Waits until `signal` aborts, `ms` pass (when given), or the faults are released; true if the client went away. */
  private wait(signal: AbortSignal, ms: number | undefined, set: Set<() => void>): Promise<boolean> {
    if (this.closed || signal.aborted) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (gone: boolean) => {
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        set.delete(release);
        resolve(gone);
      };
      const onAbort = () => done(true);
      const release = () => done(true);
      signal.addEventListener('abort', onAbort, { once: true });
      set.add(release);
      if (ms !== undefined) timer = setTimeout(() => done(false), ms);
    });
  }

  middleware(): MiddlewareHandler {
    return async (c, next) => {
      const active = this.active;
      if (!active) return next();
      const method = c.req.method;
      const path = c.req.path;
      if (active.routes && !active.routes.some((m) => matches(m, method, path))) return next();
      const o = active.options;
      // Always three draws per request, so the sequence of faults does not depend on which branch was taken.
      const u = active.random();
      const pick = active.random();
      const jitter = active.random();
      const raw = c.req.raw;
      const signal = raw.signal;

      const delay = (o.latencyMs ?? 0) + (o.jitterMs ?? 0) * jitter;
      if (delay > 0) {
        faultOfRequest.set(raw, 'latency');
        if (await this.wait(signal, delay, this.sleeping)) return this.drop(c);
      }

      let edge = o.hangRate ?? 0;
      if (u < edge) {
        faultOfRequest.set(raw, 'hang');
        await this.wait(signal, undefined, this.hanging);
        return this.drop(c);
      }
      edge += o.rateLimitRate ?? 0;
      if (u < edge) {
        faultOfRequest.set(raw, 'rate_limit');
        const ms = o.retryAfterMs ?? 1000;
        const headers: Record<string, string> = { 'retry-after': String(Math.max(0, Math.ceil(ms / 1000))) };
        if (o.retryAfterMsHeader !== false) headers['retry-after-ms'] = String(Math.round(ms));
        return c.json(
          {
            error: {
              message: 'Rate limit reached (injected fault). Please try again later.',
              type: 'requests',
              param: null,
              code: 'rate_limit_exceeded',
            },
          },
          429,
          headers,
        );
      }
      edge += o.errorRate ?? 0;
      if (u < edge) {
        const statuses = o.errorStatuses ?? [500, 502, 503];
        const status = statuses[Math.min(statuses.length - 1, Math.floor(pick * statuses.length))]!;
        faultOfRequest.set(raw, 'error');
        return c.json(
          {
            error: {
              message: 'The server had an error while processing your request (injected fault).',
              type: 'server_error',
              param: null,
              code: null,
            },
          },
          status as 500,
        );
      }
      edge += o.dropRate ?? 0;
      await next();
      if (u < edge) {
        faultOfRequest.set(raw, 'drop');
        return this.drop(c);
      }
    };
  }

  /** Ends the request without a response: destroys the socket when there is one (Node), then throws. */
  private drop(c: { env: unknown }): never {
    const env = c.env as { incoming?: { socket?: { destroy(): void } } } | undefined;
    env?.incoming?.socket?.destroy();
    throw new ConnectionDropped();
  }
}
