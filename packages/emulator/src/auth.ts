/**
 * `Authorization: Bearer <key>` on every request. Each distinct key is its own organization, with an id
 * derived from a hash of the key (never the key itself). The key is neither stored nor logged.
 */
import type { MiddlewareHandler } from 'hono';
import { ApiError, MALFORMED_KEY_MESSAGE, MISSING_KEY_MESSAGE } from './errors.js';
import type { EmulatorEnv } from './http.js';
import { organizationIdForKey } from './ids.js';

export const MAX_KEY_LENGTH = 512;
/** Printable ASCII without spaces: what real keys look like (sk-…, sk-proj-…). */
const KEY_SHAPE = /^[\x21-\x7e]+$/;

/** Organization ids are cached per key so that a hot path does not hash on every request. */
const orgCache = new Map<string, string>();

export function orgIdFor(key: string): string {
  let org = orgCache.get(key);
  if (org === undefined) {
    org = organizationIdForKey(key);
    if (orgCache.size > 10_000) orgCache.clear();
    orgCache.set(key, org);
  }
  return org;
}

export function authMiddleware(): MiddlewareHandler<EmulatorEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (header === undefined || header.trim() === '') {
      throw new ApiError(401, MISSING_KEY_MESSAGE, 'invalid_request_error', null, null);
    }
    const match = /^Bearer(?: (.*))?$/i.exec(header);
    if (!match) {
      // A header that is not Bearer auth at all: OpenAI treats it as no key.
      throw new ApiError(401, MISSING_KEY_MESSAGE, 'invalid_request_error', null, null);
    }
    const key = match[1] ?? '';
    if (key.length === 0 || key.length > MAX_KEY_LENGTH || !KEY_SHAPE.test(key)) {
      throw new ApiError(401, MALFORMED_KEY_MESSAGE, 'invalid_request_error', null, 'invalid_api_key');
    }
    c.set('orgId', orgIdFor(key));
    await next();
  };
}
