/**
 * `npm run schema:print`: writes schema.graphql, the lexicographically sorted printed schema.
 * A test fails when the committed file differs from `printedSchema()`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lexicographicSortSchema, printSchema } from 'graphql/index.js';
import { examplesDocument } from './examples.js';
import { getSchema } from './index.js';

export const SCHEMA_FILE = fileURLToPath(new URL('../../schema.graphql', import.meta.url));
export const EXAMPLES_FILE = fileURLToPath(new URL('../../docs/examples.graphql', import.meta.url));

export function printedSchema(): string {
  return `${printSchema(lexicographicSortSchema(getSchema()))}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(SCHEMA_FILE, printedSchema());
  mkdirSync(dirname(EXAMPLES_FILE), { recursive: true });
  writeFileSync(EXAMPLES_FILE, examplesDocument());
  console.log(`wrote ${SCHEMA_FILE} and ${EXAMPLES_FILE}`);
}
