/**
 * Helpers for the security tests: graphql-ws and SSE clients that carry credentials, raw websockets for
 * protocol abuse, and counts of what the upstream (the local service) has stored.
 */
import { createClient, type Client, type ExecutionResult } from 'graphql-ws';
import type OpenAI from 'openai';
import WebSocket from 'ws';
import type { RunningEmulator } from '@finetune-graphql/emulator/testing';
import { sseEvents } from '../helpers/subscriptions.js';

export const wsUrlOf = (httpUrl: string) => `${httpUrl.replace(/^http/, 'ws')}/graphql`;

export interface WsSession {
  client: Client;
  /** Resolves with the close event once the socket closes. */
  closed: Promise<{ code: number; reason: string }>;
  dispose(): Promise<void>;
}

/** A graphql-ws client that connects at once with these connectionParams and never retries. */
export function wsSession(httpUrl: string, connectionParams?: Record<string, unknown>): WsSession {
  let onClosed!: (e: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => (onClosed = r));
  const client = createClient({
    url: wsUrlOf(httpUrl),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    connectionParams,
    on: { closed: (e) => onClosed({ code: (e as CloseEvent).code, reason: String((e as CloseEvent).reason ?? '') }) },
    onNonLazyError: () => undefined,
  });
  return { client, closed, dispose: async () => void (await client.dispose()) };
}

/** The results of one operation over graphql-ws until it completes, errors or `max` results arrived. */
export function wsOperation(
  client: Client,
  query: string,
  variables: Record<string, unknown> = {},
  max = Infinity,
): Promise<{ results: ExecutionResult<any>[]; error?: unknown; completed: boolean }> {
  return new Promise((resolve) => {
    const results: ExecutionResult<any>[] = [];
    let dispose = () => {};
    const finish = (out: { error?: unknown; completed: boolean }) => {
      dispose();
      resolve({ results, ...out });
    };
    dispose = client.subscribe(
      { query, variables },
      {
        next: (r) => {
          results.push(r as ExecutionResult<any>);
          if (results.length >= max) finish({ completed: false });
        },
        error: (error) => finish({ error, completed: false }),
        complete: () => finish({ completed: true }),
      },
    );
  });
}

/** GraphQL errors of a graphql-ws `error` (an array of errors) or a close event. */
export function errorCodes(error: unknown): string[] {
  if (Array.isArray(error)) return error.map((e) => (e as { extensions?: { code?: string } }).extensions?.code ?? '?');
  return [];
}

export interface SseResult {
  status: number;
  contentType: string | null;
  /** Parsed `next` events. */
  events: ExecutionResult<any>[];
  completed: boolean;
}

/** A subscription over GraphQL over SSE (POST with Accept: text/event-stream) until complete or `max` events. */
export async function sse(
  httpUrl: string,
  query: string,
  variables: Record<string, unknown> = {},
  opts: { token?: string; max?: number; timeoutMs?: number } = {},
): Promise<SseResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), opts.timeoutMs ?? 20_000);
  const out: SseResult = { status: 0, contentType: null, events: [], completed: false };
  try {
    const res = await fetch(`${httpUrl}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
      signal: controller.signal,
    });
    out.status = res.status;
    out.contentType = res.headers.get('content-type');
    if (!res.body || !out.contentType?.includes('text/event-stream')) {
      const text = await res.text();
      try {
        out.events.push(JSON.parse(text));
      } catch {
        /* not JSON */
      }
      return out;
    }
    for await (const { event, data } of sseEvents(res.body)) {
      if (event === 'complete') {
        out.completed = true;
        return out;
      }
      if (event === 'next' && data !== undefined) {
        out.events.push(JSON.parse(data));
        if (out.events.length >= (opts.max ?? Infinity)) return out;
      }
    }
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return out;
}

/** A raw websocket speaking graphql-transport-ws, for frames no well-behaved client sends. */
export async function rawSocket(
  httpUrl: string,
  protocol: string | string[] = 'graphql-transport-ws',
): Promise<{ ws: WebSocket; messages: unknown[]; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(wsUrlOf(httpUrl), protocol);
  const messages: unknown[] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('message', (data) => {
    try {
      messages.push(JSON.parse(data.toString()));
    } catch {
      messages.push(data.toString());
    }
  });
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, messages, closed };
}

/** Jobs and files the organisation of `client`'s key has at the upstream. */
export async function storedCounts(client: OpenAI): Promise<{ jobs: number; files: number }> {
  let jobs = 0;
  for await (const _ of client.fineTuning.jobs.list({ limit: 100 })) jobs++;
  const files = (await client.files.list()).data.length;
  return { jobs, files };
}

/** Requests that can change state (anything but GET) the upstream has answered so far. */
export const writesAt = (emu: RunningEmulator) => emu.requests.filter((r) => r.method !== 'GET' && r.method !== 'HEAD').length;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
