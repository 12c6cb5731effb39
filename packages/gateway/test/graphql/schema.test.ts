import { readFileSync } from 'node:fs';
import { buildSchema, parse, validate } from 'graphql/index.js';
import { describe, expect, it } from 'vitest';
import { examplesDocument, EXAMPLES } from '../../src/schema/examples.js';
import { getSchema } from '../../src/schema/index.js';
import { EXAMPLES_FILE, printedSchema, SCHEMA_FILE } from '../../src/schema/print.js';

describe('committed schema', () => {
  it('schema.graphql is the current printed, sorted schema (run `npm run schema:print` when this fails)', () => {
    expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(printedSchema());
  });

  it('docs/examples.graphql is current', () => {
    expect(readFileSync(EXAMPLES_FILE, 'utf8')).toBe(examplesDocument());
  });

  it('schema.graphql is valid SDL and is sorted', () => {
    const sdl = readFileSync(SCHEMA_FILE, 'utf8');
    const schema = buildSchema(sdl);
    const names = Object.keys(schema.getTypeMap()).filter((n) => !n.startsWith('__'));
    const typeDefs = [...sdl.matchAll(/^(?:type|input|enum|interface|union|scalar) (\w+)/gm)].map((m) => m[1]);
    expect(typeDefs).toEqual([...typeDefs].sort((a, b) => a.localeCompare(b)));
    expect(names).toEqual(expect.arrayContaining(['FineTuningJob', 'File', 'Node', 'Error', 'PageInfo']));
  });

  it('has the public contract of the issue', () => {
    const schema = getSchema();
    const q = schema.getQueryType()!.getFields();
    expect(Object.keys(q).sort()).toEqual(['file', 'files', 'fineTuningJob', 'fineTuningJobs', 'node', 'nodes']);
    expect(q.fineTuningJobs!.args.map((a) => a.name).sort()).toEqual(['after', 'first', 'metadata']);
    const m = schema.getMutationType()!.getFields();
    expect(Object.keys(m).sort()).toEqual([
      'cancelFineTuningJob',
      'createFineTuningJob',
      'deleteFile',
      'pauseFineTuningJob',
      'resumeFineTuningJob',
      'uploadFile',
    ]);
    const status = schema.getType('FineTuningJobStatus') as import('graphql/index.js').GraphQLEnumType;
    expect(status.getValues().map((v) => v.name)).toEqual(
      expect.arrayContaining(['VALIDATING_FILES', 'QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'PAUSED']),
    );
  });

  it('every example operation is valid against the schema', () => {
    for (const example of EXAMPLES) {
      const errors = validate(getSchema(), parse(example.query));
      expect(
        errors.map((e) => e.message),
        example.title,
      ).toEqual([]);
    }
  });
});
