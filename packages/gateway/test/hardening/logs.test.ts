/**
 * Structured logs: JSON lines (pino), a request id on every line of a request (a sane incoming x-request-id is
 * kept, anything else replaced), returned as x-request-id on every path (fast path, yoga, GET, /health, /v1 of
 * the embedded service), and one access line per request with method, path, status, duration and operation
 * name, and nothing else from the request: no query string, variables, headers or key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'graphql-ws';
import { WebSocket } from 'ws';
import { uploadTraining } from '@finetune-graphql/emulator/testing';
import { collect, type Gateway, KEY, sleep, startGateway, startUpstream, type TimedRequest, type Upstream, wsClient } from './helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SECRET_VARIABLE = 'ftjob-variable-value-should-not-be-logged';

let up: Upstream;
let gw: Gateway;
let jobId: string;
let heal: (r: TimedRequest) => void = () => undefined;

beforeAll(async () => {
  up = await startUpstream({ stepMs: 1000, onTimed: (r) => heal(r) });
  const c = up.client(KEY);
  jobId = (await c.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: await uploadTraining(c) })).id;
  gw = await startGateway(up.baseURL, { LOG_LEVEL: 'debug' });
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});

const accessLines = () => gw.logLines().filter((l) => l.msg === 'request');

describe('request ids and access lines', () => {
  it('keeps a sane x-request-id, puts it on every line of the request, and logs one access line without variables', async () => {
    // The first upstream call fails (503), so the request also logs a retry line.
    up.emulator.setFaults({ errorRate: 1, errorStatuses: [503], routes: ['GET /v1/fine_tuning/jobs/:id'] });
    heal = (r) => {
      if (r.fault === 'error') up.emulator.setFaults(undefined);
    };
    const r = await gw.gql(
      'query JobStatus($id: ID!) { fineTuningJob(id: $id) { id status } }',
      { id: jobId, unused: SECRET_VARIABLE },
      { 'x-request-id': 'client-req-42' },
    );
    heal = () => undefined;
    expect(r.errors).toBeUndefined();
    expect(r.headers.get('x-request-id')).toBe('client-req-42');
    await sleep(20);
    const mine = gw.logLines().filter((l) => l.reqId === 'client-req-42');
    expect(mine.map((l) => l.msg)).toEqual(['upstream call failed; retrying', 'request']);
    expect(mine[0]).toMatchObject({ level: 20, failure: 'ambiguous', status: 503 });
    const access = mine[1]!;
    expect(access).toMatchObject({
      level: 30,
      service: 'finetune-graphql',
      method: 'POST',
      path: '/graphql',
      status: 200,
      operation: 'JobStatus',
      operationType: 'query',
    });
    expect(typeof access.durationMs).toBe('number');
    expect(typeof access.time).toBe('number');
    expect(Object.keys(access).sort()).toEqual(
      ['durationMs', 'level', 'method', 'msg', 'operation', 'operationType', 'path', 'reqId', 'service', 'status', 'time'].sort(),
    );
    expect(gw.logs()).not.toContain(SECRET_VARIABLE);
    expect(gw.logs()).not.toContain(jobId);
  });

  it('replaces an x-request-id that is not sane with a new one', async () => {
    for (const bad of ['has spaces in it', 'x'.repeat(200), '"quoted"', '{"json":1}', '']) {
      const r = await gw.gql('{ __typename }', {}, { 'x-request-id': bad });
      const id = r.headers.get('x-request-id')!;
      expect(id).toMatch(UUID);
      await sleep(5);
      expect(accessLines().at(-1)!.reqId).toBe(id);
    }
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add((await gw.gql('{ __typename }')).headers.get('x-request-id')!);
    expect(ids.size).toBe(5);
  });

  it("works on yoga's path (GET with a query string), for browsers, /health, /ready and unknown paths", async () => {
    up.emulator.setFaults({ errorRate: 1, errorStatuses: [502], routes: ['GET /v1/fine_tuning/jobs'] });
    heal = (r) => {
      if (r.fault === 'error') up.emulator.setFaults(undefined);
    };
    const viaYoga = await fetch(`${gw.endpoint}?query=${encodeURIComponent('query ViaYoga { fineTuningJobs(first: 1) { edges { cursor } } }')}`, {
      headers: { accept: 'application/json', 'x-request-id': 'yoga-1' },
    });
    expect(viaYoga.status).toBe(200);
    expect(viaYoga.headers.get('x-request-id')).toBe('yoga-1');
    heal = () => undefined;
    const browser = await fetch(gw.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: gw.url, 'sec-fetch-site': 'same-origin', 'x-request-id': 'browser-1' },
      body: JSON.stringify({ query: 'query FromBrowser { fineTuningJobs(first: 1) { edges { cursor } } }' }),
    });
    expect(browser.status).toBe(200);
    expect(browser.headers.get('x-request-id')).toBe('browser-1');
    await browser.text();

    const query = encodeURIComponent(`query ByGet { fineTuningJob(id: "${SECRET_VARIABLE}") { id } }`);
    const viaGet = await fetch(`${gw.endpoint}?query=${query}`, { headers: { accept: 'application/json', 'x-request-id': 'get-1' } });
    expect(viaGet.headers.get('x-request-id')).toBe('get-1');
    await viaGet.text();

    for (const path of ['/health', '/ready', '/nowhere']) {
      const res = await fetch(`${gw.url}${path}`, { headers: { 'x-request-id': `p${path.replace('/', '-')}` } });
      await res.text();
      expect(res.headers.get('x-request-id')).toBe(`p${path.replace('/', '-')}`);
    }
    await sleep(20);
    const byId = (id: string) => accessLines().find((l) => l.reqId === id);
    expect(byId('yoga-1')).toMatchObject({ method: 'GET', path: '/graphql', status: 200, operation: 'ViaYoga' });
    expect(byId('browser-1')).toMatchObject({ method: 'POST', path: '/graphql', status: 200, operation: 'FromBrowser' });
    // (yoga's own debug lines carry no request id: yoga logs them without the request.)
    const yogaLines = gw
      .logLines()
      .filter((l) => l.reqId === 'yoga-1')
      .map((l) => l.msg);
    expect(yogaLines).toEqual(['upstream call failed; retrying', 'request']);
    expect(byId('get-1')).toMatchObject({ method: 'GET', path: '/graphql', operation: 'ByGet' });
    expect(byId('p-health')).toMatchObject({ method: 'GET', path: '/health', status: 200 });
    expect(byId('p-ready')).toMatchObject({ path: '/ready', status: 200 });
    expect(byId('p-nowhere')).toMatchObject({ path: '/nowhere', status: 404 });
    expect(gw.logs()).not.toContain(SECRET_VARIABLE);
  });

  it('logs a websocket connection when it ends', async () => {
    const client = wsClient(gw.wsUrl);
    const s = collect<unknown>(client, 'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id status } }', { id: jobId });
    await sleep(300);
    await client.dispose();
    await s.done;
    await sleep(50);
    const line = accessLines().find((l) => l.websocket === true);
    expect(line).toMatchObject({ method: 'GET', path: '/graphql', status: 101 });
    expect(line!.reqId).toMatch(UUID);
  });

  it("lines written for a websocket operation carry the connection's request id", async () => {
    up.emulator.setFaults({ errorRate: 1, errorStatuses: [503], routes: ['GET /v1/fine_tuning/jobs/:id'] });
    heal = (r) => {
      if (r.fault === 'error') up.emulator.setFaults(undefined);
    };
    const client = createClient({
      url: gw.wsUrl,
      webSocketImpl: class extends WebSocket {
        constructor(url: string, protocols?: string | string[]) {
          super(url, protocols, { headers: { 'x-request-id': 'ws-conn-7' } });
        }
      },
      retryAttempts: 0,
    });
    const result = await new Promise<any>((resolve, reject) => {
      let value: unknown;
      client.subscribe(
        { query: 'query OverWs($id: ID!) { fineTuningJob(id: $id) { id status } }', variables: { id: jobId } },
        {
          next: (v) => (value = v),
          error: reject,
          complete: () => resolve(value),
        },
      );
    });
    heal = () => undefined;
    expect(result.errors).toBeUndefined();
    await client.dispose();
    await sleep(50);
    const mine = gw
      .logLines()
      .filter((l) => l.reqId === 'ws-conn-7')
      .map((l) => l.msg);
    expect(mine).toEqual(['upstream call failed; retrying', 'request']);
  });

  it('every line is JSON, and no line holds the API key or an authorization header', async () => {
    const lines = gw.logs().split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(10);
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
    expect(gw.logs()).not.toContain(KEY);
    expect(gw.logs().toLowerCase()).not.toContain('bearer');
  });
});

describe('the embedded service', () => {
  it('gets request ids on /v1 too', async () => {
    const embedded = await startGateway('', { OPENAI_BASE_URL: '', OPENAI_API_KEY: '', EMULATOR_DB: ':memory:' });
    try {
      const res = await fetch(`${embedded.url}/v1/files`, { headers: { authorization: 'Bearer sk-local-dev', 'x-request-id': 'v1-call' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe('v1-call');
      await res.text();
      await sleep(20);
      expect(embedded.logLines().find((l) => l.reqId === 'v1-call')).toMatchObject({ method: 'GET', path: '/v1/files', status: 200 });
    } finally {
      await embedded.close();
    }
  });
});
