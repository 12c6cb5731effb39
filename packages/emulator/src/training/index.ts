/**
 * The data side of the local fine-tuning service: file validation, tokenization, the training plan
 * and a small real trainer whose metrics are measured, never invented.
 *
 * ## Token counting (what `billableTokens` and `trained_tokens` are)
 * Tokenizer: gpt-tokenizer, `o200k_base` for gpt-4o / gpt-4.1 (and o-series), `cl100k_base` for
 * gpt-3.5-turbo, babbage-002 and davinci-002 (`encodingForModel`). Special-token strings such as
 * "<|endoftext|>" are refused in training data, so plain `encode(text)` gives the same tokens.
 *
 * Chat example (supervised), after OpenAI's cookbook num_tokens_from_messages:
 *   count = Σ over messages [ 3 + Σ over the message's keys (in any order) tokens(value)
 *                               + 1 if the message has a `name` ]
 *           + 3 (reply priming)
 *   where tokens(value) = encode(value).length for a string, encode(JSON.stringify(value)).length for
 *   any other non-null value (e.g. `weight: 1` → "1", `tool_calls`, `function_call`, content-part
 *   arrays), and 0 for null. Every key counts, `role` and `weight` included. Top-level `tools` /
 *   `functions` / `parallel_tool_calls` are not counted (the cookbook does not count them).
 * DPO example: the same chat count over input.messages ++ preferred_output ++ non_preferred_output
 *   (one reply priming of 3).
 * prompt/completion example (babbage-002, davinci-002): encode(prompt).length + encode(completion).length.
 * billableTokens = min(count, modelTokenLimit(model)); trainedTokens = Σ billableTokens × n_epochs.
 * An example whose count exceeds the limit is truncated to its first `limit` tokens and the file gets
 * one warning naming how many examples and which lines.
 *
 * ## Token sequence (`tokens` / `trainMask`)
 * Chat: per message <|im_start|> role [":" name] other-header-values <|im_sep|> body <|im_end|>, where
 * the body is content, refusal, function_call, tool_calls (JSON for non-strings) and trainMask is true
 * on the body of assistant messages whose weight is not 0. So tokens.length = count - 3 when not
 * truncated. DPO: input messages then the preferred output (trained). prompt/completion: prompt
 * tokens then completion tokens (trained).
 *
 * Tokenization is exact except for runs of more than 1,024 characters with no word boundary, which are
 * cut into pieces (see tokenizer.ts); this bounds the cost of pathological input.
 */
export type * from './types.js';
export { prepareDataset, prepareDatasetAsync, MIN_TRAINING_EXAMPLES, MIN_VALIDATION_EXAMPLES } from './dataset.js';
export { planTraining, autoEpochs, autoBatchSize, autoLearningRateMultiplier, DEFAULT_DPO_BETA } from './plan.js';
export { createTrainer } from './trainer.js';
export {
  SUPPORTED_MODELS,
  baseModelName,
  encodingForModel,
  isSupportedModel,
  modelNotAvailableMessage,
  modelTokenLimit,
  supportsMethod,
  type EncodingName,
} from './models.js';
