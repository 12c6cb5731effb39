/**
 * Validation and tokenization of one uploaded fine-tuning file (JSONL).
 *
 * Formats, as OpenAI's fine-tuning guide and its data-preparation cookbook describe them:
 *  - chat (supervised): {"messages": [...], "tools"?, "functions"?, "parallel_tool_calls"?}
 *  - dpo: {"input": {"messages": [...], "tools"?, …}, "preferred_output": [assistant message],
 *          "non_preferred_output": [assistant message]}
 *  - babbage-002 / davinci-002: {"prompt": "...", "completion": "..."}
 *
 * Token counting (see index.ts for the full statement) follows the cookbook's num_tokens_from_messages.
 * Errors name the line (1-based, blank lines counted) and the problem; the first bad line fails the file.
 * Nothing here throws on bad input.
 */
import { getEncoder, SPECIAL_TOKEN_RE, type Encoder } from './tokenizer.js';
import { modelInfo, modelNotAvailableMessage, type ModelInfo } from './models.js';
import type { DatasetResult, DatasetWarning, PrepareOptions, TokenizedExample } from './types.js';

export const MIN_TRAINING_EXAMPLES = 10;
export const MIN_VALIDATION_EXAMPLES = 1;

/** The reply priming of the chat count (the cookbook's +3 at the end; the per-message overhead comes with the encoding). */
export const REPLY_PRIMING_TOKENS = 3;

const ROLES = ['system', 'user', 'assistant', 'tool', 'function'] as const;
type Role = (typeof ROLES)[number];

const KEYS_BY_ROLE: Record<Role, readonly string[]> = {
  system: ['role', 'content', 'name'],
  user: ['role', 'content', 'name'],
  assistant: ['role', 'content', 'name', 'weight', 'function_call', 'tool_calls', 'refusal'],
  tool: ['role', 'content', 'tool_call_id'],
  function: ['role', 'content', 'name'],
};
const ALL_MESSAGE_KEYS = new Set(Object.values(KEYS_BY_ROLE).flat());

const CHAT_KEYS = ['messages', 'tools', 'functions', 'parallel_tool_calls'];
const DPO_KEYS = ['input', 'preferred_output', 'non_preferred_output'];
const DPO_INPUT_KEYS = ['messages', 'tools', 'functions', 'parallel_tool_calls'];
const COMPLETION_KEYS = ['prompt', 'completion'];

/** Message keys whose value is the message's output (trained on when the assistant message's weight is not 0). */
const BODY_KEYS = ['content', 'refusal', 'function_call', 'tool_calls'];

class LineError extends Error {}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A short, safe rendering of a user value for messages. */
function show(v: unknown): string {
  let s: string;
  try {
    s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function fail(problem: string): never {
  throw new LineError(problem);
}

function checkKeys(o: Obj, allowed: readonly string[], where: string, hint: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(`${where}has unrecognized key '${show(k)}'${hint}`);
  }
}

function checkNoSpecial(s: string, where: string): void {
  const m = SPECIAL_TOKEN_RE.exec(s);
  if (m) fail(`${where} contains an invalid token: ${m[0]}`);
}

function checkString(v: unknown, where: string, opts: { nonEmpty?: boolean } = {}): string {
  if (v === undefined) fail(`${where} is missing`);
  if (typeof v !== 'string') fail(`${where} must be a string, got ${kind(v)}`);
  if (opts.nonEmpty && v.length === 0) fail(`${where} must not be empty`);
  checkNoSpecial(v, where);
  return v;
}

function checkContent(v: unknown, where: string, required: boolean): void {
  if (v === undefined || v === null) {
    if (required) fail(`${where} is missing`);
    return;
  }
  if (typeof v === 'string') {
    if (required && v.length === 0) fail(`${where} must not be empty`);
    checkNoSpecial(v, where);
    return;
  }
  if (Array.isArray(v)) {
    if (v.length === 0 && required) fail(`${where} must not be an empty list`);
    v.forEach((part, i) => {
      const pw = `${where}[${i}]`;
      if (!isObj(part)) fail(`${pw} must be an object, got ${kind(part)}`);
      if (part.type !== 'text') {
        fail(`${pw} has type ${show(part.type)}: only "text" content parts are supported`);
      }
      checkKeys(part, ['type', 'text'], `${pw} `, '');
      checkString(part.text, `${pw}.text`);
    });
    return;
  }
  fail(`${where} must be a string or a list of content parts, got ${kind(v)}`);
}

function checkFunctionCall(v: unknown, where: string): void {
  if (!isObj(v)) fail(`${where} must be an object, got ${kind(v)}`);
  checkKeys(v, ['name', 'arguments'], `${where} `, '');
  checkString(v.name, `${where}.name`, { nonEmpty: true });
  checkString(v.arguments, `${where}.arguments`);
}

function checkToolCalls(v: unknown, where: string): void {
  if (!Array.isArray(v)) fail(`${where} must be a list, got ${kind(v)}`);
  if (v.length === 0) fail(`${where} must not be empty`);
  v.forEach((call, i) => {
    const cw = `${where}[${i}]`;
    if (!isObj(call)) fail(`${cw} must be an object, got ${kind(call)}`);
    checkKeys(call, ['id', 'type', 'function'], `${cw} `, '');
    checkString(call.id, `${cw}.id`, { nonEmpty: true });
    if (call.type !== 'function') fail(`${cw}.type must be "function"`);
    checkFunctionCall(call.function, `${cw}.function`);
  });
}

function checkTools(o: Obj, where: string): void {
  if ('tools' in o) {
    const tools = o.tools;
    if (!Array.isArray(tools)) fail(`${where}'tools' must be a list, got ${kind(tools)}`);
    tools.forEach((t, i) => {
      if (!isObj(t)) fail(`${where}tools[${i}] must be an object, got ${kind(t)}`);
      if (t.type !== 'function') fail(`${where}tools[${i}].type must be "function"`);
      if (!isObj(t.function) || typeof t.function.name !== 'string' || t.function.name === '') {
        fail(`${where}tools[${i}].function must be an object with a 'name'`);
      }
    });
  }
  if ('functions' in o) {
    const fns = o.functions;
    if (!Array.isArray(fns)) fail(`${where}'functions' must be a list, got ${kind(fns)}`);
    fns.forEach((f, i) => {
      if (!isObj(f) || typeof f.name !== 'string' || f.name === '') {
        fail(`${where}functions[${i}] must be an object with a 'name'`);
      }
    });
  }
  if ('parallel_tool_calls' in o && typeof o.parallel_tool_calls !== 'boolean') {
    fail(`${where}'parallel_tool_calls' must be true or false`);
  }
}

/** Validates one message; `where` is e.g. "messages[1]". */
function checkMessage(m: unknown, where: string, allowWeight: boolean): { role: Role; m: Obj } {
  if (!isObj(m)) fail(`${where} must be an object, got ${kind(m)}`);
  if (!('role' in m)) fail(`${where} is missing 'role'`);
  const role = m.role;
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
    fail(`${where} has unrecognized role '${show(role)}' (expected one of ${ROLES.join(', ')})`);
  }
  const r = role as Role;
  for (const k of Object.keys(m)) {
    const allowedHere = KEYS_BY_ROLE[r].includes(k) && (k !== 'weight' || allowWeight);
    if (allowedHere) continue;
    if (k === 'weight' && r === 'assistant') fail(`${where} has 'weight', which is only supported for supervised fine-tuning`);
    if (ALL_MESSAGE_KEYS.has(k)) fail(`${where} has unrecognized key '${k}' (not allowed on a ${r} message)`);
    fail(`${where} has unrecognized key '${show(k)}'`);
  }
  const hasCall = m.function_call !== undefined && m.function_call !== null;
  const hasTools = m.tool_calls !== undefined && m.tool_calls !== null;
  const hasRefusal = typeof m.refusal === 'string';
  if ('name' in m) checkString(m.name, `${where}.name`, { nonEmpty: true });
  if (r === 'assistant') {
    if ('weight' in m && m.weight !== 0 && m.weight !== 1) fail(`${where}.weight must be 0 or 1, got ${show(JSON.stringify(m.weight))}`);
    if (hasCall) checkFunctionCall(m.function_call, `${where}.function_call`);
    if (hasTools) checkToolCalls(m.tool_calls, `${where}.tool_calls`);
    if ('refusal' in m && m.refusal !== null) checkString(m.refusal, `${where}.refusal`);
    checkContent(m.content, `${where}.content`, !(hasCall || hasTools || hasRefusal));
  } else {
    checkContent(m.content, `${where}.content`, true);
  }
  if (r === 'tool') checkString(m.tool_call_id, `${where}.tool_call_id`, { nonEmpty: true });
  if (r === 'function' && !('name' in m)) fail(`${where} is missing 'name' (required on a function message)`);
  return { role: r, m };
}

function checkMessages(v: unknown, where: string, allowWeight: boolean): Obj[] {
  if (v === undefined) fail(`missing ${where}`);
  if (!Array.isArray(v)) fail(`${where} must be a list, got ${kind(v)}`);
  if (v.length === 0) fail(`${where} is empty`);
  return v.map((m, i) => checkMessage(m, `${where.replace(/'/g, '')}[${i}]`, allowWeight).m);
}

// ---------------------------------------------------------------------------------------------
// Building token sequences

/**
 * Builds one example's token sequence, stopping once it is longer than the limit (the count of an
 * over-long example is only needed up to the limit, since billing caps it there).
 */
class SequenceBuilder {
  readonly tokens: number[] = [];
  readonly mask: boolean[] = [];
  /** Tokens counted beyond the sequence itself (reply priming). */
  extra = 0;
  over = false;
  constructor(
    private readonly enc: Encoder,
    private readonly limit: number,
  ) {}

  private room(): number {
    return this.limit + 1 - this.tokens.length;
  }

  push(tok: number, trained: boolean): void {
    if (this.room() <= 0) {
      this.over = true;
      return;
    }
    this.tokens.push(tok);
    this.mask.push(trained);
  }

  text(s: string, trained: boolean): void {
    if (this.over || s.length === 0) return;
    const before = this.tokens.length;
    const n = this.enc.encodeInto(s, this.tokens, this.room());
    if (n < 0) this.over = true;
    for (let i = before; i < this.tokens.length; i++) this.mask.push(trained);
  }

  /** A value of a message key: strings as they are, other non-null values as their JSON text. */
  value(v: Json | undefined, trained: boolean): void {
    if (v === undefined || v === null) return;
    this.text(typeof v === 'string' ? v : JSON.stringify(v), trained);
  }

  /** One chat message: <|im_start|> header <|im_sep|> body <|im_end|> (see index.ts). */
  message(m: Obj, trainBody: boolean): void {
    this.push(this.enc.imStart, false);
    this.value(m.role, false);
    if ('name' in m) {
      this.push(this.enc.nameSep, false);
      this.value(m.name, false);
    }
    for (const k of Object.keys(m)) {
      if (k !== 'role' && k !== 'name' && !BODY_KEYS.includes(k)) this.value(m[k], false);
    }
    this.push(this.enc.imSep, false);
    for (const k of BODY_KEYS) if (k in m) this.value(m[k], trainBody);
    this.push(this.enc.imEnd, false);
  }

  finish(): { ex: TokenizedExample; truncated: boolean } {
    const count = this.tokens.length + this.extra;
    const truncated = this.over || count > this.limit;
    if (this.tokens.length > this.limit) {
      this.tokens.length = this.limit;
      this.mask.length = this.limit;
    }
    return {
      ex: { tokens: this.tokens, trainMask: this.mask, billableTokens: truncated ? this.limit : count },
      truncated,
    };
  }
}

function isTrainedAssistant(m: Obj): boolean {
  return m.role === 'assistant' && m.weight !== 0;
}

function chatExample(o: Obj, info: ModelInfo, enc: Encoder, model: string) {
  if (!('messages' in o)) {
    if ('prompt' in o || 'completion' in o) {
      fail(
        `has 'prompt'/'completion' but ${model} is a chat model: each line needs a 'messages' list (prompt/completion lines are for babbage-002 and davinci-002)`,
      );
    }
    if ('input' in o && 'preferred_output' in o) fail(`looks like a DPO example, but the job's method is supervised: each line needs a 'messages' list`);
    fail(`missing 'messages' list`);
  }
  checkKeys(o, CHAT_KEYS, '', ` (a chat example has 'messages' and optionally 'tools', 'functions', 'parallel_tool_calls')`);
  const messages = checkMessages(o.messages, `'messages'`, true);
  checkTools(o, '');
  if (!messages.some((m) => m.role === 'assistant')) fail(`example has no assistant message`);
  const b = new SequenceBuilder(enc, info.tokenLimit);
  for (const m of messages) b.message(m, isTrainedAssistant(m));
  b.extra = REPLY_PRIMING_TOKENS;
  return b.finish();
}

function dpoExample(o: Obj, info: ModelInfo, enc: Encoder) {
  if (!('input' in o)) {
    if ('messages' in o) fail(`has 'messages' but the job's method is dpo: each line needs 'input', 'preferred_output' and 'non_preferred_output'`);
    fail(`missing 'input'`);
  }
  checkKeys(o, DPO_KEYS, '', ` (a DPO example has 'input', 'preferred_output' and 'non_preferred_output')`);
  const input = o.input;
  if (!isObj(input)) fail(`'input' must be an object, got ${kind(input)}`);
  checkKeys(input, DPO_INPUT_KEYS, `'input' `, '');
  const messages = checkMessages(input.messages, `'input.messages'`, false);
  checkTools(input, `input.`);
  const outputs: Obj[][] = [];
  for (const key of ['preferred_output', 'non_preferred_output'] as const) {
    const out = checkMessages(o[key], `'${key}'`, false);
    out.forEach((m, i) => {
      if (m.role !== 'assistant') fail(`${key}[${i}] must be an assistant message, got role '${show(m.role)}'`);
    });
    outputs.push(out);
  }
  const b = new SequenceBuilder(enc, info.tokenLimit);
  for (const m of messages) b.message(m, false);
  for (const m of outputs[0]) b.message(m, true);
  // The non-preferred output is processed (and billed) too, but it is not part of the trained sequence.
  const rejected = new SequenceBuilder(enc, info.tokenLimit);
  for (const m of outputs[1]) rejected.message(m, false);
  b.extra = REPLY_PRIMING_TOKENS + (rejected.over ? info.tokenLimit + 1 : rejected.tokens.length);
  return b.finish();
}

function completionExample(o: Obj, info: ModelInfo, enc: Encoder, model: string) {
  if ('messages' in o) {
    fail(`has 'messages' but ${model} takes prompt/completion lines: {"prompt": "...", "completion": "..."}`);
  }
  checkKeys(o, COMPLETION_KEYS, '', ` (a ${model} example has only 'prompt' and 'completion')`);
  if (!('prompt' in o)) fail(`missing 'prompt'`);
  if (!('completion' in o)) fail(`missing 'completion'`);
  const prompt = checkString(o.prompt, `'prompt'`);
  const completion = checkString(o.completion, `'completion'`, { nonEmpty: true });
  const b = new SequenceBuilder(enc, info.tokenLimit);
  b.text(prompt, false);
  b.text(completion, true);
  return b.finish();
}

// ---------------------------------------------------------------------------------------------

const fileWord = (role: PrepareOptions['role']) => (role === 'training_file' ? 'training' : 'validation');

/**
 * The work of prepareDataset as a generator that yields now and then (every few hundred lines or
 * large line), so that an async caller can give the event loop a turn on big files.
 */
export function* prepareSteps(content: string, opts: PrepareOptions): Generator<void, DatasetResult, void> {
  const info = typeof opts?.model === 'string' ? modelInfo(opts.model) : undefined;
  if (!info) return { ok: false, code: 'model_not_available', message: modelNotAvailableMessage(String(opts?.model)) };
  const method = opts.method ?? 'supervised';
  if (!info.methods.includes(method)) {
    return { ok: false, code: 'model_not_available', message: `Model ${opts.model} does not support the ${method} method.` };
  }
  const role = opts.role === 'validation_file' ? 'validation_file' : 'training_file';
  const code = role === 'training_file' ? 'invalid_training_file' : 'invalid_validation_file';
  if (typeof content !== 'string') return { ok: false, code, message: 'Invalid file format. The file is not text.' };
  const enc = getEncoder(info.encoding);

  const examples: TokenizedExample[] = [];
  const truncatedLines: number[] = [];
  let pos = content.charCodeAt(0) === 0xfeff ? 1 : 0;
  let lineNo = 0;
  let work = 0;
  while (pos < content.length) {
    let end = content.indexOf('\n', pos);
    if (end < 0) end = content.length;
    lineNo += 1;
    let line = content.slice(pos, end);
    pos = end + 1;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return {
        ok: false,
        code,
        message: `Invalid file format. Line ${lineNo}: not valid JSON (${why.length > 120 ? why.slice(0, 117) + '...' : why}). Every line must be one JSON object.`,
      };
    }
    try {
      if (!isObj(parsed)) fail(`expected a JSON object, got ${kind(parsed)}`);
      const built =
        info.format === 'completion'
          ? completionExample(parsed, info, enc, opts.model)
          : method === 'dpo'
            ? dpoExample(parsed, info, enc)
            : chatExample(parsed, info, enc, opts.model);
      examples.push(built.ex);
      if (built.truncated) truncatedLines.push(lineNo);
      work += 1 + (line.length >> 12);
    } catch (err) {
      if (err instanceof LineError) return { ok: false, code, message: `Invalid file format. Line ${lineNo}: ${err.message}` };
      return { ok: false, code, message: `Invalid file format. Line ${lineNo} could not be read.` };
    }
    if (work >= 256) {
      work = 0;
      yield;
    }
  }

  const min = role === 'training_file' ? MIN_TRAINING_EXAMPLES : MIN_VALIDATION_EXAMPLES;
  if (examples.length < min) {
    const File = role === 'training_file' ? 'Training' : 'Validation';
    return {
      ok: false,
      code: 'invalid_n_examples',
      message: `${File} file has ${examples.length} example(s), but must have at least ${min} example${min === 1 ? '' : 's'}`,
    };
  }

  const warnings: DatasetWarning[] = [];
  if (truncatedLines.length > 0) {
    const n = truncatedLines.length;
    const shown = truncatedLines.slice(0, 5).join(', ') + (n > 5 ? ', ...' : '');
    warnings.push({
      message:
        `${n} example${n === 1 ? '' : 's'} in the ${fileWord(role)} file ${n === 1 ? 'was' : 'were'} truncated to ` +
        `${info.tokenLimit} tokens, the per-example limit for ${opts.model} (line${n === 1 ? '' : 's'} ${shown})`,
    });
  }
  return { ok: true, examples, warnings };
}

export function prepareDataset(content: string, opts: PrepareOptions): DatasetResult {
  const it = prepareSteps(content, opts);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
  }
}

/** Same as prepareDataset, giving the event loop a turn every few hundred lines. */
export async function prepareDatasetAsync(content: string, opts: PrepareOptions): Promise<DatasetResult> {
  const it = prepareSteps(content, opts);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
