/**
 * `Idempotency-Key` on POST requests. The first request with a key (per organization and route) runs and
 * its response is stored in SQLite; a repeat with the same key and the same body gets that stored response
 * back (with `Idempotent-Replayed: true`) and creates nothing; the same key with a different body is a 409.
 * Concurrent requests with one key wait for the first to finish. Keys live 24 h (see the scheduler's
 * housekeeping). Responses with a 5xx status are not stored, so a retry runs again.
 */
import { createHash } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { ApiError, badRequest } from './errors.js';
import type { EmulatorEnv } from './http.js';
import type { Store } from './store.js';

const MAX_KEY_LENGTH = 255;

/** Canonical JSON: object keys sorted, so two encodings of one body hash the same. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v as object)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

/** A hash of what the request asks for, independent of multipart boundaries and JSON key order. */
async function requestHash(c: Context<EmulatorEnv>): Promise<string> {
  const h = createHash('sha256');
  const type = c.req.header('content-type') ?? '';
  if (/^multipart\/form-data/i.test(type)) {
    let form: FormData;
    try {
      form = await c.req.formData();
    } catch {
      throw badRequest('The request body could not be parsed as multipart/form-data.', null, 'invalid_body');
    }
    const entries = [...form.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [name, value] of entries) {
      h.update(`${name}\0`);
      if (typeof value === 'string') h.update(`s\0${value}\0`);
      else
        h.update(`f\0${value.name}\0`)
          .update(new Uint8Array(await value.arrayBuffer()))
          .update('\0');
    }
  } else {
    const text = await c.req.text();
    let normalized = text;
    try {
      normalized = JSON.stringify(canonical(JSON.parse(text)));
    } catch {
      // Not JSON: hash the bytes as they are (the route reports the parse error).
    }
    h.update(normalized);
  }
  return h.digest('hex');
}

export function idempotencyMiddleware(store: Store, ttlMs: number): MiddlewareHandler<EmulatorEnv> {
  /** In-process requests holding a key right now; others with that key wait for them. */
  const inflight = new Map<string, Promise<void>>();

  return async (c, next) => {
    const key = c.req.header('idempotency-key');
    if (key === undefined) return next();
    if (key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw badRequest(
        `Invalid 'Idempotency-Key' header: expected 1 to ${MAX_KEY_LENGTH} characters, got ${key.length}.`,
        'Idempotency-Key',
        'invalid_idempotency_key',
      );
    }
    const orgId = c.get('orgId');
    const route = `${c.req.method} ${c.req.path}`;
    const hash = await requestHash(c);
    const slot = `${orgId}\0${key}\0${route}`;

    for (;;) {
      let row = store.getIdempotency(orgId, key, route);
      if (row && row.created_ms < Date.now() - ttlMs) {
        // Expired (the periodic purge has not run yet): the key is free again.
        store.deleteIdempotency(orgId, key, route);
        row = undefined;
      }
      if (row) {
        if (row.request_hash !== hash) {
          throw new ApiError(
            409,
            `Keys for idempotent requests can only be used with the same parameters they were first used with. ` +
              `Try using a key other than '${key}' if you meant to execute a different request.`,
            'invalid_request_error',
            'Idempotency-Key',
            'idempotency_key_reused',
          );
        }
        if (row.state === 'done') {
          return new Response(row.body, {
            status: row.status!,
            headers: { 'content-type': row.content_type ?? 'application/json', 'idempotent-replayed': 'true' },
          });
        }
        const running = inflight.get(slot);
        if (running) {
          await running;
          continue;
        }
        // Pending but nobody here is running it: the process died mid-request. Run it again.
        store.deleteIdempotency(orgId, key, route);
      }
      break;
    }

    // Claim the key (synchronously after the last check, so no other request can slip in between).
    store.insertIdempotency({ org_id: orgId, key, route, request_hash: hash, created_ms: Date.now() });
    let release!: () => void;
    inflight.set(slot, new Promise<void>((r) => (release = r)));
    let stored = false;
    try {
      await next();
      const res = c.res;
      if (res.status < 500) {
        const body = await res.clone().text();
        store.finishIdempotency({
          org_id: orgId,
          key,
          route,
          status: res.status,
          body,
          content_type: res.headers.get('content-type'),
        });
        stored = true;
      }
    } finally {
      if (!stored) store.deleteIdempotency(orgId, key, route);
      inflight.delete(slot);
      release();
    }
  };
}
