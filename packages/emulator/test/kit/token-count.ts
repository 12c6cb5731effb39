/**
 * An independent count of billable tokens, written from OpenAI's cookbook ("Data preparation and analysis
 * for chat model fine-tuning", num_tokens_from_messages) with gpt-tokenizer used directly, so that the
 * service's trained_tokens can be checked against something it did not compute itself.
 *
 * Chat examples: 3 tokens per message + the tokens of every value in it (+1 when it has a name),
 * + 3 for the reply priming. prompt/completion examples: tokens of prompt + tokens of completion.
 * Each example is capped at the model's per-example limit; the total is multiplied by the epochs.
 */
import { encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { encode as encodeO200k } from 'gpt-tokenizer/encoding/o200k_base';

const LIMITS: [RegExp, number][] = [
  [/^gpt-4o-mini/, 65536],
  [/^gpt-4o/, 65536],
  [/^gpt-4\.1/, 65536],
  [/^gpt-3\.5-turbo-0613$/, 4096],
  [/^gpt-3\.5-turbo/, 16385],
  [/^(babbage|davinci)-002$/, 16384],
];

export function tokenLimit(model: string): number {
  const hit = LIMITS.find(([re]) => re.test(model));
  if (!hit) throw new Error(`no token limit known for ${model}`);
  return hit[1];
}

const encoderFor = (model: string) => (/^(gpt-4o|gpt-4\.1)/.test(model) ? encodeO200k : encodeCl100k);

export function exampleTokens(example: Record<string, unknown>, model: string): number {
  const encode = encoderFor(model);
  if (Array.isArray(example.messages)) {
    let n = 0;
    for (const message of example.messages as Record<string, unknown>[]) {
      n += 3;
      for (const [key, value] of Object.entries(message)) {
        if (typeof value === 'string') n += encode(value).length;
        else if (value != null) n += encode(JSON.stringify(value)).length;
        if (key === 'name') n += 1;
      }
    }
    return n + 3;
  }
  return encode(String(example.prompt ?? '')).length + encode(String(example.completion ?? '')).length;
}

export function expectedTrainedTokens(examples: Record<string, unknown>[], model: string, epochs: number, limit = tokenLimit(model)): number {
  return examples.reduce((sum, e) => sum + Math.min(exampleTokens(e, model), limit), 0) * epochs;
}
