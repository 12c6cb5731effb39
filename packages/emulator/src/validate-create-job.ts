/**
 * Validation of the POST /v1/fine_tuning/jobs body, as the spec's CreateFineTuningJobRequest says.
 * Errors use OpenAI's wording and codes ("Invalid 'suffix': string too long. …", `string_above_max_length`)
 * and name the offending field in `param` with its dotted path.
 * Checks that need the database (files exist, belong to the caller, have purpose fine-tune) are in the route.
 */
import { ApiError, badRequest } from './errors.js';
import type { Integration } from './store.js';
import type { FineTuneMethodType, RequestedHyperparameters } from './training/types.js';

export interface CreateJobInput {
  model: string;
  training_file: string;
  validation_file: string | null;
  suffix: string | null;
  seed: number | null;
  method: FineTuneMethodType;
  requested: RequestedHyperparameters;
  metadata: Record<string, string> | null;
  integrations: Integration[] | null;
}

const KNOWN_FIELDS = new Set(['model', 'training_file', 'validation_file', 'hyperparameters', 'suffix', 'seed', 'method', 'metadata', 'integrations']);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a decimal';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'boolean') return 'a boolean';
  return 'an object';
}

const typeError = (param: string, expected: string, got: unknown) =>
  badRequest(`Invalid type for '${param}': expected ${expected}, but got ${describe(got)} instead.`, param, 'invalid_type');

const missing = (param: string) => badRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');

function requireString(body: Record<string, unknown>, key: string, param = key): string {
  const v = body[key];
  if (v === undefined || v === null) throw missing(param);
  if (typeof v !== 'string') throw typeError(param, 'a string', v);
  if (v.length === 0) {
    throw badRequest(
      `Invalid '${param}': string too short. Expected a string with minimum length 1, but got an empty string instead.`,
      param,
      'string_below_min_length',
    );
  }
  return v;
}

function optionalString(body: Record<string, unknown>, key: string, param: string, maxLength: number): string | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw typeError(param, 'a string', v);
  if (v.length < 1) {
    throw badRequest(
      `Invalid '${param}': string too short. Expected a string with minimum length 1, but got an empty string instead.`,
      param,
      'string_below_min_length',
    );
  }
  if (v.length > maxLength) {
    throw badRequest(
      `Invalid '${param}': string too long. Expected a string with maximum length ${maxLength}, but got a string with length ${v.length} instead.`,
      param,
      'string_above_max_length',
    );
  }
  return v;
}

function integerInRange(param: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw typeError(param, 'an integer', v);
  if (v < min) {
    throw badRequest(`Invalid '${param}': integer below minimum value. Expected a value >= ${min}, but got ${v} instead.`, param, 'integer_below_min_value');
  }
  if (v > max) {
    throw badRequest(`Invalid '${param}': integer above maximum value. Expected a value <= ${max}, but got ${v} instead.`, param, 'integer_above_max_value');
  }
  return v;
}

/** "auto" or a value checked by `check`. */
function autoOr(param: string, v: unknown, expected: string, check: (v: unknown) => number): number | 'auto' {
  if (v === 'auto') return 'auto';
  if (typeof v === 'string') {
    throw badRequest(`Invalid value for '${param}': '${v}'. Expected ${expected} or 'auto'.`, param, 'invalid_value');
  }
  if (typeof v !== 'number') throw typeError(param, `${expected} or 'auto'`, v);
  return check(v);
}

function positiveDecimal(param: string, v: number, max?: number): number {
  if (!Number.isFinite(v)) throw typeError(param, 'a number', v);
  if (v <= 0) {
    throw badRequest(`Invalid '${param}': decimal below minimum value. Expected a value > 0, but got ${v} instead.`, param, 'decimal_below_min_value');
  }
  if (max !== undefined && v > max) {
    throw badRequest(`Invalid '${param}': decimal above maximum value. Expected a value <= ${max}, but got ${v} instead.`, param, 'decimal_above_max_value');
  }
  return v;
}

function parseHyperparameters(v: unknown, prefix: string, allowBeta: boolean): RequestedHyperparameters {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw typeError(prefix, 'an object', v);
  const out: RequestedHyperparameters = {};
  for (const [key, value] of Object.entries(v)) {
    const param = `${prefix}.${key}`;
    if (value === undefined) continue;
    switch (key) {
      case 'n_epochs':
        out.n_epochs = autoOr(param, value, 'an integer', (n) => integerInRange(param, n, 1, 50));
        break;
      case 'batch_size':
        out.batch_size = autoOr(param, value, 'an integer', (n) => integerInRange(param, n, 1, 256));
        break;
      case 'learning_rate_multiplier':
        out.learning_rate_multiplier = autoOr(param, value, 'a number', (n) => positiveDecimal(param, n as number));
        break;
      case 'beta':
        if (!allowBeta) throw unknownParameter(param);
        out.beta = autoOr(param, value, 'a number', (n) => positiveDecimal(param, n as number, 2));
        break;
      default:
        throw unknownParameter(param);
    }
  }
  return out;
}

const unknownParameter = (param: string) => badRequest(`Unrecognized request argument supplied: ${param}`, param, 'unknown_parameter');

function parseMethod(v: unknown): { type: FineTuneMethodType; hyperparameters: RequestedHyperparameters } | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw typeError('method', 'an object', v);
  const type = v.type;
  if (type === undefined || type === null) throw missing('method.type');
  if (typeof type !== 'string') throw typeError('method.type', 'a string', type);
  if (type !== 'supervised' && type !== 'dpo') {
    throw badRequest(
      type === 'reinforcement'
        ? "Invalid value: 'reinforcement'. This service supports the methods 'supervised' and 'dpo'."
        : `Invalid value: '${type}'. Supported values are: 'supervised' and 'dpo'.`,
      'method.type',
      'invalid_value',
    );
  }
  for (const key of Object.keys(v)) {
    if (key === 'type' || v[key] === undefined || v[key] === null) continue;
    if (key !== type) {
      throw badRequest(
        key === 'supervised' || key === 'dpo' || key === 'reinforcement'
          ? `Invalid 'method.${key}': only 'method.${type}' may be given when 'method.type' is '${type}'.`
          : `Unrecognized request argument supplied: method.${key}`,
        `method.${key}`,
        key === 'supervised' || key === 'dpo' || key === 'reinforcement' ? 'invalid_value' : 'unknown_parameter',
      );
    }
  }
  const config = v[type];
  let hyperparameters: RequestedHyperparameters = {};
  if (config !== undefined && config !== null) {
    if (!isObject(config)) throw typeError(`method.${type}`, 'an object', config);
    for (const key of Object.keys(config)) {
      if (key !== 'hyperparameters') throw unknownParameter(`method.${type}.${key}`);
    }
    hyperparameters = parseHyperparameters(config.hyperparameters, `method.${type}.hyperparameters`, type === 'dpo');
  }
  return { type, hyperparameters };
}

function parseMetadata(v: unknown): Record<string, string> | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw typeError('metadata', 'an object', v);
  const entries = Object.entries(v);
  if (entries.length > 16) {
    throw badRequest(
      `Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with ${entries.length} properties instead.`,
      'metadata',
      'object_above_max_properties',
    );
  }
  const out: Record<string, string> = {};
  for (const [k, value] of entries) {
    if (k.length > 64) {
      throw badRequest(
        `Invalid 'metadata': string too long. Expected a key with maximum length 64, but got a key with length ${k.length} instead.`,
        'metadata',
        'string_above_max_length',
      );
    }
    const param = `metadata.${k}`;
    if (typeof value !== 'string') throw typeError(param, 'a string', value);
    if (value.length > 512) {
      throw badRequest(
        `Invalid '${param}': string too long. Expected a string with maximum length 512, but got a string with length ${value.length} instead.`,
        param,
        'string_above_max_length',
      );
    }
    out[k] = value;
  }
  return out;
}

function parseIntegrations(v: unknown): Integration[] | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) throw typeError('integrations', 'an array', v);
  if (v.length > 5) {
    throw badRequest(
      `Invalid 'integrations': array too long. Expected an array with maximum length 5, but got an array with length ${v.length} instead.`,
      'integrations',
      'array_above_max_length',
    );
  }
  return v.map((item, i) => {
    const param = `integrations[${i}]`;
    if (!isObject(item)) throw typeError(param, 'an object', item);
    if (item.type !== 'wandb') {
      throw badRequest(`Invalid value: '${String(item.type)}'. Supported values are: 'wandb'.`, `${param}.type`, 'invalid_value');
    }
    if (!isObject(item.wandb)) throw typeError(`${param}.wandb`, 'an object', item.wandb);
    const w = item.wandb;
    if (typeof w.project !== 'string' || w.project.length === 0) {
      throw w.project === undefined || w.project === null ? missing(`${param}.wandb.project`) : typeError(`${param}.wandb.project`, 'a string', w.project);
    }
    for (const key of ['name', 'entity'] as const) {
      if (w[key] !== undefined && w[key] !== null && typeof w[key] !== 'string') {
        throw typeError(`${param}.wandb.${key}`, 'a string', w[key]);
      }
    }
    if (w.tags !== undefined && (!Array.isArray(w.tags) || w.tags.some((t) => typeof t !== 'string'))) {
      throw typeError(`${param}.wandb.tags`, 'an array of strings', w.tags);
    }
    return {
      type: 'wandb' as const,
      wandb: {
        project: w.project,
        name: (w.name as string | null | undefined) ?? null,
        entity: (w.entity as string | null | undefined) ?? null,
        tags: (w.tags as string[] | undefined) ?? [],
      },
    };
  });
}

/** Merge the deprecated top-level `hyperparameters` with `method.*.hyperparameters`; a contradiction is a 400. */
function mergeHyperparameters(
  topLevel: RequestedHyperparameters,
  fromMethod: RequestedHyperparameters,
  methodType: FineTuneMethodType,
): RequestedHyperparameters {
  const merged: RequestedHyperparameters = { ...topLevel };
  for (const [k, v] of Object.entries(fromMethod) as [keyof RequestedHyperparameters, number | 'auto'][]) {
    const previous = merged[k];
    if (previous !== undefined && previous !== v) {
      throw badRequest(
        `Conflicting values for '${k}': 'hyperparameters.${k}' is ${JSON.stringify(previous)} but ` +
          `'method.${methodType}.hyperparameters.${k}' is ${JSON.stringify(v)}. Pass hyperparameters under 'method' only.`,
        'hyperparameters',
        'invalid_value',
      );
    }
    merged[k] = v;
  }
  return merged;
}

export interface ModelSupport {
  isSupportedModel(model: string): boolean;
  supportsMethod(model: string, method: FineTuneMethodType): boolean;
}

export function validateCreateJob(body: unknown, models: ModelSupport): CreateJobInput {
  if (!isObject(body)) {
    throw new ApiError(400, 'The request body must be a JSON object.', 'invalid_request_error', null, 'invalid_json');
  }
  for (const key of Object.keys(body)) if (!KNOWN_FIELDS.has(key)) throw unknownParameter(key);

  const model = requireString(body, 'model');
  if (!models.isSupportedModel(model)) {
    throw badRequest(`Model ${model} is not available for fine-tuning or does not exist.`, 'model', 'model_not_available');
  }
  const training_file = requireString(body, 'training_file');
  let validation_file: string | null = null;
  if (body.validation_file !== undefined && body.validation_file !== null) {
    validation_file = requireString(body, 'validation_file');
  }
  const suffix = optionalString(body, 'suffix', 'suffix', 64);
  let seed: number | null = null;
  if (body.seed !== undefined && body.seed !== null) seed = integerInRange('seed', body.seed, 0, 2147483647);

  const topLevel = parseHyperparameters(body.hyperparameters, 'hyperparameters', false);
  const method = parseMethod(body.method);
  const methodType = method?.type ?? 'supervised';
  if (!models.supportsMethod(model, methodType)) {
    throw badRequest(
      `Model ${model} does not support the '${methodType}' method. DPO is available for the gpt-4o and gpt-4.1 families.`,
      'method.type',
      'invalid_value',
    );
  }
  const requested = mergeHyperparameters(topLevel, method?.hyperparameters ?? {}, methodType);

  return {
    model,
    training_file,
    validation_file,
    suffix,
    seed,
    method: methodType,
    requested,
    metadata: parseMetadata(body.metadata),
    integrations: parseIntegrations(body.integrations),
  };
}
