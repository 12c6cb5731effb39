/**
 * The local fine-tuning service's test kit (also the gateway's, as `@finetune-graphql/emulator/testing`):
 *  - startEmulator(): the service in this process behind a real node http server on 127.0.0.1 (restartable on
 *    the same port and database), every request it saw recorded;
 *  - spawnEmulator(): the standalone service (`npm run emulator`'s entry) as a child process;
 *  - runEntry()/startEntry(): any TypeScript entry file as a child process, to its end or to its start-up line;
 *  - waits, REST helpers, JSONL fixtures (valid chat examples with varied content, and bad variants).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import OpenAI, { toFile } from 'openai';
import { newEventId } from '../../src/ids.js';
import { createEmulator, DatabaseInUseError, type Emulator, type EmulatorOptions, type RequestInfo, requestListener } from '../../src/index.js';

/** This package's directory. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The standalone service's entry file (`npm run emulator`). */
export const EMULATOR_ENTRY = resolve(PACKAGE_ROOT, 'src/main.ts');
/** tsx's loader, by URL, so that children can run in any working directory. */
export const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export const DEFAULT_KEY = 'sk-test-alice';

function sdkClient(baseURL: string, apiKey: string): OpenAI {
  return new OpenAI({ apiKey, baseURL, maxRetries: 0, timeout: 20_000 });
}

/** A request the service answered (or dropped), with the time its hook ran. */
export type TimedRequest = RequestInfo & { at: number };

export interface RunningEmulator {
  url: string;
  /** url + '/v1', what the SDK wants. */
  baseURL: string;
  port: number;
  /** The service now (restart() replaces it). */
  readonly emulator: Emulator;
  /** Every request the service saw, in order (fed by its onRequest hook), with the time it was reported. */
  requests: TimedRequest[];
  /** Requests of one route ("POST /v1/fine_tuning/jobs"). */
  count(route: string): number;
  client(key?: string): OpenAI;
  /** Closes the listener (dropping open connections) and the service; a database file stays. */
  stop(): Promise<void>;
  /** Starts the service again with the same options, on the same port (for a database file: the same data). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The service on 127.0.0.1 (port 0 unless given), by default in memory with 10 ms steps, started (its scheduler
 * running) unless `autoStart` is false.
 */
export async function startEmulator(
  opts: Omit<EmulatorOptions, 'onRequest'> & {
    autoStart?: boolean;
    port?: number;
    /** The key of client() without an argument (DEFAULT_KEY). */
    key?: string;
    /** Called for each request once it is recorded. */
    onRequest?: (r: TimedRequest) => void;
  } = {},
): Promise<RunningEmulator> {
  const requests: TimedRequest[] = [];
  const { autoStart = true, onRequest, port: wantedPort = 0, key = DEFAULT_KEY, ...rest } = opts;
  let emulator: Emulator;
  let server: Server;
  let port = wantedPort;
  let running = false;
  const start = async () => {
    emulator = createEmulator({
      dbPath: ':memory:',
      stepMs: 10,
      ...rest,
      onRequest: (info) => {
        const r = { ...info, at: Date.now() };
        requests.push(r);
        onRequest?.(r);
      },
    });
    server = createServer(requestListener(emulator));
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolveListen());
    });
    port = (server.address() as AddressInfo).port;
    if (autoStart) emulator.start();
    running = true;
  };
  const stop = async () => {
    if (!running) return;
    running = false;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await emulator.close();
  };
  await start();
  const url = `http://127.0.0.1:${port}`;
  const baseURL = `${url}/v1`;
  return {
    url,
    baseURL,
    port,
    get emulator() {
      return emulator;
    },
    requests,
    count: (route: string) => requests.filter((r) => r.route === route).length,
    client: (k = key) => sdkClient(baseURL, k),
    stop,
    restart: start,
    close: stop,
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

/** Start `node --import tsx src/main.ts` as a child process and wait for its start-up line. */
export async function spawnEmulator(opts: { dbPath: string; stepMs: number; port?: number }): Promise<SpawnedEmulator> {
  // `node --import tsx`, not the tsx CLI: the CLI runs the script in a second process, which a SIGKILL
  // of the CLI would leave running. Here the signal reaches the service itself.
  const child = spawn(process.execPath, ['--import', TSX_LOADER, EMULATOR_ENTRY], {
    cwd: PACKAGE_ROOT,
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
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
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

// ------------------------------------------------------------------------------------------ entry files as children

/** Children started by runEntry/startEntry; killEntries() ends those still running (an afterAll). */
const children: ChildProcess[] = [];

/** The environment of a child: this one's, without anything that would choose a backend or a database. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const name of ['EMULATOR_DB', 'OPENAI_BASE_URL', 'OPENAI_API_KEY', 'REDIS_URL', 'AUTH_MODE', 'GATEWAY_TOKENS']) {
    delete base[name];
  }
  return { ...base, PORT: '0', HOST: '127.0.0.1', EMULATOR_STEP_MS: '40', ...env };
}

export interface EntryResult {
  code: number | null;
  output: string;
  /** True when it was still running after the time limit (it started), and was killed. */
  killed: boolean;
}

/** Runs the TypeScript entry file `entry` to its end (killing it after `timeoutMs`, which counts as "it started"). */
export function runEntry(entry: string, env: Record<string, string>, timeoutMs = 20_000): Promise<EntryResult> {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, entry], { cwd: PACKAGE_ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  return new Promise<EntryResult>((r) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    // 'close', not 'exit': the output is complete only once the pipes are.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      r({ code, output, killed: signal === 'SIGKILL' });
    });
  });
}

/** Starts `entry` in `cwd` and resolves once `ready` matches its output (its start-up line). */
export function startEntry(cwd: string, entry: string, env: Record<string, string>, ready: RegExp) {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, entry], { cwd, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  return new Promise<{ match: RegExpExecArray; output: () => string }>((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`${entry} did not start:\n${output}`)), 30_000);
    const onData = (c: Buffer) => {
      output += c.toString();
      const m = ready.exec(output);
      if (m) {
        clearTimeout(timer);
        resolveStart({ match: m, output: () => output });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${entry} exited (${code ?? signal}) before start-up:\n${output}`));
    });
  });
}

/** SIGKILLs every child of runEntry/startEntry still running. */
export function killEntries(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/**
 * Throws unless `result` is a refusal to open `dbPath`: exit 1, one line naming the file, that another local
 * service holds it, and what to do.
 */
export function assertDatabaseRefusal(result: EntryResult, dbPath: string): void {
  const problems: string[] = [];
  if (result.killed) problems.push('it started instead of refusing');
  if (result.code !== 1) problems.push(`exit code ${result.code} (wanted 1)`);
  const lines = result.output.trim().split('\n');
  if (lines.length !== 1) problems.push(`${lines.length} lines of output (wanted 1)`);
  if (lines[0] !== `Cannot start: ${new DatabaseInUseError(dbPath).message}`) problems.push('not the DatabaseInUseError line');
  if (!lines[0].includes(dbPath)) problems.push('the file is not named');
  if (!/in use by another local fine-tuning service/.test(lines[0])) problems.push('the holder is not named');
  if (!/stop that one, or set EMULATOR_DB to another file/.test(lines[0])) problems.push('no advice');
  if (problems.length) throw new Error(`not a refusal of ${dbPath}: ${problems.join('; ')}:\n${result.output}`);
}

/**
 * Writes `count` history events into a job (Store.insertEvent, what the scheduler writes for each step), in one
 * transaction, as the job's newest events; in milliseconds where the service would take `count` steps.
 */
export function seedEvents(emulator: Emulator, jobId: string, count: number): void {
  const { store } = emulator;
  const now = Math.floor(Date.now() / 1000);
  store.db.transaction(() => {
    for (let i = 1; i <= count; i++) {
      store.insertEvent({
        id: newEventId(),
        job_id: jobId,
        created_at: now,
        level: 'info',
        message: `Seeded history event ${i}/${count}`,
        type: 'message',
        data: {},
      });
    }
  })();
}

/** Poll `fn` every `stepMs` until it returns a truthy value; throw after `timeoutMs`, or at once if `fn` throws. */
export async function waitUntil<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs: number,
  stepMs: number,
): Promise<T> {
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
export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 20_000,
  intervalMs = 10,
): Promise<T> {
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
export async function waitForStatus(client: OpenAI, jobId: string, statuses: string[], timeoutMs = 30_000): Promise<OpenAI.FineTuning.Jobs.FineTuningJob> {
  return waitFor(
    async () => {
      const job = await client.fineTuning.jobs.retrieve(jobId);
      return statuses.includes(job.status) ? job : undefined;
    },
    timeoutMs,
    20,
  );
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
      prompt:
        e.messages
          .filter((m) => m.role === 'user')
          .map((m) => m.content)
          .join('\n') + '\n\n###\n\n',
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
