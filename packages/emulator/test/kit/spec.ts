/**
 * Response-body validation against OpenAI's published spec (shared/spec/openai-fine-tuning.openapi.yaml beside
 * the checkout, or OPENAI_SPEC_PATH; see specCandidates). Without it, the checks are skipped (SPEC_SKIPPED says
 * so, once per run: test/kit/spec-notice.ts).
 *
 * The spec mixes OpenAPI 3.1 and 3.0 idioms, so its schemas are normalised for JSON Schema 2020-12:
 * `nullable: true` becomes a union with null, boolean `exclusiveMinimum` becomes the numeric form,
 * and `format: unixtime` is registered. Deliberate extensions, where OpenAI's real responses go beyond
 * the published spec:
 *   - FineTuningJob.status also allows `paused` (OpenAI returns it; its enum omits it);
 *   - ListFilesResponse.first_id/last_id may be null, for an empty list (as in the checkpoints list).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';

export type SchemaName =
  | 'FineTuningJob'
  | 'ListPaginatedFineTuningJobsResponse'
  | 'ListFineTuningJobEventsResponse'
  | 'FineTuningJobEvent'
  | 'ListFineTuningJobCheckpointsResponse'
  | 'FineTuningJobCheckpoint'
  | 'OpenAIFile'
  | 'ListFilesResponse'
  | 'DeleteFileResponse'
  | 'Error';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SPEC_FILE = 'shared/spec/openai-fine-tuning.openapi.yaml';

/** The checkout's top directory (packages/emulator/../..). */
function checkoutRoot(): string {
  try {
    return execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd: PACKAGE_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return resolve(PACKAGE_ROOT, '../..');
  }
}

/**
 * Where the spec may be: OPENAI_SPEC_PATH if set (and only there); else `shared/` beside this checkout, then
 * beside the checkout this one was cloned from (a fresh `git clone . /tmp/fresh` has no `shared/` next to it,
 * but its origin may).
 */
function specCandidates(): string[] {
  if (process.env.OPENAI_SPEC_PATH) return [resolve(process.env.OPENAI_SPEC_PATH)];
  const root = checkoutRoot();
  const candidates = [resolve(root, '..', SPEC_FILE)];
  try {
    const origin = execFileSync('git', ['config', '--get', 'remote.origin.url'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const local = origin.startsWith('file://') ? fileURLToPath(origin) : origin;
    if (isAbsolute(local)) candidates.push(resolve(local, '..', SPEC_FILE));
  } catch {
    /* not a clone */
  }
  return candidates;
}

const CANDIDATES = specCandidates();

/** The spec file, when one was found; without it every check against the spec is skipped (expectMatchesSchema). */
export const SPEC_PATH: string | undefined = CANDIDATES.find((c) => existsSync(c));

/** The one line saying that the spec checks are skipped, and how to run them. */
export const SPEC_SKIPPED = `OpenAI's spec not found (looked at ${CANDIDATES.join(', ')}): the checks against it are skipped; to run them, set OPENAI_SPEC_PATH=/path/to/openai-fine-tuning.openapi.yaml or put ${SPEC_FILE} beside the checkout`;

/** OpenAI's error envelope (the published subset has no schema for it). */
const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'param', 'code'],
      properties: {
        message: { type: 'string', minLength: 1 },
        type: { type: 'string' },
        param: { type: ['string', 'null'] },
        code: { type: ['string', 'null'] },
      },
    },
  },
};

/** Rewrite 3.0-isms into JSON Schema 2020-12, recursively. */
function normalise(node: unknown, isPropertyMap = false): unknown {
  if (Array.isArray(node)) return node.map((n) => normalise(n));
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    // Annotations only (never inside a `properties` map, where keys are property names).
    if (!isPropertyMap && (k.startsWith('x-') || k === 'example' || k === 'examples' || k === 'discriminator')) continue;
    out[k] = normalise(v, !isPropertyMap && (k === 'properties' || k === 'patternProperties'));
  }
  if (isPropertyMap) return out;
  if (out.exclusiveMinimum === true) {
    out.exclusiveMinimum = out.minimum;
    delete out.minimum;
  } else if (out.exclusiveMinimum === false) delete out.exclusiveMinimum;
  if (out.exclusiveMaximum === true) {
    out.exclusiveMaximum = out.maximum;
    delete out.maximum;
  } else if (out.exclusiveMaximum === false) delete out.exclusiveMaximum;
  if (out.nullable === true) {
    delete out.nullable;
    if (typeof out.type === 'string') {
      out.type = [out.type, 'null'];
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    } else {
      const copy = { ...out };
      for (const key of Object.keys(out)) delete out[key];
      out.anyOf = [copy, { type: 'null' }];
    }
  } else if (out.nullable === false) delete out.nullable;
  return out;
}

function loadSchemas(path: string): Record<string, any> {
  const doc = parse(readFileSync(path, 'utf8'));
  const schemas = normalise(doc.components.schemas, true) as Record<string, any>;
  // Extension 1: `paused`.
  schemas.FineTuningJob.properties.status.enum.push('paused');
  // Extension 2: empty file lists have no first/last id.
  for (const key of ['first_id', 'last_id']) {
    schemas.ListFilesResponse.properties[key] = { type: ['string', 'null'] };
  }
  schemas.Error = ERROR_SCHEMA;
  return schemas;
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
ajv.addFormat('unixtime', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= 0 });
if (SPEC_PATH) ajv.addSchema({ $id: 'openai-spec', components: { schemas: loadSchemas(SPEC_PATH) } });

const validators = new Map<string, ReturnType<typeof ajv.compile>>();
function validatorFor(name: SchemaName) {
  let v = validators.get(name);
  if (!v) {
    v = ajv.getSchema(`openai-spec#/components/schemas/${name}`);
    if (!v) throw new Error(`schema ${name} not found in ${SPEC_PATH}`);
    validators.set(name, v);
  }
  return v;
}

/**
 * Throws with every schema violation listed when `body` does not match the named schema. Without the spec
 * (SPEC_PATH undefined) it checks nothing: test/api/spec.test.ts then reports the spec checks as skipped.
 */
export function expectMatchesSchema(body: unknown, name: SchemaName): void {
  if (!SPEC_PATH) return;
  const validate = validatorFor(name);
  if (!validate(body)) {
    const errors = (validate.errors ?? [])
      .map((e) => `  ${e.instancePath || '(root)'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`)
      .join('\n');
    throw new Error(`response does not match ${name}:\n${errors}\nbody: ${JSON.stringify(body).slice(0, 2000)}`);
  }
}

/** True when `body` matches (for negative checks of the helper itself; needs the spec). */
export function matchesSchema(body: unknown, name: SchemaName): boolean {
  return validatorFor(name)(body) as boolean;
}
