/**
 * Test helpers for the GraphQL API: start it in-process on 127.0.0.1:0 pointed at an upstream
 * (the local service from @finetune-graphql/emulator/testing, or a tiny node:http server), and talk to it over HTTP
 * with fetch. Every raw response body and every log line is kept, so tests can check that no secret leaks.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { startServer, type RunningServer } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { registerEnvSecrets } from '../security/leak-state.js';

export interface GqlResult<T = any> {
  status: number;
  data?: T;
  errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, any> }[];
}

export interface RequestOptions {
  /** Bearer token for this request (overrides the handle's default `token`); null sends no Authorization. */
  token?: string | null;
  headers?: Record<string, string>;
}

export interface ApiHandle extends RunningServer {
  /** POST /graphql with JSON (with `Authorization: Bearer <token>` when the handle or the call has a token). */
  gql<T = any>(query: string, variables?: Record<string, unknown>, opts?: RequestOptions): Promise<GqlResult<T>>;
  /** uploadFile through the GraphQL multipart request spec (FormData + fetch). */
  upload(content: string | Uint8Array, filename: string, purpose?: string, opts?: RequestOptions): Promise<GqlResult>;
  /** Every raw response body so far. */
  bodies: string[];
  /** Everything the server logged so far. */
  logs(): string;
}

export async function startApi(opts: {
  baseURL: string;
  apiKey?: string;
  env?: Record<string, string>;
  /** Default bearer token of gql() and upload() (AUTH_MODE tokens or passthrough). */
  token?: string;
}): Promise<ApiHandle> {
  const env = {
    OPENAI_BASE_URL: opts.baseURL,
    OPENAI_API_KEY: opts.apiKey ?? 'sk-test-alice',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'debug',
    ...opts.env,
  };
  // The secret-leak check of the suite looks for these in every response and log line.
  registerEnvSecrets(env);
  const config = loadConfig(env);
  const authHeaders = (o?: RequestOptions): Record<string, string> => {
    const token = o?.token === undefined ? opts.token : o.token;
    return { ...(token ? { authorization: `Bearer ${token}` } : {}), ...o?.headers };
  };
  let logText = '';
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  });
  const server = await startServer(config, { logStream });
  const bodies: string[] = [];
  const endpoint = `${server.url}/graphql`;

  const read = async (res: Response): Promise<GqlResult> => {
    const text = await res.text();
    bodies.push(text);
    let parsed: Omit<GqlResult, 'status'>;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`non-JSON response ${res.status}: ${text.slice(0, 300)}`);
    }
    return { status: res.status, ...parsed };
  };

  return {
    ...server,
    bodies,
    logs: () => logText,
    async gql(query, variables, o) {
      const res = await fetch(endpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...authHeaders(o),
        },
        body: JSON.stringify({ query, variables }),
      });
      return read(res);
    },
    async upload(content, filename, purpose = 'FINE_TUNE', o) {
      const form = new FormData();
      form.set(
        'operations',
        JSON.stringify({
          query: `mutation Upload($file: Upload!, $purpose: FilePurpose!) {
            uploadFile(file: $file, purpose: $purpose) {
              __typename
              ... on UploadFileSuccess { file { id filename bytes purpose rawPurpose createdAt expiresAt } }
              ... on ValidationError { message field }
              ... on Error { message }
            }
          }`,
          variables: { file: null, purpose },
        }),
      );
      form.set('map', JSON.stringify({ 0: ['variables.file'] }));
      form.set('0', new Blob([typeof content === 'string' ? content : Buffer.from(content)], { type: 'application/jsonl' }), filename);
      const res = await fetch(endpoint, { method: 'POST', body: form, headers: authHeaders(o) });
      return read(res);
    },
  };
}

export interface FakeUpstream {
  url: string;
  /** url + '/v1' */
  baseURL: string;
  /** Requests received (method, path, authorization present). */
  hits: { method: string; path: string }[];
  close(): Promise<void>;
}

/** A tiny real upstream on 127.0.0.1:0 whose answers the test decides (429, 503, dropped sockets, …). */
export async function fakeUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<FakeUpstream> {
  const hits: FakeUpstream['hits'] = [];
  const server: Server = createServer((req, res) => {
    hits.push({ method: req.method ?? 'GET', path: req.url ?? '/' });
    // Drain the body first so that handlers may answer at once.
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    baseURL: `${url}/v1`,
    hits,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}
