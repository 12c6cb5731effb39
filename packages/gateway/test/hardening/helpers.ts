/**
 * Helpers for the hardening tests: the local fine-tuning service (with fault injection) on 127.0.0.1, the
 * GraphQL API in-process or as a child process (`node --import tsx src/server.ts`), and small clients.
 */
import { Writable } from 'node:stream';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { startServer, type RunningServer, type StartOptions } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { EmulatorOptions } from '@finetune-graphql/emulator';
import { type RunningEmulator, startEmulator, type TimedRequest } from '@finetune-graphql/emulator/testing';
import { ROOT, type ServerProcess, spawnServerProcess } from '../helpers/processes.js';

export { ROOT };

export const KEY = 'sk-hardening-secret-0123456789abcdef';
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export type { TimedRequest };

export interface Upstream extends RunningEmulator {
  /** Every request the service answered (or dropped), with the time its hook ran (its `requests`). */
  timed: TimedRequest[];
}

/** The local service on 127.0.0.1:0 (in-memory database) with its request hook timing every request. */
export async function startUpstream(opts: EmulatorOptions & { onTimed?: (r: TimedRequest) => void } = {}): Promise<Upstream> {
  const { onTimed, onRequest: _ignored, ...rest } = opts;
  const svc = await startEmulator({ ...rest, onRequest: onTimed });
  return Object.assign(svc, { timed: svc.requests });
}

export interface GqlResponse<T = any> {
  status: number;
  headers: Headers;
  data?: T;
  errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, any> }[];
}

export interface Gateway extends RunningServer {
  endpoint: string;
  wsUrl: string;
  logs(): string;
  logLines(): Record<string, any>[];
  gql<T = any>(query: string, variables?: Record<string, unknown>, headers?: Record<string, string>): Promise<GqlResponse<T>>;
}

/** The GraphQL API in this process, pointed at `baseURL`, logging (JSON lines) into memory. */
export async function startGateway(baseURL: string, env: Record<string, string> = {}, opts: Omit<StartOptions, 'logStream'> = {}): Promise<Gateway> {
  const config = loadConfig({
    OPENAI_BASE_URL: baseURL,
    OPENAI_API_KEY: KEY,
    PORT: '0',
    HOST: '127.0.0.1',
    AUTH_MODE: 'none',
    LOG_LEVEL: 'info',
    ...env,
  });
  let text = '';
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  const server = await startServer(config, { ...opts, logStream });
  const endpoint = `${server.url}/graphql`;
  return {
    ...server,
    endpoint,
    wsUrl: endpoint.replace(/^http/, 'ws'),
    logs: () => text,
    logLines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, any>),
    async gql(query, variables, headers = {}) {
      const res = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await res.json()) as Omit<GqlResponse, 'status' | 'headers'>;
      return { status: res.status, headers: res.headers, ...body };
    },
  };
}

export function wsClient(url: string, onClosed?: (code: number) => void): Client {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    onNonLazyError: () => undefined,
    on: { closed: (e) => onClosed?.((e as { code: number }).code) },
  });
}

/** Subscribes and collects every item until the stream completes or errors. */
export function collect<T>(client: Client, query: string, variables: Record<string, unknown>) {
  const items: T[] = [];
  const errors: unknown[] = [];
  const done = new Promise<void>((resolveDone) => {
    client.subscribe<T>(
      { query, variables },
      {
        next: (v) => {
          if (v.errors?.length) errors.push(v.errors);
          else if (v.data) items.push(v.data as T);
        },
        error: (e) => {
          errors.push(e);
          resolveDone();
        },
        complete: () => resolveDone(),
      },
    );
  });
  return { items, errors, done };
}

export type SpawnedServer = ServerProcess;

/** `node --import tsx src/server.ts` with PORT=0; resolves once the start-up line names the port. */
export function spawnServer(env: Record<string, string>): Promise<SpawnedServer> {
  return spawnServerProcess({ PORT: '0', HOST: '127.0.0.1', AUTH_MODE: 'none', ...env });
}

/** JSON log lines of a child's output (other lines skipped). */
export function jsonLines(text: string): Record<string, any>[] {
  const out: Record<string, any>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      /* not a log line */
    }
  }
  return out;
}
