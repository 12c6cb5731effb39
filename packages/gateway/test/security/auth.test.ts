/**
 * Client authentication and scopes, black-box over HTTP (the JSON fast path and yoga), SSE and graphql-ws,
 * against the local fine-tuning service. Every refused request is checked to have made no upstream call.
 */
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execute, parse, subscribe } from 'graphql/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createContext } from '../../src/resolvers/context.js';
import { getSchema } from '../../src/schema/index.js';
import { Upstream } from '../../src/upstream/client.js';
import { startEmulator, trainingJsonl, type RunningEmulator, uploadTraining, waitFor, waitForStatus } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';
import { errorCodes, rawSocket, sleep, sse, storedCounts, wsOperation, wsSession, writesAt } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SERVER_KEY = 'sk-server-key-auth-0123456789';
const TOKENS = {
  reader: 'tok-reader-0123456789abcdef',
  writer: 'tok-writer-0123456789abcdef',
  admin: 'tok-admin-0123456789abcdefg',
};
const WRONG = 'tok-wrong-0123456789abcdefgh';
const GATEWAY_TOKENS = JSON.stringify([
  { token: TOKENS.reader, scopes: ['read'], name: 'reader' },
  { token: TOKENS.writer, scopes: ['write'], name: 'writer' },
  { token: TOKENS.admin, scopes: ['read', 'write'], name: 'admin' },
]);

let emu: RunningEmulator;
let api: ApiHandle;
let jobId: string;
let fileId: string;

const QUERY = '{ fineTuningJobs(first: 5) { edges { node { id status } } } }';
const JOB_UPDATED = 'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id status } }';
const CANCEL = 'mutation($id: ID!) { cancelFineTuningJob(id: $id) { __typename ... on Error { message } } }';

/** Waits until no poller runs and the upstream has had no request for 100 ms (earlier tests' pollers end). */
async function quiet() {
  await waitFor(() => api.live.stats().pollers === 0);
  for (;;) {
    const n = emu.requests.length;
    await sleep(100);
    if (emu.requests.length === n) return;
  }
}

/** POST /graphql through the fast path (no Origin) or through yoga (a browser-like Origin header). */
async function post(body: unknown, opts: { token?: string; authorization?: string; yoga?: boolean } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/graphql-response+json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  if (opts.yoga) headers.origin = api.url;
  const res = await fetch(`${api.url}/graphql`, { method: 'POST', headers, body: JSON.stringify(body) });
  const json = (await res.json()) as { data?: any; errors?: { message: string; extensions?: Record<string, unknown> }[] };
  return { status: res.status, wwwAuthenticate: res.headers.get('www-authenticate'), ...json };
}

beforeAll(async () => {
  emu = await startEmulator({ stepMs: 5 });
  api = await startApi({ baseURL: emu.baseURL, apiKey: SERVER_KEY, env: { AUTH_MODE: 'tokens', GATEWAY_TOKENS } });
  const client = emu.client(SERVER_KEY);
  fileId = await uploadTraining(client, trainingJsonl(12));
  const job = await client.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: fileId, hyperparameters: { n_epochs: 1 } });
  jobId = job.id;
  await waitForStatus(client, jobId, ['succeeded']);
});

afterAll(async () => {
  await api?.close();
  await emu?.close();
});

describe('AUTH_MODE=tokens over HTTP', () => {
  it('a query without a token, with a wrong one or a malformed header: 401 UNAUTHENTICATED and no upstream call', async () => {
    for (const yoga of [false, true]) {
      const before = emu.requests.length;
      const cases = [
        {},
        { token: WRONG },
        { authorization: 'Basic dXNlcjpwYXNz' },
        { authorization: 'Bearer' },
        { authorization: `Bearer ${'x'.repeat(600)}` },
      ];
      for (const c of cases) {
        const r = await post({ query: QUERY }, { ...c, yoga });
        expect(r.status, JSON.stringify(c)).toBe(401);
        expect(r.wwwAuthenticate).toBe('Bearer');
        expect(r.data).toBeUndefined();
        expect(r.errors!.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      }
      expect(emu.requests.length, 'upstream calls').toBe(before);
    }
  });

  it('the fast path and yoga answer refusals identically', async () => {
    for (const opts of [{}, { token: WRONG }, { token: TOKENS.reader }]) {
      const body = { query: CANCEL, variables: { id: jobId } };
      const a = await post(body, opts);
      const b = await post(body, { ...opts, yoga: true });
      expect({ ...a }).toEqual({ ...b });
    }
  });

  it('refuses before validating arguments: no input-validation detail reaches an unauthenticated caller', async () => {
    const before = emu.requests.length;
    const badFirst = await post({ query: 'query($n: Int) { fineTuningJobs(first: $n) { edges { cursor } } }', variables: { n: 10000 } });
    expect(badFirst.errors!.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    const badId = await post({ query: '{ node(id: "bogus") { id } }' });
    expect(badId.errors!.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    const badInput = await post({
      query: 'mutation($i: CreateFineTuningJobInput!) { createFineTuningJob(input: $i) { __typename ... on ValidationError { field } } }',
      variables: { i: { model: 'gpt-4o-mini-2024-07-18', trainingFile: fileId, hyperparameters: { nEpochs: 0 } } },
    });
    expect(badInput.data).toBeUndefined();
    expect(badInput.errors!.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    // The same input with a read-only token: FORBIDDEN, not a ValidationError.
    const readOnly = await post(
      {
        query: 'mutation($i: CreateFineTuningJobInput!) { createFineTuningJob(input: $i) { __typename ... on ValidationError { field } } }',
        variables: { i: { model: 'gpt-4o-mini-2024-07-18', trainingFile: fileId, hyperparameters: { nEpochs: 0 } } },
      },
      { token: TOKENS.reader },
    );
    expect(readOnly.status).toBe(403);
    expect(readOnly.errors!.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    expect(emu.requests.length).toBe(before);
  });

  it('queries need `read`: a write-only token gets 403 FORBIDDEN; a read token gets data', async () => {
    const before = emu.requests.length;
    const w = await post({ query: QUERY }, { token: TOKENS.writer });
    expect(w.status).toBe(403);
    expect(w.wwwAuthenticate).toBe('Bearer error="insufficient_scope", scope="read"');
    expect(w.errors![0]!.extensions?.code).toBe('FORBIDDEN');
    expect(w.errors![0]!.message).toMatch(/"read" scope/);
    expect(emu.requests.length).toBe(before);
    for (const token of [TOKENS.reader, TOKENS.admin]) {
      const r = await post({ query: QUERY }, { token });
      expect(r.status).toBe(200);
      expect(r.errors).toBeUndefined();
      expect(r.data.fineTuningJobs.edges.map((e: any) => e.node.id)).toContain(jobId);
    }
  });

  it('mutations need `write`: none/wrong → 401, read-only → 403, and nothing changes upstream', async () => {
    const client = emu.client(SERVER_KEY);
    const stored = await storedCounts(client);
    const writes = writesAt(emu);
    const create = {
      query: 'mutation($i: CreateFineTuningJobInput!) { createFineTuningJob(input: $i) { __typename } }',
      variables: { i: { model: 'gpt-4o-mini-2024-07-18', trainingFile: fileId } },
    };
    const del = { query: 'mutation($id: ID!) { deleteFile(id: $id) { __typename } }', variables: { id: fileId } };
    for (const body of [create, del, { query: CANCEL, variables: { id: jobId } }]) {
      for (const yoga of [false, true]) {
        expect((await post(body, { yoga })).status).toBe(401);
        expect((await post(body, { token: WRONG, yoga })).status).toBe(401);
        const r = await post(body, { token: TOKENS.reader, yoga });
        expect(r.status).toBe(403);
        expect(r.wwwAuthenticate).toBe('Bearer error="insufficient_scope", scope="write"');
        expect(r.errors!.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
      }
    }
    expect(writesAt(emu)).toBe(writes);
    expect(await storedCounts(client)).toEqual(stored);
    // With `write` the mutation runs (cancelling a finished job is a ConflictError result).
    for (const token of [TOKENS.writer, TOKENS.admin]) {
      const ok = await post({ query: CANCEL, variables: { id: jobId } }, { token });
      expect(ok.status).toBe(200);
      expect(ok.data.cancelFineTuningJob.__typename).toBe('ConflictError');
    }
  });

  it('uploads (multipart, served by yoga) need `write` too; a refused upload stores nothing', async () => {
    const client = emu.client(SERVER_KEY);
    const before = await storedCounts(client);
    const none = await api.upload(trainingJsonl(10), 'a.jsonl', 'FINE_TUNE', { token: null });
    expect(none.status).toBe(401);
    expect(none.errors![0]!.extensions!.code).toBe('UNAUTHENTICATED');
    const reader = await api.upload(trainingJsonl(10), 'a.jsonl', 'FINE_TUNE', { token: TOKENS.reader });
    expect(reader.status).toBe(403);
    expect(reader.errors![0]!.extensions!.code).toBe('FORBIDDEN');
    expect(await storedCounts(client)).toEqual(before);
    const admin = await api.upload(trainingJsonl(10), 'a.jsonl', 'FINE_TUNE', { token: TOKENS.admin });
    expect(admin.data.uploadFile.__typename).toBe('UploadFileSuccess');
    expect((await storedCounts(client)).files).toBe(before.files + 1);
  });

  it("GraphiQL (still served without a token) sends subscriptions over SSE, which carries its headers editor's Authorization", async () => {
    const page = await (await fetch(`${api.url}/graphql`, { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('Fine-tuning GraphQL API');
    expect(page).toMatch(/"subscriptionsProtocol":\s*"SSE"/);
  });

  it('the schema is public: __typename and introspection need no token, but not mixed with data fields', async () => {
    const t = await post({ query: '{ __typename }' });
    expect(t).toMatchObject({ status: 200, data: { __typename: 'Query' } });
    const i = await post({ query: '{ __schema { queryType { name } } __type(name: "FineTuningJob") { name } }' });
    expect(i.data).toEqual({ __schema: { queryType: { name: 'Query' } }, __type: { name: 'FineTuningJob' } });
    const mixed = await post({ query: '{ __typename ...F } fragment F on Query { fineTuningJobs { edges { cursor } } }' });
    expect(mixed.errors!.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
  });
});

describe('AUTH_MODE=tokens over SSE', () => {
  it('no token → UNAUTHENTICATED, write-only → FORBIDDEN, read → the job then complete', async () => {
    await quiet();
    const before = emu.requests.length;
    const none = await sse(api.url, JOB_UPDATED, { id: jobId });
    expect(none.events.flatMap((e) => e.errors ?? []).map((e: any) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    expect(none.events.some((e) => e.data)).toBe(false);
    const wrong = await sse(api.url, JOB_UPDATED, { id: jobId }, { token: WRONG });
    expect(wrong.events.flatMap((e) => e.errors ?? []).map((e: any) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    const writer = await sse(api.url, JOB_UPDATED, { id: jobId }, { token: TOKENS.writer });
    expect(writer.events.flatMap((e) => e.errors ?? []).map((e: any) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    expect(emu.requests.length, 'no upstream call for a refused subscription').toBe(before);
    const reader = await sse(api.url, JOB_UPDATED, { id: jobId }, { token: TOKENS.reader });
    expect(reader.completed).toBe(true);
    expect(reader.events.map((e) => e.data?.fineTuningJobUpdated)).toEqual([{ id: jobId, status: 'SUCCEEDED' }]);
  });
});

describe('AUTH_MODE=tokens over graphql-ws', () => {
  it('connection_init without a token, with a wrong one or a non-string one: closed with 4403', async () => {
    await quiet();
    const before = emu.requests.length;
    for (const params of [undefined, {}, { authorization: `Bearer ${WRONG}` }, { authorization: 42 }, { authorization: 'Basic x' }]) {
      const s = wsSession(api.url, params as Record<string, unknown> | undefined);
      const r = await wsOperation(s.client, JOB_UPDATED, { id: jobId });
      const closed = await s.closed;
      expect(closed.code, JSON.stringify(params)).toBe(4403);
      expect(closed.reason).toMatch(/^Forbidden/);
      expect(r.results).toEqual([]);
      await s.dispose();
    }
    expect(emu.requests.slice(before)).toEqual([]);
  });

  it('accepts `authorization` and `Authorization`; scopes per operation: read for queries and subscriptions, write for mutations', async () => {
    const reader = wsSession(api.url, { authorization: `Bearer ${TOKENS.reader}` });
    const sub = await wsOperation(reader.client, JOB_UPDATED, { id: jobId });
    expect(sub.completed).toBe(true);
    expect(sub.results.map((r) => r.data?.fineTuningJobUpdated)).toEqual([{ id: jobId, status: 'SUCCEEDED' }]);
    const mutation = await wsOperation(reader.client, CANCEL, { id: jobId });
    expect(errorCodes(mutation.error)).toEqual(['FORBIDDEN']);
    await reader.dispose();

    const writer = wsSession(api.url, { Authorization: `Bearer ${TOKENS.writer}` });
    await quiet();
    const before = emu.requests.length;
    const denied = await wsOperation(writer.client, JOB_UPDATED, { id: jobId });
    expect(errorCodes(denied.error)).toEqual(['FORBIDDEN']);
    const query = await wsOperation(writer.client, QUERY);
    expect(errorCodes(query.error)).toEqual(['FORBIDDEN']);
    expect(emu.requests.length).toBe(before);
    const allowed = await wsOperation(writer.client, CANCEL, { id: jobId });
    expect(allowed.results[0]!.data.cancelFineTuningJob.__typename).toBe('ConflictError');
    await writer.dispose();
  });

  it('a subscribe before connection_init is closed with 4401 Unauthorized', async () => {
    const { ws, closed } = await rawSocket(api.url);
    ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: JOB_UPDATED, variables: { id: jobId } } }));
    expect((await closed).code).toBe(4401);
  });
});

describe('Pothos scope-auth in the schema itself (without the HTTP gate)', () => {
  it('each root field refuses a context without the scope, before its resolver makes an upstream call', async () => {
    const upstream = new Upstream({ baseURL: emu.baseURL });
    try {
      const schema = getSchema();
      const ctx = (auth: Parameters<typeof createContext>[1]) => createContext(upstream, auth, undefined);
      const unauth = ctx({ ok: false, reason: 'missing', message: 'no token' });
      const readOnly = ctx({ ok: true, principal: { credential: SERVER_KEY, scopes: new Set(['read']), id: 'token:reader' } });
      const before = emu.requests.length;

      const q = (await execute({ schema, document: parse(QUERY), contextValue: unauth })) as any;
      expect(q.errors.map((e: any) => [e.path?.join('.'), e.extensions.code])).toEqual([['fineTuningJobs', 'UNAUTHENTICATED']]);
      const m = (await execute({ schema, document: parse(CANCEL), variableValues: { id: jobId }, contextValue: readOnly })) as any;
      expect(m.errors.map((e: any) => [e.path?.join('.'), e.extensions.code])).toEqual([['cancelFineTuningJob', 'FORBIDDEN']]);
      const s = (await subscribe({ schema, document: parse(JOB_UPDATED), variableValues: { id: jobId }, contextValue: unauth })) as any;
      expect(s.errors.map((e: any) => e.extensions.code)).toEqual(['UNAUTHENTICATED']);
      expect(emu.requests.length).toBe(before);

      const ok = (await execute({ schema, document: parse(QUERY), contextValue: readOnly })) as any;
      expect(ok.errors).toBeUndefined();
      expect(emu.requests.length).toBeGreaterThan(before);
    } finally {
      await upstream.close();
    }
  });
});

describe('AUTH_MODE=passthrough', () => {
  let pass: ApiHandle;
  beforeAll(async () => {
    pass = await startApi({ baseURL: emu.baseURL, apiKey: 'sk-unused-server-key-000', env: { AUTH_MODE: 'passthrough' } });
  });
  afterAll(async () => pass?.close());

  it("the caller's own key is the upstream credential; no key or a malformed one → UNAUTHENTICATED without an upstream call", async () => {
    const before = emu.requests.length;
    for (const token of [null, 'has spaces in it', `sk-${'y'.repeat(600)}`]) {
      const r = await pass.gql(QUERY, undefined, token === null ? { token: null } : { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(401);
      expect(r.errors![0]!.extensions!.code).toBe('UNAUTHENTICATED');
    }
    expect(emu.requests.length).toBe(before);
    const own = await pass.gql(QUERY, undefined, { token: SERVER_KEY });
    expect(own.data.fineTuningJobs.edges.map((e: any) => e.node.id)).toContain(jobId);
    // The upstream saw the caller's key (its organisation), not the server's.
    const orgs = new Set(emu.requests.slice(before).map((r) => r.orgId));
    expect(orgs.size).toBe(1);
    const other = await pass.gql(QUERY, undefined, { token: 'sk-someone-else-0123456789' });
    expect(other.data.fineTuningJobs.edges).toEqual([]);
  });

  it('websockets take the key from connectionParams', async () => {
    const none = wsSession(pass.url, {});
    await wsOperation(none.client, QUERY);
    expect((await none.closed).code).toBe(4403);
    const s = wsSession(pass.url, { authorization: `Bearer ${SERVER_KEY}` });
    const r = await wsOperation(s.client, JOB_UPDATED, { id: jobId });
    expect(r.results.map((x) => x.data?.fineTuningJobUpdated?.id)).toEqual([jobId]);
    await s.dispose();
  });
});

describe('configuration', () => {
  const base = { PORT: '0', EMULATOR_DB: ':memory:' };

  it('defaults to none on a loopback address, so `npm start` needs no token', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) {
      expect(loadConfig({ ...base, HOST: host }).auth.mode, host).toBe('none');
    }
    expect(loadConfig({ ...base, HOST: '127.0.0.1', GATEWAY_TOKENS }).auth.mode).toBe('tokens');
  });

  it('refuses to start on a non-loopback address without authentication, with a clear message', () => {
    expect(() => loadConfig({ ...base, HOST: '0.0.0.0' })).toThrow(
      /Refusing to start without authentication on HOST=0\.0\.0\.0, which is not a loopback address: set AUTH_MODE=tokens/,
    );
    expect(() => loadConfig({ ...base, HOST: '192.168.1.5', AUTH_MODE: 'none' })).toThrow(/AUTH_MODE=none is only allowed on a loopback address/);
    expect(() => loadConfig({ ...base, HOST: '::', AUTH_MODE: 'none' })).toThrow(/loopback/);
    expect(loadConfig({ ...base, HOST: '0.0.0.0', AUTH_MODE: 'passthrough' }).auth.mode).toBe('passthrough');
    expect(loadConfig({ ...base, HOST: '0.0.0.0', AUTH_MODE: 'tokens', GATEWAY_TOKENS }).auth.mode).toBe('tokens');
    expect(() => loadConfig({ ...base, AUTH_MODE: 'open' })).toThrow(/AUTH_MODE must be one of tokens, passthrough, none/);
  });

  it('validates GATEWAY_TOKENS at start-up and keeps only hashes of the tokens', () => {
    const bad: [string | undefined, RegExp][] = [
      [undefined, /GATEWAY_TOKENS is not set/],
      ['not json', /is not valid JSON/],
      ['{}', /non-empty JSON array/],
      ['[]', /non-empty JSON array/],
      ['[{"token":"short","scopes":["read"]}]', /\[0\]\.token must be a string of 16–512/],
      [`[{"token":"${'a'.repeat(20)}","scopes":["admin"]}]`, /\[0\]\.scopes must be a non-empty array of "read", "write"/],
      [`[{"token":"${'a'.repeat(20)}","scopes":[]}]`, /\[0\]\.scopes/],
      [`[{"token":"${'a'.repeat(20)}","scopes":["read"]},{"token":"${'a'.repeat(20)}","scopes":["write"]}]`, /\[1\]\.token is listed twice/],
      [`[{"token":"${'a'.repeat(20)}","scopes":["read"],"role":"x"}]`, /unknown key\(s\) "role"/],
      [`[{"token":"${'a b'.repeat(10)}","scopes":["read"]}]`, /printable characters without spaces/],
    ];
    for (const [value, message] of bad) {
      expect(() => loadConfig({ ...base, HOST: '127.0.0.1', AUTH_MODE: 'tokens', ...(value === undefined ? {} : { GATEWAY_TOKENS: value }) }), value).toThrow(
        message,
      );
    }
    const config = loadConfig({ ...base, HOST: '127.0.0.1', AUTH_MODE: 'tokens', GATEWAY_TOKENS });
    const dump = JSON.stringify(config, (_k, v) => (v instanceof Set ? [...v] : v));
    for (const t of Object.values(TOKENS)) expect(dump).not.toContain(t);
  });

  it('`npm start` on 0.0.0.0 without AUTH_MODE exits with the message and never listens', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, 'src/server.ts')], {
      cwd: ROOT,
      env: { ...process.env, HOST: '0.0.0.0', PORT: '0', EMULATOR_DB: ':memory:', AUTH_MODE: '', GATEWAY_TOKENS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).not.toBe(0);
    expect(out).toMatch(/Refusing to start without authentication on HOST=0\.0\.0\.0/);
    expect(out).not.toMatch(/GraphQL API at/);
  });
});
