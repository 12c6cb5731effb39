/**
 * Structured logs (pino). Authorization headers, keys and tokens are redacted wherever they appear
 * in a logged object; messages passed in are written by us and never contain a key or an upstream URL.
 */
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

export function createLogger(level = process.env.LOG_LEVEL || 'info', stream?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { service: 'finetune-graphql' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  return stream ? pino(options, stream) : pino(options);
}
