/**
 * Token counts against an independent count (gpt-tokenizer used directly, cookbook rule), the token
 * sequence and its train mask, per-model limits and truncation, and the tokenizer's guard against
 * pathological input.
 */
import { describe, expect, it } from 'vitest';
import { decode as decodeCl100k, encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { decode as decodeO200k, encode as encodeO200k } from 'gpt-tokenizer/encoding/o200k_base';
import {
  encodingForModel,
  isSupportedModel,
  modelTokenLimit,
  prepareDataset,
  SUPPORTED_MODELS,
  supportsMethod,
  type DatasetResult,
  type PrepareOptions,
  type TokenizedExample,
} from '../../src/training/index.js';
import { getEncoder } from '../../src/training/tokenizer.js';
import { chatRows, completionRows, countExample, countMessages, dpoRows, toJsonl, type Row } from './helpers.js';

const opts = (model: string, extra: Partial<PrepareOptions> = {}): PrepareOptions => ({
  model,
  method: 'supervised',
  role: 'training_file',
  ...extra,
});

function ok(r: DatasetResult) {
  if (!r.ok) throw new Error(`expected ok, got ${r.code}: ${r.message}`);
  return r;
}

const decoderFor = (model: string) => (encodingForModel(model) === 'o200k_base' ? decodeO200k : decodeCl100k);
const trained = (e: TokenizedExample) => e.tokens.filter((_, i) => e.trainMask[i]);

function richRows(): Row[] {
  const rows = chatRows(10);
  rows[0] = {
    messages: [
      { role: 'system', content: 'You call tools when needed.', name: 'boot' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Weather in ' },
          { type: 'text', text: 'Paris?' },
        ],
        name: 'ann',
      },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
      { role: 'assistant', content: 'Draft: it is warm.', weight: 0 },
      { role: 'user', content: 'And in numbers?' },
      { role: 'assistant', content: 'It is 21 °C in Paris — pleasant.', weight: 1 },
    ],
    tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: {} } } }],
  };
  rows[1] = {
    messages: [
      { role: 'user', content: 'Add 2 and 2' },
      { role: 'assistant', function_call: { name: 'add', arguments: '{"a":2,"b":2}' } },
      { role: 'function', name: 'add', content: '4' },
      { role: 'assistant', content: 'Four. 四. Vier. 🎲' },
    ],
  };
  rows[2] = {
    messages: [
      { role: 'user', content: 'Do something bad' },
      { role: 'assistant', refusal: 'I cannot help with that.' },
    ],
  };
  return rows;
}

describe('billable tokens equal an independent count', () => {
  for (const model of ['gpt-4o-mini-2024-07-18', 'gpt-4.1-nano', 'gpt-3.5-turbo-0125']) {
    it(`chat examples on ${model}`, () => {
      for (const rows of [chatRows(12), richRows()]) {
        const r = ok(prepareDataset(toJsonl(rows), opts(model)));
        expect(r.examples.map((e) => e.billableTokens)).toEqual(rows.map((row) => countExample(row, model)));
        for (const e of r.examples) expect(e.tokens.length).toBe(e.billableTokens - 3);
      }
    });
  }

  it('the two encodings really differ (the model picks the tokenizer)', () => {
    const row = richRows()[1];
    expect(countExample(row, 'gpt-4o-mini')).not.toBe(countExample(row, 'gpt-3.5-turbo'));
    expect(encodingForModel('gpt-4o-mini-2024-07-18')).toBe('o200k_base');
    expect(encodingForModel('gpt-4.1-mini-2025-04-14')).toBe('o200k_base');
    expect(encodingForModel('o4-mini')).toBe('o200k_base');
    expect(encodingForModel('gpt-3.5-turbo')).toBe('cl100k_base');
    expect(encodingForModel('babbage-002')).toBe('cl100k_base');
    expect(encodingForModel('davinci-002')).toBe('cl100k_base');
  });

  it('prompt/completion examples: prompt tokens + completion tokens', () => {
    const rows = completionRows(10);
    const r = ok(prepareDataset(toJsonl(rows), opts('davinci-002')));
    expect(r.examples.map((e) => e.billableTokens)).toEqual(
      rows.map((row) => encodeCl100k(row.prompt as string).length + encodeCl100k(row.completion as string).length),
    );
  });

  it('dpo examples: the chat count over input, preferred and non-preferred output', () => {
    const rows = dpoRows(10);
    const r = ok(prepareDataset(toJsonl(rows), opts('gpt-4o-2024-08-06', { method: 'dpo' })));
    expect(r.examples.map((e) => e.billableTokens)).toEqual(rows.map((row) => countExample(row, 'gpt-4o-2024-08-06')));
  });
});

describe('token sequence and train mask', () => {
  it('trains on the content of assistant messages whose weight is not 0, and nothing else', () => {
    for (const model of ['gpt-4o-mini', 'gpt-3.5-turbo']) {
      const rows = richRows();
      const r = ok(prepareDataset(toJsonl(rows), opts(model)));
      const decode = decoderFor(model);
      expect(decode(trained(r.examples[0]))).toBe(JSON.stringify((rows[0].messages as Row[])[2].tool_calls) + 'It is 21 °C in Paris — pleasant.');
      expect(decode(trained(r.examples[1]))).toBe('{"name":"add","arguments":"{\\"a\\":2,\\"b\\":2}"}' + 'Four. 四. Vier. 🎲');
      expect(decode(trained(r.examples[2]))).toBe('I cannot help with that.');
      const plain = (rows[5].messages as Row[])[2].content as string;
      expect(decode(trained(r.examples[5]))).toBe(plain);
    }
  });

  it('lays out each message as <|im_start|> role <|im_sep|> content <|im_end|>', () => {
    const rows = chatRows(10);
    const r = ok(prepareDataset(toJsonl(rows), opts('gpt-4o-mini')));
    const msgs = rows[0].messages as Row[];
    const expected: number[] = [];
    for (const m of msgs) expected.push(200003, ...encodeO200k(m.role as string), 200005, ...encodeO200k(m.content as string), 200004);
    expect(r.examples[0].tokens).toEqual(expected);
    expect(decodeO200k(r.examples[0].tokens.slice(0, 3))).toBe('<|im_start|>system<|im_sep|>');
  });

  it('prompt/completion: prompt tokens then completion tokens, the completion trained', () => {
    const rows = completionRows(10);
    const r = ok(prepareDataset(toJsonl(rows), opts('babbage-002')));
    expect(r.examples[3].tokens).toEqual([...encodeCl100k(rows[3].prompt as string), ...encodeCl100k(rows[3].completion as string)]);
    expect(decodeCl100k(trained(r.examples[3]))).toBe(rows[3].completion);
  });

  it('dpo: the preferred output is trained, the non-preferred one is not in the sequence', () => {
    const rows = dpoRows(10);
    const r = ok(prepareDataset(toJsonl(rows), opts('gpt-4o-mini', { method: 'dpo' })));
    expect(decodeO200k(trained(r.examples[0]))).toBe((rows[0].preferred_output as Row[])[0].content);
    expect(decodeO200k(r.examples[0].tokens)).not.toContain('No.');
  });
});

describe('per-model limits and truncation', () => {
  it('limits per model', () => {
    expect(modelTokenLimit('gpt-4o-mini-2024-07-18')).toBe(65_536);
    expect(modelTokenLimit('gpt-4o-2024-08-06')).toBe(65_536);
    expect(modelTokenLimit('gpt-4.1-2025-04-14')).toBe(65_536);
    expect(modelTokenLimit('gpt-3.5-turbo')).toBe(16_385);
    expect(modelTokenLimit('gpt-3.5-turbo-0125')).toBe(16_385);
    expect(modelTokenLimit('gpt-3.5-turbo-0613')).toBe(4_096);
    expect(modelTokenLimit('babbage-002')).toBe(16_384);
    expect(modelTokenLimit('davinci-002')).toBe(16_384);
    expect(modelTokenLimit('ft:gpt-3.5-turbo-0613:org:x:abcdefgh')).toBe(4_096);
  });

  it('supported models and methods', () => {
    for (const m of SUPPORTED_MODELS) expect(isSupportedModel(m)).toBe(true);
    expect(SUPPORTED_MODELS).toContain('gpt-4o-mini-2024-07-18');
    expect(SUPPORTED_MODELS).toContain('babbage-002');
    expect(isSupportedModel('ft:gpt-4o-mini-2024-07-18:org-1:s:abcd1234')).toBe(true);
    for (const m of ['gpt-4', 'gpt-4o-mini-2099-01-01', 'o4-mini', '', 'ft:', 'ft:gpt-9:x']) expect(isSupportedModel(m)).toBe(false);
    expect(supportsMethod('gpt-4o-mini', 'dpo')).toBe(true);
    expect(supportsMethod('gpt-3.5-turbo', 'dpo')).toBe(false);
    expect(supportsMethod('babbage-002', 'supervised')).toBe(true);
  });

  it('an over-long example is cut to the limit, billed at the limit, and warned about once', () => {
    const model = 'gpt-3.5-turbo-0613';
    const rows = chatRows(12);
    const long = Array.from({ length: 5000 }, (_, i) => `word${i % 97}`).join(' ');
    (rows[2].messages as Row[]).push({ role: 'user', content: 'More.' }, { role: 'assistant', content: long });
    (rows[7].messages as Row[])[1] = { role: 'user', content: long };
    const content = toJsonl(rows);
    const r = ok(prepareDataset(content, opts(model)));
    expect(r.examples[2].billableTokens).toBe(4096);
    expect(r.examples[2].tokens).toHaveLength(4096);
    expect(r.examples[2].trainMask).toHaveLength(4096);
    expect(r.examples[7].billableTokens).toBe(4096);
    expect(r.warnings).toEqual([
      { message: '2 examples in the training file were truncated to 4096 tokens, the per-example limit for gpt-3.5-turbo-0613 (lines 3, 8)' },
    ]);
    // The kept tokens are the first 4096 of the whole sequence (same encoding, larger limit).
    const full = ok(prepareDataset(content, opts('gpt-3.5-turbo-0125')));
    expect(full.warnings).toEqual([]);
    expect(full.examples[2].billableTokens).toBe(countExample(rows[2], model));
    expect(r.examples[2].tokens).toEqual(full.examples[2].tokens.slice(0, 4096));
    expect(r.examples[2].trainMask).toEqual(full.examples[2].trainMask.slice(0, 4096));
    // Other examples are untouched.
    expect(r.examples[0]).toEqual(full.examples[0]);
  });

  it('an example whose count is just over the limit is billed at the limit and warned about', () => {
    const model = 'gpt-3.5-turbo-0613';
    const base = chatRows(10);
    // Find a length whose count is limit + 2: the sequence (count - 3) fits, the count does not.
    let k = 4000;
    const make = (n: number) => [
      { role: 'user', content: 'Go.' },
      { role: 'assistant', content: ' a'.repeat(n) },
    ];
    while (countMessages(make(k), model) < 4096 + 2) k++;
    expect(countMessages(make(k), model)).toBe(4098);
    base[4] = { messages: make(k) };
    const r = ok(prepareDataset(toJsonl(base), opts(model)));
    expect(r.examples[4].billableTokens).toBe(4096);
    expect(r.examples[4].tokens).toHaveLength(4095);
    expect(r.warnings).toEqual([
      { message: '1 example in the training file was truncated to 4096 tokens, the per-example limit for gpt-3.5-turbo-0613 (line 5)' },
    ]);
    base[4] = { messages: make(k - 2) };
    const exact = ok(prepareDataset(toJsonl(base), opts(model)));
    expect(exact.examples[4].billableTokens).toBe(4096);
    expect(exact.warnings).toEqual([]);
  });

  it('a validation file warns in its own words', () => {
    const rows = chatRows(1);
    (rows[0].messages as Row[])[1] = { role: 'user', content: 'z '.repeat(20_000) };
    const r = ok(prepareDataset(toJsonl(rows), opts('babbage-002'.replace('babbage-002', 'gpt-3.5-turbo'), { role: 'validation_file' })));
    expect(r.warnings[0].message).toBe('1 example in the validation file was truncated to 16385 tokens, the per-example limit for gpt-3.5-turbo (line 1)');
  });
});

describe('tokenizer guard', () => {
  it('segmented encoding equals plain encoding on long ordinary text', () => {
    let x = 11;
    const rnd = (n: number) => {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      return x % n;
    };
    const pieces = [
      'the',
      'The',
      ' ',
      '  ',
      '\n',
      '\n\n',
      '\t',
      ',',
      '.',
      "'s",
      "don't",
      '123',
      '4567',
      'ünïcödé',
      '日本語',
      '🎉',
      '-',
      '//',
      'x'.repeat(30),
      '$',
      "O'Neil",
      ' 9',
      'ABC',
      'camelCase',
      '\r\n',
      '…',
      'ö',
    ];
    for (const name of ['o200k_base', 'cl100k_base'] as const) {
      const enc = getEncoder(name);
      const plain = name === 'o200k_base' ? encodeO200k : encodeCl100k;
      for (let trial = 0; trial < 25; trial++) {
        const parts: string[] = [];
        const len = 2_000 + rnd(12_000);
        let total = 0;
        while (total < len) {
          const p = pieces[rnd(pieces.length)];
          parts.push(p, rnd(3) ? ' ' : '');
          total += p.length + 1;
        }
        const text = parts.join('');
        const out: number[] = [];
        const n = enc.encodeInto(text, out, Number.MAX_SAFE_INTEGER);
        expect(out).toEqual(plain(text));
        expect(n).toBe(out.length);
      }
    }
  });

  it('stops at the budget', () => {
    const enc = getEncoder('o200k_base');
    const text = Array.from({ length: 5000 }, (_, i) => `w${i}`).join(' ');
    const out: number[] = [];
    expect(enc.encodeInto(text, out, 100)).toBe(-1);
    expect(out).toEqual(encodeO200k(text).slice(0, 100));
  });

  it('megabytes without a word boundary are handled in bounded time', () => {
    const rows = chatRows(10);
    (rows[0].messages as Row[])[1] = { role: 'user', content: 'x'.repeat(3_000_000) };
    (rows[1].messages as Row[])[2] = { role: 'assistant', content: 'QUJD'.repeat(500_000) };
    const t0 = performance.now();
    const r = ok(prepareDataset(toJsonl(rows), opts('gpt-4o-mini')));
    const ms = performance.now() - t0;
    expect(r.examples[0].billableTokens).toBe(65_536);
    expect(r.examples[1].billableTokens).toBe(65_536);
    expect(r.warnings).toHaveLength(1);
    // A hang guard, not a benchmark: unguarded BPE on one 3 MB piece takes many minutes.
    expect(ms).toBeLessThan(15_000);
  });
});

describe('large garbage files', () => {
  it('50 MB of junk fails on line 1 without reading the rest', () => {
    const junk = '\u0000\u00ff{["garbage'.repeat(5_000_000);
    const t0 = performance.now();
    const r = prepareDataset(junk, opts('gpt-4o-mini'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/^Invalid file format\. Line 1: not valid JSON/);
    expect(performance.now() - t0).toBeLessThan(15_000);
  });

  it('tens of thousands of good lines then junk: the junk line is named', () => {
    const good = toJsonl(chatRows(40_000));
    const r = prepareDataset(good + 'PK\u0003\u0004 binary junk\n' + good, opts('gpt-4o-mini'));
    expect(r).toMatchObject({ ok: false, code: 'invalid_training_file' });
    if (!r.ok) expect(r.message).toMatch(/^Invalid file format\. Line 40001: not valid JSON/);
  });

  it('a deeply nested JSON line', () => {
    const r = prepareDataset('['.repeat(1_000_000) + ']'.repeat(1_000_000), opts('gpt-4o-mini'));
    expect(r.ok).toBe(false);
  });
});
