/**
 * Test data and an independent token count for the training module's tests.
 *
 * The count is written here from OpenAI's cookbook (num_tokens_from_messages) with gpt-tokenizer used
 * directly, not with the module's code: 3 per message + tokens of every value (strings as they are,
 * other non-null values as JSON) + 1 per name, + 3 for the reply priming; prompt + completion for the
 * legacy format.
 */
import { encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { encode as encodeO200k } from 'gpt-tokenizer/encoding/o200k_base';

export type Row = Record<string, unknown>;
export type Message = Record<string, unknown>;

export const encoderFor = (model: string) => (/^(gpt-4o|gpt-4\.1)/.test(model) ? encodeO200k : encodeCl100k);

export function countMessages(messages: Message[], model: string): number {
  const encode = encoderFor(model);
  let n = 0;
  for (const message of messages) {
    n += 3;
    for (const [key, value] of Object.entries(message)) {
      if (typeof value === 'string') n += encode(value).length;
      else if (value !== null && value !== undefined) n += encode(JSON.stringify(value)).length;
      if (key === 'name') n += 1;
    }
  }
  return n + 3;
}

export function countExample(row: Row, model: string): number {
  if (Array.isArray(row.messages)) return countMessages(row.messages as Message[], model);
  if (row.input && typeof row.input === 'object') {
    const input = row.input as { messages: Message[] };
    return countMessages([...input.messages, ...(row.preferred_output as Message[]), ...(row.non_preferred_output as Message[])], model);
  }
  const encode = encoderFor(model);
  return encode(String(row.prompt)).length + encode(String(row.completion)).length;
}

export const toJsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

const TOPICS = ['the moon', 'tea', 'rivers', 'prime numbers', 'bicycles', 'owls', 'glaciers', 'jazz', 'bread', 'comets'];

/** `n` ordinary chat examples (system + user + assistant), varied but repetitive enough to learn. */
export function chatRows(n: number, offset = 0): Row[] {
  return Array.from({ length: n }, (_, k) => {
    const i = k + offset;
    const topic = TOPICS[i % TOPICS.length];
    return {
      messages: [
        { role: 'system', content: 'You are a concise assistant that answers in one sentence.' },
        { role: 'user', content: `Tell me one fact about ${topic}, please (${i}).` },
        { role: 'assistant', content: `Here is a fact about ${topic}: it is more interesting than it looks, and fact number ${i % 7} proves it.` },
      ],
    };
  });
}

export function completionRows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({
    prompt: `Translate to French: ${TOPICS[i % TOPICS.length]} ->`,
    completion: ` la traduction numéro ${i}\n`,
  }));
}

export function dpoRows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({
    input: { messages: [{ role: 'user', content: `Describe ${TOPICS[i % TOPICS.length]} briefly.` }] },
    preferred_output: [{ role: 'assistant', content: `A short, friendly description of ${TOPICS[i % TOPICS.length]}.` }],
    non_preferred_output: [{ role: 'assistant', content: 'No.' }],
  }));
}
