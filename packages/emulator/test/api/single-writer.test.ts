/**
 * One writer per local database: a second local fine-tuning service on a file that one already holds refuses to
 * start (one line naming the file and what to do, exit 1) and the holder is unaffected; the hold ends with the
 * holder, SIGKILL included; `npm start` and `npm run emulator` default to different files, so they run side by
 * side. The services are real child processes (the commands' own entry files) on temp files.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type OpenAI from 'openai';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { LOCAL_API_KEY, loadConfig } from '../../src/config.js';
import { startServer } from '../../src/app.js';
import { createEmulator, DatabaseInUseError } from '../../src/emulator/index.js';
import {
  restEventsOf,
  type SpawnedEmulator,
  spawnEmulator,
  trainingJsonl,
  uploadTraining,
  waitForStatus,
} from '../helpers/emulator.js';
import { ROOT } from '../helpers/processes.js';

const EMULATOR_ENTRY = resolve(ROOT, 'src/emulator/main.ts');
const SERVER_ENTRY = resolve(ROOT, 'src/server.ts');
// By URL, so that the children can run in another working directory (the default-file test).
const TSX = pathToFileURL(resolve(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

/** The environment of a child: this one's, without anything that would choose a backend or a database. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const name of ['EMULATOR_DB', 'OPENAI_BASE_URL', 'OPENAI_API_KEY', 'REDIS_URL', 'AUTH_MODE', 'GATEWAY_TOKENS']) {
    delete base[name];
  }
  return { ...base, PORT: '0', HOST: '127.0.0.1', EMULATOR_STEP_MS: '40', ...env };
}

const children: ChildProcess[] = [];

/** Runs `entry` to its end (killing it after `timeoutMs`, which counts as "it started"): exit code and output. */
function runToExit(entry: string, env: Record<string, string>, timeoutMs = 20_000) {
  const child = spawn(process.execPath, ['--import', TSX, entry], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  return new Promise<{ code: number | null; output: string; killed: boolean }>((r) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    // 'close', not 'exit': the output is complete only once the pipes are.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      r({ code, output, killed: signal === 'SIGKILL' });
    });
  });
}

/** Starts `entry` in `cwd` and resolves once `ready` matches its output (its start-up line). */
function startIn(cwd: string, entry: string, env: Record<string, string>, ready: RegExp) {
  const child = spawn(process.execPath, ['--import', TSX, entry], { cwd, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
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

const JOB = {
  model: 'gpt-4o-mini-2024-07-18',
  seed: 7,
  method: { type: 'supervised' as const, supervised: { hyperparameters: { n_epochs: 2, batch_size: 1 } } },
};

/** The job's metrics steps, in order: must be 1..total_steps, each once. */
async function metricSteps(client: OpenAI, jobId: string) {
  const steps = (await restEventsOf(client, jobId)).filter((e) => e.type === 'metrics').map((e) => e.data as { step: number; total_steps: number });
  return { steps: steps.map((s) => s.step), total: steps[0]?.total_steps ?? 0 };
}

/** What the refusal must say: the file, that another local service holds it, and what to do. */
function expectRefusal(result: { code: number | null; output: string; killed: boolean }, dbPath: string) {
  expect(result.killed, `the second service started instead of refusing:\n${result.output}`).toBe(false);
  expect(result.code).toBe(1);
  const lines = result.output.trim().split('\n');
  expect(lines, result.output).toHaveLength(1);
  expect(lines[0]).toBe(`Cannot start: ${new DatabaseInUseError(dbPath).message}`);
  expect(lines[0]).toContain(dbPath);
  expect(lines[0]).toMatch(/in use by another local fine-tuning service/);
  expect(lines[0]).toMatch(/stop that one, or set EMULATOR_DB to another file/);
}

describe('one local service per database file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'emu-single-writer-'));
  let holders: SpawnedEmulator[] = [];
  afterEach(async () => {
    for (const h of holders) await h.kill('SIGKILL');
    holders = [];
  });
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('a second standalone service on the same file exits 1 with the message; the first keeps serving and its running job succeeds', async () => {
    const dbPath = join(dir, 'shared.db');
    const first = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(first);
    const client = first.client('sk-single-writer');
    const job = await client.fineTuning.jobs.create({ training_file: await uploadTraining(client, trainingJsonl(20)), ...JOB });
    await waitForStatus(client, job.id, ['running']);

    const second = await runToExit(EMULATOR_ENTRY, { EMULATOR_DB: dbPath });
    expectRefusal(second, dbPath);

    const done = await waitForStatus(client, job.id, ['succeeded', 'failed', 'cancelled'], 60_000);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    // Every step recorded once. (Two services on one file both drove the job: their steps raced, and the one that
    // lost a race failed the job with "UNIQUE constraint failed: step_metrics.job_id, step_metrics.step".)
    const { steps, total } = await metricSteps(client, job.id);
    expect(total).toBe(40);
    expect(steps).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(first.child.exitCode).toBeNull();
  });

  it('after a SIGKILL of the holder a new service starts on the file, finishes the job, and holds the file in turn', async () => {
    const dbPath = join(dir, 'killed.db');
    const first = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(first);
    let client = first.client('sk-single-writer');
    const job = await client.fineTuning.jobs.create({ training_file: await uploadTraining(client, trainingJsonl(20)), ...JOB });
    await waitForStatus(client, job.id, ['running']);
    expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL');

    const next = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(next);
    client = next.client('sk-single-writer');
    const done = await waitForStatus(client, job.id, ['succeeded', 'failed', 'cancelled'], 60_000);
    expect(done.status).toBe('succeeded');
    const { steps, total } = await metricSteps(client, job.id);
    expect(steps).toEqual(Array.from({ length: total }, (_, i) => i + 1));

    expectRefusal(await runToExit(EMULATOR_ENTRY, { EMULATOR_DB: dbPath }), dbPath);
  });

  it("`npm start`'s entry with the embedded service on a file held by a standalone service exits 1 with one line, and the other way round", async () => {
    const dbPath = join(dir, 'gateway.db');
    const standalone = await spawnEmulator({ dbPath, stepMs: 40 });
    holders.push(standalone);
    expectRefusal(await runToExit(SERVER_ENTRY, { EMULATOR_DB: dbPath, LOG_LEVEL: 'info' }), dbPath);
    expect((await standalone.client().files.list()).data).toEqual([]);
    await standalone.kill('SIGKILL');

    // The gateway (in this process) holds the file now: the standalone service is refused.
    const gateway = await startServer(
      loadConfig({ PORT: '0', HOST: '127.0.0.1', EMULATOR_DB: dbPath, EMULATOR_STEP_MS: '40', LOG_LEVEL: 'silent' }),
    );
    try {
      expectRefusal(await runToExit(EMULATOR_ENTRY, { EMULATOR_DB: dbPath }), dbPath);
      const res = await fetch(`${gateway.url}/v1/files`, { headers: { authorization: `Bearer ${LOCAL_API_KEY}` } });
      expect(res.status).toBe(200);
    } finally {
      await gateway.close();
    }
    // Closing the gateway let the file go.
    holders.push(await spawnEmulator({ dbPath, stepMs: 40 }));
  });

  it('`npm start` and `npm run emulator` with no EMULATOR_DB use different files and run side by side', async () => {
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    const emulator = await startIn(cwd, EMULATOR_ENTRY, {}, /listening on (http:\/\/[^\s/]+)\/v1 \(db ([^,]+),/);
    const gateway = await startIn(cwd, SERVER_ENTRY, {}, /GraphQL API at (http:\/\/[^\s/]+)\/graphql/);
    expect(emulator.match[2]).toBe('./data/emulator.db');
    expect(existsSync(join(cwd, 'data/emulator.db'))).toBe(true);
    expect(existsSync(join(cwd, 'data/embedded.db'))).toBe(true);

    // Two databases: a file uploaded to one service is not in the other.
    const upload = async (base: string, name: string) => {
      const form = new FormData();
      form.append('purpose', 'user_data');
      form.append('file', new Blob(['notes']), name);
      const res = await fetch(`${base}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${LOCAL_API_KEY}` }, body: form });
      expect(res.status, await res.clone().text()).toBe(200);
    };
    const names = async (base: string) => {
      const res = await fetch(`${base}/v1/files`, { headers: { authorization: `Bearer ${LOCAL_API_KEY}` } });
      return ((await res.json()) as { data: { filename: string }[] }).data.map((f) => f.filename);
    };
    await upload(emulator.match[1]!, 'standalone.txt');
    await upload(gateway.match[1]!, 'embedded.txt');
    expect(await names(emulator.match[1]!)).toEqual(['standalone.txt']);
    expect(await names(gateway.match[1]!)).toEqual(['embedded.txt']);
  });

  it('in one process: a second service on a held file throws DatabaseInUseError, the first is unaffected, and close() lets the file go; :memory: is unaffected', async () => {
    const dbPath = join(dir, 'in-process.db');
    const one = createEmulator({ dbPath, stepMs: 40 });
    try {
      expect(() => createEmulator({ dbPath, stepMs: 40 })).toThrow(DatabaseInUseError);
      const res = await one.fetch(new Request('http://local/v1/files', { headers: { authorization: `Bearer ${LOCAL_API_KEY}` } }));
      expect(res.status).toBe(200);
    } finally {
      await one.close();
    }
    const again = createEmulator({ dbPath, stepMs: 40 });
    await again.close();

    const m1 = createEmulator({ dbPath: ':memory:' });
    const m2 = createEmulator({ dbPath: ':memory:' });
    await m1.close();
    await m2.close();
  });
});
