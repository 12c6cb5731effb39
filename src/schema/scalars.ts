import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import { builder } from './builder.js';

builder.addScalarType('DateTime', DateTimeResolver, {
  description: 'An ISO-8601 date-time in UTC, e.g. 2024-07-23T20:00:00.000Z (the upstream sends Unix seconds).',
});
builder.addScalarType('JSON', JSONResolver, {});

builder.scalarType('Upload', {
  description:
    'A file sent with the GraphQL multipart request spec (https://github.com/jaydenseric/graphql-multipart-request-spec).',
  serialize: () => {
    throw new Error('Upload is an input-only scalar');
  },
  parseValue: (value) => {
    if (value && typeof value === 'object' && 'arrayBuffer' in value && 'name' in value) return value as File;
    throw new TypeError('Upload must be a file sent as a multipart request part');
  },
});

/** Unix seconds (or null) → Date (or null). */
export const fromUnix = (s: number | null | undefined): Date | null =>
  typeof s === 'number' && Number.isFinite(s) ? new Date(s * 1000) : null;

/** Like fromUnix, but 0 (which OpenAI sends for "no estimate") is null too. */
export const fromUnixOptional = (s: number | null | undefined): Date | null =>
  typeof s === 'number' && Number.isFinite(s) && s > 0 ? new Date(s * 1000) : null;
