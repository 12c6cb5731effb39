/**
 * Helpers for the cluster-mode tests: one Redis (127.0.0.1:6379, a unique key prefix per test file, deleted at the
 * end), one upstream (the local fine-tuning service in this process, every request timed by its onRequest hook),
 * and several instances of the GraphQL API, as child processes (`node --import tsx src/server.ts`, so SIGKILL
 * really kills one) or in this process (startServer).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { createClient, type Client } from 'graphql-ws';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { startServer, type RunningServer } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { liveOptionsFromEnv } from '../../src/live/index.js';
import type { EmulatorOptions } from '@finetune-graphql/emulator';
import { registerEnvSecrets } from '../security/leak-state.js';
import {
  createTrainingJob,
  restEventsOf,
  type RunningEmulator,
  startEmulator,
  type TimedRequest,
  waitUntil as sharedWaitUntil,
} from '@finetune-graphql/emulator/testing';
import { ROOT, spawnServerProcess } from '../helpers/processes.js';
import { collectWs } from '../helpers/subscriptions.js';

export { ROOT };
export type { Collected } from '../helpers/subscriptions.js';
/** Subscribes over graphql-ws and collects the `field` of each payload. */
export const collect = collectWs;

export const KEY = 'sk-cluster-test-key-0123456789abcdef';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- Redis ---------------------------------------------------------------------------------------------------------

/** A key prefix of its own for one test file: `ftgql:test:<random>:`. */
export function newPrefix(): string {
  return `ftgql:test:${randomBytes(6).toString('hex')}:`;
}

export function redisClient(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
}

/** Every key under `prefix`, with its value (strings, hashes, sorted sets), for inspection. */
export async function dumpPrefix(redis: Redis, prefix: string): Promise<{ key: string; value: string }[]> {
  const out: { key: string; value: string }[] = [];
  for (const key of await scanKeys(redis, prefix)) {
    const type = await redis.type(key);
    let value = '';
    if (type === 'string') value = (await redis.get(key)) ?? '';
    else if (type === 'hash') value = JSON.stringify(await redis.hgetall(key));
    else if (type === 'zset') value = JSON.stringify(await redis.zrange(key, 0, -1, 'WITHSCORES'));
    else value = `<${type}>`;
    out.push({ key, value });
  }
  return out;
}

export async function scanKeys(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  const keys = await scanKeys(redis, prefix);
  if (keys.length) await redis.del(...keys);
}

// ---- upstream ------------------------------------------------------------------------------------------------------

export type { TimedRequest };

export interface Upstream extends RunningEmulator {
  /** Every request the service answered (its `requests`). */
  timed: TimedRequest[];
}

/** The local fine-tuning service with small step times; `autoStart: false` holds jobs until emulator.start(). */
export async function startUpstream(opts: Omit<EmulatorOptions, 'onRequest'> & { autoStart?: boolean } = {}): Promise<Upstream> {
  const up = await startEmulator(opts);
  return Object.assign(up, { timed: up.requests });
}

/** Upstream reads of one job since `since`: retrieves (one per poll) and events pages. */
export function pollsOf(up: Upstream, jobId: string, since = 0, until = Infinity) {
  const prefix = `/v1/fine_tuning/jobs/${jobId}`;
  const mine = up.timed.filter((r) => r.at >= since && r.at < until && r.method === 'GET' && r.path.startsWith(prefix));
  return {
    retrieves: mine.filter((r) => r.path === prefix),
    events: mine.filter((r) => r.path === `${prefix}/events`),
  };
}

export const createJob = (up: Upstream, nEpochs = 3, examples = 20) => createTrainingJob(up.client(KEY), nEpochs, examples);

export const restEvents = (up: Upstream, jobId: string) => restEventsOf(up.client(KEY), jobId);

// ---- instances -----------------------------------------------------------------------------------------------------

export interface Instance {
  id: string;
  url: string;
  wsUrl: string;
  /** Child process (spawned instances only). */
  child?: ChildProcess;
  output(): string;
  /** In-process instances only. */
  server?: RunningServer;
  kill(signal?: NodeJS.Signals): Promise<void>;
  close(): Promise<void>;
}

export function instanceEnv(up: Upstream, prefix: string, id: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    OPENAI_BASE_URL: up.baseURL,
    OPENAI_API_KEY: KEY,
    PORT: '0',
    HOST: '127.0.0.1',
    AUTH_MODE: 'none',
    LOG_LEVEL: 'warn',
    ACCESS_LOG: '0',
    REDIS_URL,
    REDIS_KEY_PREFIX: prefix,
    INSTANCE_ID: id,
    ...env,
  };
}

/** `node --import tsx src/server.ts` (SIGKILL reaches the server itself), ready once its start-up line is out. */
export async function spawnInstance(env: Record<string, string>): Promise<Instance> {
  registerEnvSecrets(env);
  const { url, child, output, exited } = await spawnServerProcess(env, 'instance');
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    id: env.INSTANCE_ID ?? '',
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/graphql`,
    child,
    output,
    kill,
    close: () => kill('SIGTERM'),
  };
}

/** An instance in this process (its logs captured). */
export async function startInstance(env: Record<string, string>): Promise<Instance> {
  registerEnvSecrets(env);
  let logs = '';
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logs += chunk.toString();
      cb();
    },
  });
  // POLL_INTERVAL_MS and POLL_MAX_BACKOFF_MS are read from process.env by default: pass this instance's.
  const server = await startServer(loadConfig(env), { logStream, live: liveOptionsFromEnv(env) });
  return {
    id: server.cluster?.instanceId ?? '',
    url: server.url,
    wsUrl: `${server.url.replace(/^http/, 'ws')}/graphql`,
    server,
    output: () => logs,
    kill: () => server.close(),
    close: () => server.close(),
  };
}

export async function gql<T = any>(inst: Instance, query: string, variables?: Record<string, unknown>): Promise<{ data?: T; errors?: any[] }> {
  const res = await fetch(`${inst.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as { data?: T; errors?: any[] };
}

// ---- subscribers ---------------------------------------------------------------------------------------------------

export function wsClient(inst: Instance): Client {
  return createClient({ url: inst.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
}

export const EVENTS_SUB = /* GraphQL */ `
  subscription Events($jobId: ID!, $after: ID) {
    fineTuningJobEvents(jobId: $jobId, after: $after) { id message }
  }
`;

export const JOB_SUB = /* GraphQL */ `
  subscription Job($id: ID!) {
    fineTuningJobUpdated(id: $id) { id status trainedTokens }
  }
`;

// ---- metrics -------------------------------------------------------------------------------------------------------

/** Prometheus text → { 'name{labels}': value }. */
export async function scrape(inst: Instance): Promise<Map<string, number>> {
  const res = await fetch(`${inst.url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}

/** Sum of a series over all label sets matching `labels` (substrings such as 'route="/graphql"'). */
export function sum(series: Map<string, number>, name: string, ...labels: string[]): number {
  let total = 0;
  for (const [k, v] of series) {
    const base = k.includes('{') ? k.slice(0, k.indexOf('{')) : k;
    if (base !== name) continue;
    if (labels.every((l) => k.includes(l))) total += v;
  }
  return total;
}

export const waitUntil = <T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 20_000, stepMs = 20) =>
  sharedWaitUntil(fn, timeoutMs, stepMs);
