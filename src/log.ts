/**
 * Structured logs (pino): one JSON object per line.
 *
 * Every line written while a request is handled carries its request id (`reqId`), through an AsyncLocalStorage
 * entered by the HTTP handler (src/app.ts), so resolvers, the upstream client and the live module need not
 * pass it along. Authorization headers, keys and tokens are redacted wherever they appear in a logged object;
 * messages passed in are written by us and never contain a key or an upstream URL. Access lines (one per
 * request) hold method, path (no query string), status, duration and operation name: no variables, no headers.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'authorization',
  'apiKey',
  'credential',
  'token',
  'key',
  '*.authorization',
  '*.Authorization',
  '*.apiKey',
  '*.credential',
  '*.token',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'request.headers.authorization',
  '*.headers.authorization',
  '*.headers["openai-organization"]',
];

/** What every log line of one request carries. */
export interface RequestLogContext {
  reqId: string;
}

export const requestContext = new AsyncLocalStorage<RequestLogContext>();

/** The id of the request being handled, if any. */
export function currentRequestId(): string | undefined {
  return requestContext.getStore()?.reqId;
}

/** A client's x-request-id is kept when it is 1–128 characters of letters, digits and `._:+=/-`; otherwise a new one is made. */
const SANE_REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}$/;

export function requestIdFrom(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && SANE_REQUEST_ID.test(value) ? value : randomUUID();
}

export function createLogger(level = process.env.LOG_LEVEL || 'info', stream?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { service: 'finetune-graphql' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    mixin: () => {
      const ctx = requestContext.getStore();
      return ctx ? { reqId: ctx.reqId } : {};
    },
  };
  return stream ? pino(options, stream) : pino(options);
}
