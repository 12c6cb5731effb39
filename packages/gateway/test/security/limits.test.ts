/**
 * Limits and browser protections: the CORS allow-list (CORS_ORIGINS), CSRF prevention for browser requests,
 * configurable query and body limits, and production mode (NODE_ENV=production: no field suggestions,
 * unexpected errors masked, GraphiQL off unless GRAPHIQL=1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, loadConfig } from '../../src/config.js';
import { startEmulator, trainingJsonl, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, fakeUpstream, type FakeUpstream, sendJson, startApi } from '../helpers/server.js';
import { storedCounts } from './helpers.js';

const KEY = 'sk-server-key-limits-012345';
let emu: RunningEmulator;

beforeAll(async () => {
  emu = await startEmulator();
});
afterAll(async () => {
  await emu?.close();
});

const uploadForm = () => {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({ query: 'mutation($f: Upload!) { uploadFile(file: $f, purpose: FINE_TUNE) { __typename } }', variables: { f: null } }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.f'] }));
  form.set('0', new Blob([trainingJsonl(10)]), 'train.jsonl');
  return form;
};

describe('CORS', () => {
  let closed: ApiHandle;
  let open: ApiHandle;
  beforeAll(async () => {
    closed = await startApi({ baseURL: emu.baseURL, apiKey: KEY });
    open = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { CORS_ORIGINS: 'https://app.example.com, http://localhost:5173' } });
  });
  afterAll(async () => {
    await closed?.close();
    await open?.close();
  });

  const preflight = (api: ApiHandle, origin: string) =>
    fetch(`${api.url}/graphql`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });

  it('by default no origin is allowed cross-origin (no CORS headers at all)', async () => {
    const p = await preflight(closed, 'https://app.example.com');
    expect(p.headers.get('access-control-allow-origin')).toBeNull();
    const r = await fetch(`${closed.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://app.example.com' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    expect(r.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('CORS_ORIGINS lists the origins that may call; others get nothing', async () => {
    for (const origin of ['https://app.example.com', 'http://localhost:5173']) {
      const p = await preflight(open, origin);
      expect(p.status).toBe(204);
      expect(p.headers.get('access-control-allow-origin')).toBe(origin);
      expect(p.headers.get('access-control-allow-headers')).toMatch(/authorization/);
      expect(p.headers.get('access-control-allow-credentials')).toBeNull();
    }
    for (const origin of ['https://evil.example', 'https://app.example.com.evil.example', 'null']) {
      const p = await preflight(open, origin);
      expect(p.headers.get('access-control-allow-origin'), origin).toBeNull();
    }
  });

  it('CORS_ORIGINS is validated at start-up', () => {
    expect(() => loadConfig({ CORS_ORIGINS: 'app.example.com' })).toThrow(/CORS_ORIGINS: "app.example.com" is not an origin/);
    expect(() => loadConfig({ CORS_ORIGINS: 'https://app.example.com/path' })).toThrow(/no path/);
    expect(loadConfig({ CORS_ORIGINS: 'https://a.example, https://b.example:8443/' }).corsOrigins).toEqual(['https://a.example', 'https://b.example:8443']);
  });
});

describe('CSRF prevention', () => {
  let api: ApiHandle;
  beforeAll(async () => {
    api = await startApi({ baseURL: emu.baseURL, apiKey: KEY });
  });
  afterAll(async () => api?.close());

  const crossSite = { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' };

  it('a cross-site browser GET or multipart POST without a CSRF header is refused, and stores nothing', async () => {
    const stored = await storedCounts(emu.client(KEY));
    const get = await fetch(`${api.url}/graphql?query=${encodeURIComponent('{ files { edges { cursor } } }')}`, { headers: crossSite });
    expect(get.status).toBe(403);
    expect(((await get.json()) as any).errors[0].extensions.code).toBe('CSRF_HEADER_REQUIRED');
    const post = await fetch(`${api.url}/graphql`, { method: 'POST', headers: crossSite, body: uploadForm() });
    expect(post.status).toBe(403);
    expect(await storedCounts(emu.client(KEY))).toEqual(stored);
  });

  it('passes with a CSRF header, from the same origin, from scripts (no Origin), and for JSON (which browsers preflight)', async () => {
    const withHeader = await fetch(`${api.url}/graphql?query=${encodeURIComponent('{ __typename }')}`, {
      headers: { ...crossSite, 'x-graphql-yoga-csrf': '1' },
    });
    expect(withHeader.status).toBe(200);
    const sameOrigin = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: { origin: api.url, 'sec-fetch-site': 'same-origin' },
      body: uploadForm(),
    });
    expect(((await sameOrigin.json()) as any).data.uploadFile.__typename).toBe('UploadFileSuccess');
    const script = await fetch(`${api.url}/graphql`, { method: 'POST', body: uploadForm() });
    expect(((await script.json()) as any).data.uploadFile.__typename).toBe('UploadFileSuccess');
    const json = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: { ...crossSite, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(json.status).toBe(200);
  });

  it('GraphiQL opens on a same-origin navigation', async () => {
    const page = await fetch(`${api.url}/graphql`, {
      headers: { accept: 'text/html', 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate' },
    });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Fine-tuning GraphQL API');
  });
});

describe('configurable limits', () => {
  it('has sane defaults', () => {
    expect(DEFAULT_LIMITS).toEqual({
      maxDepth: 12,
      maxAliases: 15,
      maxCost: 5000,
      maxTokens: 2000,
      maxDirectives: 20,
      maxBodyBytes: 1024 * 1024,
      maxUploadBytes: 64 * 1024 * 1024,
      rateLimitPerMinute: 3000,
      maxSubscriptionsPerSocket: 100,
      maxWatchedJobsPerCredential: 50,
      maxReplayEvents: 10_000,
      maxConcurrentReplays: 32,
      maxNodes: 100,
      maxUpstreamCalls: 100,
      maxJsonDepth: 16,
      maxJsonBytes: 64 * 1024,
      maxConcurrentUploads: 2,
      maxStreamBufferBytes: 4 * 1024 * 1024,
      streamStallTimeoutMs: 30_000,
      requestTimeoutMs: 120_000,
      headersTimeoutMs: 10_000,
    });
    expect(loadConfig({}).limits).toEqual(DEFAULT_LIMITS);
    expect(() => loadConfig({ GRAPHQL_MAX_DEPTH: '0' })).toThrow(/GRAPHQL_MAX_DEPTH must be a positive integer/);
    expect(() => loadConfig({ MAX_BODY_BYTES: 'lots' })).toThrow(/MAX_BODY_BYTES must be a non-negative integer/);
  });

  it('GRAPHQL_MAX_DEPTH, GRAPHQL_MAX_ALIASES and MAX_BODY_BYTES apply on both paths', async () => {
    for (const fast of ['1', '0']) {
      const api = await startApi({
        baseURL: emu.baseURL,
        apiKey: KEY,
        env: { GRAPHQL_MAX_DEPTH: '3', GRAPHQL_MAX_ALIASES: '1', MAX_BODY_BYTES: '2000', GRAPHQL_FAST_PATH: fast },
      });
      try {
        const shallow = await api.gql('{ files { edges { cursor } } }');
        expect(shallow.errors).toBeUndefined();
        const deep = await api.gql('{ files { edges { node { id } } } }');
        expect(deep.errors![0]!.extensions).toMatchObject({ code: 'QUERY_LIMIT_EXCEEDED', limit: 'depth' });
        const aliases = await api.gql('{ a: files { edges { cursor } } b: files { edges { cursor } } }');
        expect(aliases.errors![0]!.extensions).toMatchObject({ code: 'QUERY_LIMIT_EXCEEDED', limit: 'aliases' });
        const big = await api.gql('{ __typename }', { pad: 'p'.repeat(3000) });
        expect(big.status).toBe(413);
        expect(big.errors![0]!.message).toBe('Request body is too large: at most 2000 bytes.');
        // `first` is at most 100.
        expect((await api.gql('{ files(first: 100) { edges { cursor } } }')).errors).toBeUndefined();
        expect((await api.gql('query($n: Int) { files(first: $n) { edges { cursor } } }', { n: 101 })).errors![0]!.extensions).toMatchObject({
          code: 'BAD_USER_INPUT',
          field: 'first',
        });
      } finally {
        await api.close();
      }
    }
  });
});

describe('production mode (NODE_ENV=production)', () => {
  let up: FakeUpstream;
  let dev: ApiHandle;
  let prod: ApiHandle;
  let prodGraphiql: ApiHandle;
  beforeAll(async () => {
    // An upstream that answers a job retrieve with `null`: the resolver then fails unexpectedly.
    up = await fakeUpstream((req, res) => {
      if (req.url?.startsWith('/v1/fine_tuning/jobs/')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('null');
      sendJson(res, 200, { object: 'list', data: [], has_more: false });
    });
    dev = await startApi({ baseURL: up.baseURL, apiKey: KEY });
    prod = await startApi({ baseURL: up.baseURL, apiKey: KEY, env: { NODE_ENV: 'production' } });
    prodGraphiql = await startApi({ baseURL: up.baseURL, apiKey: KEY, env: { NODE_ENV: 'production', GRAPHIQL: '1' } });
  });
  afterAll(async () => {
    await dev?.close();
    await prod?.close();
    await prodGraphiql?.close();
    await up?.close();
  });

  it('hides field suggestions', async () => {
    const q = '{ files { edges { node { filenam } } } }';
    expect((await dev.gql(q)).errors![0]!.message).toMatch(/Did you mean "filename"\?/);
    for (const headers of [{}, { origin: prod.url }] as Record<string, string>[]) {
      const r = await prod.gql(q, undefined, { headers });
      expect(r.errors![0]!.message).not.toMatch(/Did you mean/);
      expect(r.errors![0]!.message).toMatch(/Cannot query field "filenam" on type "File"/);
    }
  });

  it('masks unexpected errors: a generic message and code, the details only in the log', async () => {
    for (const [i, headers] of ([{}, { origin: prod.url }] as Record<string, string>[]).entries()) {
      const r = await prod.gql('{ fineTuningJob(id: "ftjob-abc123") { id status } }', undefined, { headers: { ...headers, 'x-request-id': `masked-${i}` } });
      expect(r.errors).toEqual([expect.objectContaining({ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } })]);
      expect(JSON.stringify(r)).not.toMatch(/TypeError|stack|null \(reading/);
    }
    // Logged once per request, with the request's id.
    const lines = prod
      .logs()
      .split('\n')
      .filter((l) => l.includes('unexpected error'));
    expect(lines).toHaveLength(2);
    expect(lines.map((l) => JSON.parse(l).reqId)).toEqual(['masked-0', 'masked-1']);
  });

  it('serves no GraphiQL unless GRAPHIQL=1', async () => {
    const page = await fetch(`${prod.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await page.text()).not.toContain('Fine-tuning GraphQL API');
    const on = await fetch(`${prodGraphiql.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await on.text()).toContain('Fine-tuning GraphQL API');
    expect(loadConfig({ NODE_ENV: 'production' }).graphiql).toBe(false);
    expect(loadConfig({}).graphiql).toBe(true);
    expect(loadConfig({ GRAPHIQL: '0' }).graphiql).toBe(false);
  });
});
