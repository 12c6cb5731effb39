/**
 * Structured logs (pino): one JSON object per line.
 *
 * Lines written for a request carry its request id (`reqId`): the HTTP handler (src/app.ts) notes the id on the
 * node request (setRequestId), the GraphQL context takes it from there and logs through a child logger made
 * when a first line is written (`ctx.log()`), and hands that logger to the upstream client (UpstreamApi.forRequest).
 * Passed along explicitly rather than through an AsyncLocalStorage: on Node 20 that one enables promise hooks for
 * the whole process, which cost about a tenth of the CPU of a GraphQL request (npm run bench:graphql).
 * Authorization headers, keys and tokens are redacted wherever they appear in a logged object;
 * messages passed in are written by us and never contain a key or an upstream URL. Access lines (one per
 * request) hold method, path (no query string), status, duration and operation name: no variables, no headers.
 */
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

/** Request ids by node request (an HTTP request, or a websocket's upgrade request). */
const requestIds = new WeakMap<object, string>();

export function setRequestId(req: object, reqId: string): void {
  requestIds.set(req, reqId);
}

/** The request id noted on a node request by the HTTP handler, if any. */
export function requestIdOf(req: unknown): string | undefined {
  return typeof req === 'object' && req !== null ? requestIds.get(req) : undefined;
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
  };
  return stream ? pino(options, stream) : pino(options);
}
