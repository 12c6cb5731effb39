/**
 * Base models the local service fine-tunes, their tokenizer and their per-example token limit.
 *
 * Limits are OpenAI's "training example context length" figures: 65,536 tokens for the gpt-4o and
 * gpt-4.1 families, 16,385 for gpt-3.5-turbo (4,096 for gpt-3.5-turbo-0613), and 16,384 (the models'
 * context length) for the GPT base models babbage-002 and davinci-002.
 * Encodings follow tiktoken's model map: o200k_base for gpt-4o / gpt-4.1 / o-series, cl100k_base for
 * gpt-3.5-turbo, babbage-002 and davinci-002.
 *
 * A fine-tuned model can be fine-tuned again: "ft:gpt-4o-mini-2024-07-18:org:suffix:abcd1234" resolves
 * to its base model here (whether the caller owns it is the routes' business).
 */
import type { FineTuneMethodType } from './types.js';

export type EncodingName = 'o200k_base' | 'cl100k_base';

/** How examples are written for a model: chat `messages` lines, or legacy `prompt`/`completion` lines. */
export type DataFormat = 'chat' | 'completion';

export interface ModelInfo {
  /** The base model the name resolves to (a snapshot or an alias, as accepted). */
  base: string;
  encoding: EncodingName;
  tokenLimit: number;
  format: DataFormat;
  methods: readonly FineTuneMethodType[];
}

const SUPERVISED_AND_DPO: readonly FineTuneMethodType[] = ['supervised', 'dpo'];
const SUPERVISED: readonly FineTuneMethodType[] = ['supervised'];

const chat4 = (base: string, methods = SUPERVISED_AND_DPO): ModelInfo => ({
  base,
  encoding: 'o200k_base',
  tokenLimit: 65_536,
  format: 'chat',
  methods,
});
const turbo = (base: string, tokenLimit: number): ModelInfo => ({
  base,
  encoding: 'cl100k_base',
  tokenLimit,
  format: 'chat',
  methods: SUPERVISED,
});
const gptBase = (base: string): ModelInfo => ({
  base,
  encoding: 'cl100k_base',
  tokenLimit: 16_384,
  format: 'completion',
  methods: SUPERVISED,
});

/** Every model name accepted as a base model for fine-tuning. */
const MODELS: ReadonlyMap<string, ModelInfo> = new Map(
  [
    chat4('gpt-4o-mini-2024-07-18'),
    chat4('gpt-4o-mini'),
    chat4('gpt-4o-2024-08-06'),
    chat4('gpt-4o'),
    chat4('gpt-4.1-2025-04-14'),
    chat4('gpt-4.1'),
    chat4('gpt-4.1-mini-2025-04-14'),
    chat4('gpt-4.1-mini'),
    chat4('gpt-4.1-nano-2025-04-14'),
    chat4('gpt-4.1-nano'),
    turbo('gpt-3.5-turbo', 16_385),
    turbo('gpt-3.5-turbo-0125', 16_385),
    turbo('gpt-3.5-turbo-1106', 16_385),
    turbo('gpt-3.5-turbo-0613', 4_096),
    gptBase('babbage-002'),
    gptBase('davinci-002'),
  ].map((m) => [m.base, m]),
);

/** The names accepted as base models (fine-tuned `ft:` names of these are accepted too). */
export const SUPPORTED_MODELS: readonly string[] = [...MODELS.keys()];

/** "ft:gpt-4o-mini-2024-07-18:org-x:suffix:abcd1234" → "gpt-4o-mini-2024-07-18"; other names unchanged. */
export function baseModelName(model: string): string {
  if (typeof model !== 'string') return '';
  if (model.startsWith('ft:')) return model.split(':')[1] ?? '';
  return model;
}

export function modelInfo(model: string): ModelInfo | undefined {
  return MODELS.get(baseModelName(model));
}

export function isSupportedModel(model: string): boolean {
  return modelInfo(model) !== undefined;
}

/** Whether `method` can be used with `model` (DPO: gpt-4o and gpt-4.1 families only). */
export function supportsMethod(model: string, method: FineTuneMethodType): boolean {
  return modelInfo(model)?.methods.includes(method) ?? false;
}

/**
 * Per-example token limit. Unknown models get the family's figure when the name makes it clear
 * (e.g. a newer gpt-4o snapshot), otherwise 65,536.
 */
export function modelTokenLimit(model: string): number {
  const info = modelInfo(model);
  if (info) return info.tokenLimit;
  const name = baseModelName(model);
  if (name.startsWith('gpt-3.5-turbo')) return 16_385;
  if (/^(babbage|davinci)-/.test(name)) return 16_384;
  return 65_536;
}

/** The tokenizer for a model: o200k_base for gpt-4o / gpt-4.1 / o-series and newer, cl100k_base for the older ones. */
export function encodingForModel(model: string): EncodingName {
  const info = modelInfo(model);
  if (info) return info.encoding;
  const name = baseModelName(model);
  if (/^(gpt-3\.5|gpt-4-|gpt-4$|babbage|davinci|text-embedding)/.test(name)) return 'cl100k_base';
  return 'o200k_base';
}

/** OpenAI's wording when a model cannot be fine-tuned. */
export function modelNotAvailableMessage(model: string): string {
  return `Model ${model} is not available for fine-tuning or does not exist.`;
}
