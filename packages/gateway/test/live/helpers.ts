/**
 * Helpers for the live-updates tests: a local fine-tuning service that can be stopped and
 * restarted on the same port and database, the GraphQL server pointed at it with a small poll
 * interval, clients for graphql-ws (the `ws` package) and GraphQL over SSE (fetch), and long event
 * histories seeded through the service's own store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createClient, type Client, type ExecutionResult } from 'graphql-ws';
import WebSocket from 'ws';
import { startServer, type RunningServer } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { LiveOptions } from '../../src/live/index.js';
import { createTrainingJob, type RunningEmulator, restEventsOf, startEmulator, waitUntil as sharedWaitUntil } from '@finetune-graphql/emulator/testing';
import { type Collected, sseEvents } from '../helpers/subscriptions.js';

export { seedEvents } from '@finetune-graphql/emulator/testing';
export { type Collected, collectWs } from '../helpers/subscriptions.js';

export const KEY = 'sk-test-live';
export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export type Upstream = RunningEmulator;

/** The local fine-tuning service on 127.0.0.1, with its database in a temp file so that it survives a restart. */
export async function startUpstream(opts: { stepMs: number }): Promise<Upstream> {
  const dir = mkdtempSync(join(tmpdir(), 'live-upstream-'));
  const up = await startEmulator({ dbPath: join(dir, 'emulator.db'), stepMs: opts.stepMs, key: KEY });
  return {
    ...up,
    get emulator() {
      return up.emulator;
    },
    async close() {
      await up.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Upstream polls of one job (retrieve and events pages) among the recorded requests. */
export function pollsOf(up: Upstream, jobId: string, since = 0) {
  const prefix = `/v1/fine_tuning/jobs/${jobId}`;
  const mine = up.requests.filter((r) => r.at >= since && r.method === 'GET' && r.path.startsWith(prefix));
  return {
    retrieves: mine.filter((r) => r.path === prefix).length,
    events: mine.filter((r) => r.path === `${prefix}/events`).length,
    total: mine.length,
  };
}

export interface Gateway extends RunningServer {
  httpUrl: string;
  wsUrl: string;
  logs(): string;
  gql<T = any>(query: string, variables?: Record<string, unknown>): Promise<ExecutionResult<T>>;
}

/** The GraphQL server, pointed at `up`, with live options for the test. */
export async function startGateway(up: Upstream, live: Partial<LiveOptions>, env: Record<string, string> = {}): Promise<Gateway> {
  const config = loadConfig({
    OPENAI_BASE_URL: up.baseURL,
    OPENAI_API_KEY: KEY,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...env,
  });
  let logText = '';
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  });
  const server = await startServer(config, { logStream, live });
  return {
    ...server,
    httpUrl: `${server.url}/graphql`,
    wsUrl: `${server.url.replace(/^http/, 'ws')}/graphql`,
    logs: () => logText,
    async gql(query, variables) {
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
        body: JSON.stringify({ query, variables }),
      });
      return (await res.json()) as ExecutionResult<any>;
    },
  };
}

export function wsClient(gw: Gateway): Client {
  return createClient({ url: gw.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
}

/** Subscribes over GraphQL over SSE (yoga's distinct-connections mode: POST with Accept: text/event-stream). */
export function collectSse<T = any>(
  gw: Gateway,
  query: string,
  variables: Record<string, unknown>,
  field: string,
): Collected<T> & { controller: AbortController } {
  const controller = new AbortController();
  const out: Collected<T> & { controller: AbortController } = {
    items: [],
    errors: [],
    completed: false,
    done: Promise.resolve(),
    stop: () => controller.abort(),
    controller,
  };
  out.done = (async () => {
    try {
      const res = await fetch(gw.httpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query, variables }),
        signal: controller.signal,
      });
      if (!res.ok || !res.body) throw new Error(`SSE request failed: ${res.status}`);
      for await (const { event, data } of sseEvents(res.body)) {
        if (event === 'complete') {
          out.completed = true;
          return;
        }
        if (event === 'next' && data !== undefined) {
          const r = JSON.parse(data) as ExecutionResult<Record<string, T>>;
          if (r.errors?.length) out.errors.push(...r.errors);
          const v = r.data?.[field];
          if (v !== undefined && v !== null) out.items.push(v);
        }
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') out.errors.push(err);
    }
  })();
  return out;
}

/** Uploads a training file and creates a job on the upstream directly (the SDK, not our API). */
export const createJob = (up: Upstream, nEpochs = 2, examples = 20) => createTrainingJob(up.client(), nEpochs, examples);

export const restEvents = (up: Upstream, jobId: string) => restEventsOf(up.client(), jobId);

export const waitUntil = <T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 20_000, stepMs = 10) =>
  sharedWaitUntil(fn, timeoutMs, stepMs);

export const EVENTS_SUB = /* GraphQL */ `
  subscription Events($jobId: ID!, $after: ID) {
    fineTuningJobEvents(jobId: $jobId, after: $after) { id createdAt level message type data }
  }
`;

export const JOB_SUB = /* GraphQL */ `
  subscription Job($id: ID!) {
    fineTuningJobUpdated(id: $id) { id status trainedTokens fineTunedModel estimatedFinish finishedAt }
  }
`;
