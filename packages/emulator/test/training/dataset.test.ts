/**
 * prepareDataset: every validation rule, with the exact line named, and what a good file gives.
 */
import { describe, expect, it } from 'vitest';
import { prepareDataset, prepareDatasetAsync, type DatasetResult, type PrepareOptions } from '../../src/training/index.js';
import { chatRows, completionRows, dpoRows, toJsonl, type Row } from './helpers.js';

const CHAT: PrepareOptions = { model: 'gpt-4o-mini-2024-07-18', method: 'supervised', role: 'training_file' };

function ok(r: DatasetResult) {
  if (!r.ok) throw new Error(`expected ok, got ${r.code}: ${r.message}`);
  return r;
}

function bad(r: DatasetResult) {
  if (r.ok) throw new Error('expected an error');
  return r;
}

/** 12 good chat rows with row `index` (0-based, so line index+1) replaced. */
function withRow(index: number, row: unknown): string {
  const rows: unknown[] = chatRows(12);
  rows[index] = row;
  return toJsonl(rows);
}

/** 12 good chat rows where message `m` of row `index` is replaced. */
function withMessage(index: number, m: number, message: unknown): string {
  const rows = chatRows(12);
  (rows[index].messages as unknown[])[m] = message;
  return toJsonl(rows);
}

function expectLineError(content: string, line: number, problem: string, opts: PrepareOptions = CHAT) {
  const r = bad(prepareDataset(content, opts));
  expect(r.code).toBe(opts.role === 'validation_file' ? 'invalid_validation_file' : 'invalid_training_file');
  expect(r.message).toBe(`Invalid file format. Line ${line}: ${problem}`);
}

describe('good chat files', () => {
  it('accepts 10 examples and returns one tokenized example per line', () => {
    const r = ok(prepareDataset(toJsonl(chatRows(10)), CHAT));
    expect(r.examples).toHaveLength(10);
    expect(r.warnings).toEqual([]);
    for (const e of r.examples) {
      expect(e.tokens.length).toBe(e.trainMask.length);
      expect(e.trainMask.some(Boolean)).toBe(true);
      expect(e.billableTokens).toBe(e.tokens.length + 3);
    }
  });

  it('skips blank lines, accepts CRLF line ends and a byte-order mark', () => {
    const lines = toJsonl(chatRows(10)).trim().split('\n');
    const content = '\uFEFF' + lines.slice(0, 5).join('\r\n') + '\r\n\r\n   \n' + lines.slice(5).join('\r\n') + '\r\n\n';
    expect(ok(prepareDataset(content, CHAT)).examples).toHaveLength(10);
  });

  it('accepts names, weights, tool calls, tool messages, function calls, content parts and tools', () => {
    const rows = chatRows(10);
    rows[0] = {
      messages: [
        { role: 'system', content: 'You call tools.', name: 'setup' },
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
        { role: 'assistant', content: 'It is 21 degrees.', weight: 1 },
      ],
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: {} } } }],
      parallel_tool_calls: false,
    };
    rows[1] = {
      messages: [
        { role: 'user', content: 'Add 2 and 2' },
        { role: 'assistant', content: 'Draft answer', weight: 0 },
        { role: 'user', content: 'Use the function' },
        { role: 'assistant', function_call: { name: 'add', arguments: '{"a":2,"b":2}' } },
        { role: 'function', name: 'add', content: '4' },
        { role: 'assistant', content: 'Four.' },
      ],
      functions: [{ name: 'add', parameters: { type: 'object' } }],
    };
    rows[2] = {
      messages: [
        { role: 'user', content: 'Do something bad' },
        { role: 'assistant', refusal: 'I cannot help with that.' },
      ],
    };
    expect(ok(prepareDataset(toJsonl(rows), CHAT)).examples).toHaveLength(10);
  });

  it('a validation file needs only one example', () => {
    expect(ok(prepareDataset(toJsonl(chatRows(1)), { ...CHAT, role: 'validation_file' })).examples).toHaveLength(1);
  });

  it('accepts fine-tuned model names as the base model', () => {
    expect(ok(prepareDataset(toJsonl(chatRows(10)), { ...CHAT, model: 'ft:gpt-4o-mini-2024-07-18:org-abc:custom:AbCd1234' })).examples).toHaveLength(10);
  });

  it('the async variant gives the same result', async () => {
    const content = toJsonl(chatRows(600));
    expect(await prepareDatasetAsync(content, CHAT)).toEqual(prepareDataset(content, CHAT));
    const broken = content + '{"messages": 3}\n';
    expect(await prepareDatasetAsync(broken, CHAT)).toEqual(prepareDataset(broken, CHAT));
  });
});

describe('bad chat lines: the first bad line is named', () => {
  it('a line that is not JSON', () => {
    const lines = toJsonl(chatRows(12)).split('\n');
    lines[2] = '{"messages": [{"role": "user", "content": "unterminated';
    const r = bad(prepareDataset(lines.join('\n'), CHAT));
    expect(r.code).toBe('invalid_training_file');
    expect(r.message).toMatch(/^Invalid file format\. Line 3: not valid JSON \(.+\)\. Every line must be one JSON object\.$/);
  });

  it('line numbers count blank lines', () => {
    const lines = toJsonl(chatRows(12)).split('\n');
    lines.splice(1, 0, '', '   ');
    lines[4] = '[1, 2]';
    expectLineError(lines.join('\n'), 5, 'expected a JSON object, got an array');
  });

  it('a JSON value that is not an object', () => {
    expectLineError(withRow(0, 'just a string'), 1, 'expected a JSON object, got a string');
    expectLineError(withRow(1, null), 2, 'expected a JSON object, got null');
  });

  it('no messages list', () => {
    expectLineError(withRow(3, { conversation: [] }), 4, "missing 'messages' list");
    expectLineError(withRow(3, { messages: 'hi' }), 4, "'messages' must be a list, got a string");
    expectLineError(withRow(3, { messages: [] }), 4, "'messages' is empty");
  });

  it('prompt/completion lines for a chat model', () => {
    expectLineError(
      withRow(0, { prompt: 'a', completion: 'b' }),
      1,
      "has 'prompt'/'completion' but gpt-4o-mini-2024-07-18 is a chat model: each line needs a 'messages' list (prompt/completion lines are for babbage-002 and davinci-002)",
    );
  });

  it('an unrecognized top-level key', () => {
    const row = { ...chatRows(1)[0], metadata: { a: 1 } };
    expectLineError(
      withRow(6, row),
      7,
      "has unrecognized key 'metadata' (a chat example has 'messages' and optionally 'tools', 'functions', 'parallel_tool_calls')",
    );
  });

  it('a message that is not an object, or has no role, or an unknown role', () => {
    expectLineError(withMessage(2, 1, 'hello'), 3, 'messages[1] must be an object, got a string');
    expectLineError(withMessage(2, 1, { content: 'hello' }), 3, "messages[1] is missing 'role'");
    expectLineError(
      withMessage(1, 0, { role: 'robot', content: 'beep' }),
      2,
      "messages[0] has unrecognized role 'robot' (expected one of system, user, assistant, tool, function)",
    );
  });

  it('a key that is not allowed in a message', () => {
    expectLineError(withMessage(4, 0, { role: 'system', content: 'x', mood: 'cheerful' }), 5, "messages[0] has unrecognized key 'mood'");
    expectLineError(
      withMessage(2, 1, { role: 'user', content: 'x', weight: 1 }),
      3,
      "messages[1] has unrecognized key 'weight' (not allowed on a user message)",
    );
    expectLineError(
      withMessage(2, 1, { role: 'user', content: 'x', tool_calls: [] }),
      3,
      "messages[1] has unrecognized key 'tool_calls' (not allowed on a user message)",
    );
  });

  it('content: missing, empty, wrong type, unsupported parts', () => {
    expectLineError(withMessage(0, 1, { role: 'user' }), 1, 'messages[1].content is missing');
    expectLineError(withMessage(0, 1, { role: 'user', content: '' }), 1, 'messages[1].content must not be empty');
    expectLineError(withMessage(0, 1, { role: 'user', content: 42 }), 1, 'messages[1].content must be a string or a list of content parts, got a number');
    expectLineError(withMessage(0, 2, { role: 'assistant', content: null }), 1, 'messages[2].content is missing');
    expectLineError(
      withMessage(0, 1, { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] }),
      1,
      'messages[1].content[0] has type image_url: only "text" content parts are supported',
    );
    expectLineError(withMessage(0, 1, { role: 'user', content: [{ type: 'text' }] }), 1, 'messages[1].content[0].text is missing');
  });

  it('weight must be 0 or 1', () => {
    expectLineError(withMessage(8, 2, { role: 'assistant', content: 'x', weight: 0.5 }), 9, 'messages[2].weight must be 0 or 1, got 0.5');
    expectLineError(withMessage(8, 2, { role: 'assistant', content: 'x', weight: '1' }), 9, 'messages[2].weight must be 0 or 1, got "1"');
  });

  it('malformed tool calls, function calls, tool and function messages', () => {
    expectLineError(withMessage(0, 2, { role: 'assistant', tool_calls: [] }), 1, 'messages[2].tool_calls must not be empty');
    expectLineError(
      withMessage(0, 2, { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f' } }] }),
      1,
      'messages[2].tool_calls[0].function.arguments is missing',
    );
    expectLineError(withMessage(0, 2, { role: 'assistant', function_call: 'f()' }), 1, 'messages[2].function_call must be an object, got a string');
    expectLineError(withMessage(0, 1, { role: 'tool', content: '4' }), 1, 'messages[1].tool_call_id is missing');
    expectLineError(withMessage(0, 1, { role: 'function', content: '4' }), 1, "messages[1] is missing 'name' (required on a function message)");
    expectLineError(withMessage(0, 1, { role: 'user', content: 'x', name: '' }), 1, 'messages[1].name must not be empty');
  });

  it('malformed tools, functions and parallel_tool_calls', () => {
    const base = chatRows(1)[0];
    expectLineError(withRow(0, { ...base, tools: {} }), 1, "'tools' must be a list, got an object");
    expectLineError(withRow(0, { ...base, tools: [{ type: 'function', function: {} }] }), 1, "tools[0].function must be an object with a 'name'");
    expectLineError(withRow(0, { ...base, functions: [{}] }), 1, "functions[0] must be an object with a 'name'");
    expectLineError(withRow(0, { ...base, parallel_tool_calls: 'yes' }), 1, "'parallel_tool_calls' must be true or false");
  });

  it('an example without an assistant message', () => {
    const rows = chatRows(12);
    rows[5].messages = (rows[5].messages as Row[]).filter((m) => m.role !== 'assistant');
    expectLineError(toJsonl(rows), 6, 'example has no assistant message');
  });

  it('special-token strings are refused, as OpenAI does', () => {
    expectLineError(
      withMessage(3, 2, { role: 'assistant', content: 'the end <|endoftext|> really' }),
      4,
      'messages[2].content contains an invalid token: <|endoftext|>',
    );
    expectLineError(
      withMessage(3, 1, { role: 'user', content: [{ type: 'text', text: '<|fim_suffix|>' }] }),
      4,
      'messages[1].content[0].text contains an invalid token: <|fim_suffix|>',
    );
  });

  it('reports the first bad line only', () => {
    const rows: unknown[] = chatRows(12);
    rows[7] = { nope: 1 };
    rows[2] = [1];
    expectLineError(toJsonl(rows), 3, 'expected a JSON object, got an array');
  });

  it('a bad validation file gets invalid_validation_file', () => {
    expectLineError(withRow(0, { nope: 1 }), 1, "missing 'messages' list", { ...CHAT, role: 'validation_file' });
  });
});

describe('example counts', () => {
  it("fewer than 10 training examples: invalid_n_examples with OpenAI's text", () => {
    const r = bad(prepareDataset(toJsonl(chatRows(5)), CHAT));
    expect(r).toEqual({ ok: false, code: 'invalid_n_examples', message: 'Training file has 5 example(s), but must have at least 10 examples' });
  });

  it('an empty or blank-only file', () => {
    for (const content of ['', '\n\n  \n', '\uFEFF']) {
      expect(bad(prepareDataset(content, CHAT)).message).toBe('Training file has 0 example(s), but must have at least 10 examples');
    }
    expect(bad(prepareDataset('\n', { ...CHAT, role: 'validation_file' }))).toEqual({
      ok: false,
      code: 'invalid_n_examples',
      message: 'Validation file has 0 example(s), but must have at least 1 example',
    });
  });

  it('a format error is reported before the count', () => {
    expect(bad(prepareDataset('{"x": 1}\n', CHAT)).code).toBe('invalid_training_file');
  });
});

describe('models and methods', () => {
  it('an unknown model', () => {
    expect(bad(prepareDataset(toJsonl(chatRows(10)), { ...CHAT, model: 'gpt-9' }))).toEqual({
      ok: false,
      code: 'model_not_available',
      message: 'Model gpt-9 is not available for fine-tuning or does not exist.',
    });
  });

  it('dpo on a model without dpo', () => {
    expect(bad(prepareDataset(toJsonl(dpoRows(10)), { ...CHAT, model: 'gpt-3.5-turbo', method: 'dpo' })).message).toBe(
      'Model gpt-3.5-turbo does not support the dpo method.',
    );
  });
});

describe('dpo files', () => {
  const DPO: PrepareOptions = { ...CHAT, method: 'dpo' };

  it('accepts input / preferred_output / non_preferred_output', () => {
    const r = ok(prepareDataset(toJsonl(dpoRows(10)), DPO));
    expect(r.examples).toHaveLength(10);
  });

  it('rejects chat lines, missing parts, non-assistant outputs, weights and extra keys', () => {
    const rows = () => dpoRows(10) as Row[];
    const at = (i: number, row: unknown) => {
      const r: unknown[] = rows();
      r[i] = row;
      return toJsonl(r);
    };
    const good = rows()[0];
    expectLineError(
      at(0, chatRows(1)[0]),
      1,
      "has 'messages' but the job's method is dpo: each line needs 'input', 'preferred_output' and 'non_preferred_output'",
      DPO,
    );
    expectLineError(at(1, { ...good, preferred_output: undefined }), 2, "missing 'preferred_output'", DPO);
    expectLineError(
      at(2, { ...good, non_preferred_output: [{ role: 'user', content: 'x' }] }),
      3,
      "non_preferred_output[0] must be an assistant message, got role 'user'",
      DPO,
    );
    expectLineError(
      at(3, { ...good, preferred_output: [{ role: 'assistant', content: 'x', weight: 1 }] }),
      4,
      "preferred_output[0] has 'weight', which is only supported for supervised fine-tuning",
      DPO,
    );
    expectLineError(
      at(4, { ...good, score: 1 }),
      5,
      "has unrecognized key 'score' (a DPO example has 'input', 'preferred_output' and 'non_preferred_output')",
      DPO,
    );
    expectLineError(at(5, { ...good, input: { messages: [] } }), 6, "'input.messages' is empty", DPO);
    expectLineError(at(6, { ...good, input: [] }), 7, "'input' must be an object, got an array", DPO);
  });

  it('DPO lines under a supervised job are named as such', () => {
    expectLineError(toJsonl(dpoRows(10)), 1, "looks like a DPO example, but the job's method is supervised: each line needs a 'messages' list");
  });
});

describe('prompt/completion files (babbage-002, davinci-002)', () => {
  const LEGACY: PrepareOptions = { model: 'babbage-002', method: 'supervised', role: 'training_file' };

  it('accepts prompt/completion lines', () => {
    expect(ok(prepareDataset(toJsonl(completionRows(10)), LEGACY)).examples).toHaveLength(10);
    expect(ok(prepareDataset(toJsonl(completionRows(10)), { ...LEGACY, model: 'davinci-002' })).examples).toHaveLength(10);
  });

  it('an empty prompt is fine, an empty completion is not', () => {
    const rows = completionRows(10);
    rows[0].prompt = '';
    expect(ok(prepareDataset(toJsonl(rows), LEGACY)).examples).toHaveLength(10);
    rows[1].completion = '';
    expectLineError(toJsonl(rows), 2, "'completion' must not be empty", LEGACY);
  });

  it('rejects chat lines, missing fields, wrong types, extra keys', () => {
    const at = (i: number, row: unknown) => {
      const r: unknown[] = completionRows(12);
      r[i] = row;
      return toJsonl(r);
    };
    expectLineError(toJsonl(chatRows(12)), 1, `has 'messages' but babbage-002 takes prompt/completion lines: {"prompt": "...", "completion": "..."}`, LEGACY);
    expectLineError(at(2, { prompt: 'x' }), 3, "missing 'completion'", LEGACY);
    expectLineError(at(2, { completion: 'x' }), 3, "missing 'prompt'", LEGACY);
    expectLineError(at(4, { prompt: 1, completion: 'x' }), 5, "'prompt' must be a string, got a number", LEGACY);
    expectLineError(
      at(9, { prompt: 'a', completion: 'b', label: 'c' }),
      10,
      "has unrecognized key 'label' (a babbage-002 example has only 'prompt' and 'completion')",
      LEGACY,
    );
  });
});

describe('never throws on bad input', () => {
  it('random lines of junk and random JSON values give a result, not an exception', () => {
    let x = 7;
    const rnd = (n: number) => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x % n;
    };
    const atoms = [
      '{',
      '}',
      '[',
      ']',
      '"',
      ':',
      ',',
      'null',
      'true',
      '1e999',
      '-0',
      '"role"',
      '"content"',
      '"messages"',
      '"assistant"',
      ' ',
      '\\u0000',
      '\u{1F600}',
      '\uD800',
    ];
    const values = [
      null,
      0,
      'x',
      [],
      {},
      [null],
      [{}],
      { role: 'assistant' },
      { role: 'assistant', content: {} },
      { messages: [[]] },
      { messages: [{ role: {}, content: [] }] },
      { messages: [{ role: 'assistant', content: [null] }] },
      { messages: [{ role: 'assistant', tool_calls: [null] }] },
      { input: { messages: [{ role: 'user', content: 'x' }] }, preferred_output: {}, non_preferred_output: null },
      { prompt: null, completion: [] },
    ];
    for (let trial = 0; trial < 400; trial++) {
      const lines: string[] = [];
      for (let l = 0; l < 1 + rnd(4); l++) {
        if (rnd(2)) lines.push(JSON.stringify(values[rnd(values.length)]));
        else lines.push(Array.from({ length: rnd(12) }, () => atoms[rnd(atoms.length)]).join(''));
      }
      for (const opts of [CHAT, { ...CHAT, method: 'dpo' as const }, { ...CHAT, model: 'davinci-002' }]) {
        const r = prepareDataset(lines.join('\n'), opts);
        expect(typeof r.ok).toBe('boolean');
        if (!r.ok) expect(r.message.length).toBeGreaterThan(0);
      }
    }
  });

  it('bad options do not throw either', () => {
    expect(prepareDataset(toJsonl(chatRows(10)), { model: undefined as unknown as string, method: 'supervised', role: 'training_file' }).ok).toBe(false);
    expect(prepareDataset(null as unknown as string, CHAT).ok).toBe(false);
  });
});
