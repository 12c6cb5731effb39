/**
 * Test helpers for the local fine-tuning service:
 *  - startEmulator(): in-process service behind a real node http server on 127.0.0.1:0;
 *  - spawnEmulator(): the standalone service as a child process (for the crash test);
 *  - JSONL fixtures: valid chat examples with varied content, and bad variants.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getRequestListener } from '@hono/node-server';
import OpenAI, { toFile } from 'openai';
import { createEmulator, type Emulator, type EmulatorOptions, type RequestInfo } from '../../src/emulator/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const DEFAULT_KEY = 'sk-test-alice';

function sdkClient(baseURL: string, apiKey: string): OpenAI {
  return new OpenAI({ apiKey, baseURL, maxRetries: 0, timeout: 20_000 });
}

export interface RunningEmulator {
  url: string;
  /** url + '/v1', what the SDK wants. */
  baseURL: string;
  emulator: Emulator;
  /** Every request the service saw, in order (fed by its onRequest hook). */
  requests: RequestInfo[];
  client(key?: string): OpenAI;
  close(): Promise<void>;
}

export async function startEmulator(
  opts: EmulatorOptions & { autoStart?: boolean } = {},
): Promise<RunningEmulator> {
  const requests: RequestInfo[] = [];
  const { autoStart = true, onRequest, ...rest } = opts;
  const emulator = createEmulator({
    dbPath: ':memory:',
    stepMs: 10,
    ...rest,
    onRequest: (info) => {
      requests.push(info);
      onRequest?.(info);
    },
  });
  const server: Server = createServer(getRequestListener(emulator.fetch));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  if (autoStart) emulator.start();
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const baseURL = `${url}/v1`;
  return {
    url,
    baseURL,
    emulator,
    requests,
    client: (key = DEFAULT_KEY) => sdkClient(baseURL, key),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await emulator.close();
    },
  };
}

export interface SpawnedEmulator {
  url: string;
  baseURL: string;
  child: ChildProcess;
  /** Everything the process wrote to stdout/stderr. */
  output(): string;
  client(key?: string): OpenAI;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `node --import tsx src/emulator/main.ts` as a child process and wait for its start-up line. */
export async function spawnEmulator(opts: { dbPath: string; stepMs: number; port?: number }): Promise<SpawnedEmulator> {
  // `node --import tsx`, not the tsx CLI: the CLI runs the script in a second process, which a SIGKILL
  // of the CLI would leave running. Here the signal reaches the service itself.
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, 'src/emulator/main.ts')], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(opts.port ?? 0),
      HOST: '127.0.0.1',
      EMULATOR_DB: opts.dbPath,
      EMULATOR_STEP_MS: String(opts.stepMs),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`emulator did not start:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening on (http:\/\/[^\s/]+)\/v1/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`emulator exited (${code ?? signal}) before start-up:\n${output}`));
    });
  });
  const baseURL = `${url}/v1`;
  return {
    url,
    baseURL,
    child,
    output: () => output,
    client: (key = DEFAULT_KEY) => sdkClient(baseURL, key),
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Poll `fn` every `stepMs` until it returns a truthy value; throw after `timeoutMs`, or at once if `fn` throws. */
export async function waitUntil<T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs: number, stepMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Every event of a job from the REST API (the SDK walking all pages), oldest first. */
export async function restEventsOf(client: OpenAI, jobId: string) {
  const all = [];
  for await (const e of client.fineTuning.jobs.listEvents(jobId, { limit: 100 })) all.push(e);
  return all.reverse();
}

/** Uploads `examples` chat examples and creates a job on them with `nEpochs` epochs; its id. */
export async function createTrainingJob(client: OpenAI, nEpochs: number, examples: number): Promise<string> {
  const file = await uploadTraining(client, trainingJsonl(examples));
  const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: file, hyperparameters: { n_epochs: nEpochs } });
  return job.id;
}

/** Poll `fn` until it returns a truthy value (or throw after `timeoutMs`). */
export async function waitFor<T>(fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 20_000, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`waitFor timed out after ${timeoutMs} ms${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Wait until a job reaches one of `statuses` (polling through the SDK). */
export async function waitForStatus(
  client: OpenAI,
  jobId: string,
  statuses: string[],
  timeoutMs = 30_000,
): Promise<OpenAI.FineTuning.Jobs.FineTuningJob> {
  return waitFor(async () => {
    const job = await client.fineTuning.jobs.retrieve(jobId);
    return statuses.includes(job.status) ? job : undefined;
  }, timeoutMs, 20);
}

// ------------------------------------------------------------------------------------------ fixtures

export type ChatMessage = { role: string; content?: string | null; [k: string]: unknown };
export interface ChatExample {
  messages: ChatMessage[];
  [k: string]: unknown;
}

const SUBJECTS = [
  ['France', 'Paris'],
  ['Japan', 'Tokyo'],
  ['Italy', 'Rome'],
  ['Canada', 'Ottawa'],
  ['Kenya', 'Nairobi'],
  ['Peru', 'Lima'],
  ['Norway', 'Oslo'],
  ['Egypt', 'Cairo'],
  ['Chile', 'Santiago'],
  ['Spain', 'Madrid'],
  ['Ghana', 'Accra'],
  ['Nepal', 'Kathmandu'],
];
const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'black', 'white'];
const ANIMALS = ['cat', 'dog', 'owl', 'fox', 'horse', 'rabbit', 'whale', 'eagle'];

/** Deterministic, varied chat examples (capital cities, arithmetic, colours), some with a system message. */
export function chatExamples(count: number, offset = 0): ChatExample[] {
  const out: ChatExample[] = [];
  for (let i = offset; i < offset + count; i++) {
    const messages: ChatMessage[] = [];
    if (i % 3 === 0) messages.push({ role: 'system', content: 'Marv is a factual chatbot that is also sarcastic.' });
    switch (i % 3) {
      case 0: {
        const [country, capital] = SUBJECTS[i % SUBJECTS.length];
        messages.push({ role: 'user', content: `What's the capital of ${country}?` });
        messages.push({ role: 'assistant', content: `The capital of ${country} is ${capital}, as everyone knows.` });
        break;
      }
      case 1: {
        const a = (i * 7) % 50;
        const b = (i * 11) % 30;
        messages.push({ role: 'user', content: `How much is ${a} plus ${b}?` });
        messages.push({ role: 'assistant', content: `${a} plus ${b} is ${a + b}. Maths is fun.` });
        break;
      }
      default: {
        const colour = COLOURS[i % COLOURS.length];
        const animal = ANIMALS[(i * 3) % ANIMALS.length];
        messages.push({ role: 'user', content: `Describe a ${colour} ${animal} in one sentence.` });
        messages.push({ role: 'assistant', content: `A ${colour} ${animal} is a ${animal} whose fur or feathers are ${colour}.` });
      }
    }
    out.push({ messages });
  }
  return out;
}

export const toJsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

/** A valid chat training file of `count` examples. */
export const trainingJsonl = (count = 20, offset = 0) => toJsonl(chatExamples(count, offset));

/** prompt/completion lines, for babbage-002 and davinci-002. */
export function completionJsonl(count = 12): string {
  return toJsonl(
    chatExamples(count).map((e) => ({
      prompt: e.messages.filter((m) => m.role === 'user').map((m) => m.content).join('\n') + '\n\n###\n\n',
      completion: ' ' + e.messages.find((m) => m.role === 'assistant')!.content + '\n',
    })),
  );
}

/** Preference (DPO) examples: a question, a preferred and a non-preferred answer. */
export function dpoJsonl(count = 12): string {
  return toJsonl(
    chatExamples(count).map((e) => {
      const answer = e.messages.find((m) => m.role === 'assistant')!.content as string;
      return {
        input: { messages: e.messages.filter((m) => m.role !== 'assistant') },
        preferred_output: [{ role: 'assistant', content: answer }],
        non_preferred_output: [{ role: 'assistant', content: 'I would rather not say.' }],
      };
    }),
  );
}

/** Bad training files, each with exactly one defect (the others are valid examples). */
export const badJsonl = {
  /** Line 3 is not JSON. */
  notJson: () => {
    const lines = trainingJsonl(12).trim().split('\n');
    lines[2] = '{"messages": [{"role": "user", "content": "unterminated';
    return lines.join('\n') + '\n';
  },
  /** Example 4 has no `messages`. */
  missingMessages: () => {
    const rows: unknown[] = chatExamples(12);
    rows[3] = { conversation: [{ role: 'user', content: 'hi' }] };
    return toJsonl(rows);
  },
  /** Example 2 has a message with role "robot". */
  badRole: () => {
    const rows = chatExamples(12);
    rows[1].messages[0] = { role: 'robot', content: 'beep' };
    return toJsonl(rows);
  },
  /** Example 5 has a message with a key that is not allowed. */
  extraKey: () => {
    const rows = chatExamples(12);
    rows[4].messages[0] = { ...rows[4].messages[0], mood: 'cheerful' };
    return toJsonl(rows);
  },
  /** Example 6 has no assistant message. */
  noAssistant: () => {
    const rows = chatExamples(12);
    rows[5].messages = rows[5].messages.filter((m) => m.role !== 'assistant');
    return toJsonl(rows);
  },
  /** Only `n` (< 10) valid examples. */
  tooFew: (n = 5) => trainingJsonl(n),
  /** Valid, but example 1 is longer than `tokens` tokens. */
  overlong: (words: number) => {
    const rows = chatExamples(12);
    rows[0].messages.push({ role: 'user', content: 'Tell me more.' });
    rows[0].messages.push({ role: 'assistant', content: Array.from({ length: words }, (_, i) => `word${i % 97}`).join(' ') });
    return toJsonl(rows);
  },
};

/** An uploadable file for the SDK. */
export const jsonlFile = (content: string, name = 'train.jsonl') => toFile(Buffer.from(content), name);

/** Upload a training file through the SDK and return its id. */
export async function uploadTraining(client: OpenAI, content = trainingJsonl(20), name = 'train.jsonl'): Promise<string> {
  const file = await client.files.create({ file: await jsonlFile(content, name), purpose: 'fine-tune' });
  return file.id;
}

/** Await a promise that must fail with an OpenAI API error; returns the error for further checks. */
export async function expectApiError(
  promise: Promise<unknown>,
  expected: { status: number; param?: string | null; code?: string | null; message?: RegExp },
): Promise<InstanceType<typeof OpenAI.APIError>> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof OpenAI.APIError)) {
    throw new Error(`expected an API error ${expected.status}, got ${caught === undefined ? 'success' : String(caught)}`);
  }
  const err = caught;
  const problems: string[] = [];
  if (err.status !== expected.status) problems.push(`status ${err.status} (wanted ${expected.status})`);
  if (expected.param !== undefined && err.param !== expected.param) problems.push(`param ${err.param} (wanted ${expected.param})`);
  if (expected.code !== undefined && err.code !== expected.code) problems.push(`code ${err.code} (wanted ${expected.code})`);
  if (expected.message && !expected.message.test(String((err.error as { message?: string } | undefined)?.message))) {
    problems.push(`message ${JSON.stringify((err.error as { message?: string } | undefined)?.message)} (wanted ${expected.message})`);
  }
  if (problems.length) throw new Error(`unexpected API error: ${problems.join(', ')}: ${err.message}`);
  return err;
}
