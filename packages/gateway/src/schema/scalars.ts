import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import { DEFAULT_LIMITS } from '../config.js';
import { builder } from './builder.js';

builder.addScalarType('DateTime', DateTimeResolver, {
  description: 'An ISO-8601 date-time in UTC, e.g. 2024-07-23T20:00:00.000Z (the upstream sends Unix seconds).',
});
// The input limits are the server's (src/http/plugins/use-json-limits.ts checks them with its configuration).
builder.addScalarType('JSON', JSONResolver, {
  description: `A JSON value (ECMA-404). As an input, nested at most ${DEFAULT_LIMITS.maxJsonDepth} levels deep and at most ${DEFAULT_LIMITS.maxJsonBytes / 1024} KiB serialised by default (GRAPHQL_MAX_JSON_DEPTH, GRAPHQL_MAX_JSON_BYTES); a larger value is a BAD_USER_INPUT error naming the field.`,
});

builder.scalarType('Upload', {
  description: 'A file sent with the GraphQL multipart request spec (https://github.com/jaydenseric/graphql-multipart-request-spec).',
  serialize: () => {
    throw new Error('Upload is an input-only scalar');
  },
  parseValue: (value) => {
    if (value && typeof value === 'object' && 'arrayBuffer' in value && 'name' in value) return value as File;
    throw new TypeError('Upload must be a file sent as a multipart request part');
  },
});

/** Unix seconds (or null) → Date (or null). */
export const fromUnix = (s: number | null | undefined): Date | null => (typeof s === 'number' && Number.isFinite(s) ? new Date(s * 1000) : null);

/** Like fromUnix, but 0 (which OpenAI sends for "no estimate") is null too. */
export const fromUnixOptional = (s: number | null | undefined): Date | null =>
  typeof s === 'number' && Number.isFinite(s) && s > 0 ? new Date(s * 1000) : null;
