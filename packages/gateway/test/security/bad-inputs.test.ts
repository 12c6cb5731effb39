/**
 * A table of bad inputs, black-box over HTTP and graphql-ws, run against two servers: the default one (JSON
 * POSTs take the fast path) and one with GRAPHQL_FAST_PATH=0 (yoga serves everything). Each input gets a clear
 * error — a status, an `extensions.code` and, where there is one, the field — and afterwards the server still
 * answers /health and a query, and the upstream (the local service) has stored nothing: no new job or file,
 * no write request at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, trainingJsonl, type RunningEmulator, uploadTraining, waitForStatus } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';
import { rawSocket, sse, storedCounts, wsOperation, wsSession, writesAt } from './helpers.js';

const SERVER_KEY = 'sk-server-key-badinputs-01234';
const TOKEN = 'tok-badinputs-admin-0123456789';
const MAX_UPLOAD = 64 * 1024;
const MODEL = 'gpt-4o-mini-2024-07-18';

interface Outcome {
  status: number;
  text: string;
  data?: any;
  errors?: { message: string; extensions?: Record<string, any> }[];
}

/** What a case must produce: a GraphQL error (code, field, limit) or a ValidationError result of a mutation. */
type Expectation =
  | { status: number; code: string; field?: string; limit?: string }
  | { status: 200; validationError: string; field: string }
  | { close: number }
  | { wsError: string; field?: string; limit?: string };

interface Case {
  name: string;
  run(s: Server): Promise<Outcome | { close: number } | { wsErrors: any[] }>;
  expect: Expectation;
  /** The upstream is the one that judges this input (file formats): it gets the request and refuses it. */
  upstreamRefuses?: boolean;
}

interface Server {
  api: ApiHandle;
  trainingFile: string;
}

const ACCEPT = 'application/graphql-response+json';

async function read(res: Response): Promise<Outcome> {
  const text = await res.text();
  let body: { data?: any; errors?: any[] } = {};
  try {
    body = JSON.parse(text);
  } catch {
    /* checked by the expectations */
  }
  return { status: res.status, text, ...body };
}

const post = (s: Server, body: string | Uint8Array | ReadableStream, headers: Record<string, string> = {}) =>
  fetch(`${s.api.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT, authorization: `Bearer ${TOKEN}`, ...headers },
    body,
    ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit).then(read);

const gql = (s: Server, query: string, variables?: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  post(s, JSON.stringify({ query, variables, ...extra }));

function upload(s: Server, files: { content: string | Uint8Array; name: string }[], purpose = 'FINE_TUNE', withOperations = true) {
  const form = new FormData();
  if (withOperations) {
    form.set(
      'operations',
      JSON.stringify({
        query: `mutation($file: Upload!, $purpose: FilePurpose!) { uploadFile(file: $file, purpose: $purpose) { __typename ... on ValidationError { field message } ... on Error { message } } }`,
        variables: { file: null, purpose },
      }),
    );
  }
  form.set('map', JSON.stringify(Object.fromEntries(files.map((_, i) => [String(i), ['variables.file']]))));
  files.forEach((f, i) => form.set(String(i), new Blob([typeof f.content === 'string' ? f.content : Buffer.from(f.content)]), f.name));
  return fetch(`${s.api.url}/graphql`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, accept: ACCEPT }, body: form }).then(read);
}

const CREATE = `mutation($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { __typename ... on ValidationError { field message } ... on Error { message } } }`;
const create = (s: Server, input: Record<string, unknown>) => gql(s, CREATE, { input: { model: MODEL, trainingFile: s.trainingFile, ...input } });

/** A job's selection going checkpoints → job → checkpoints … `levels` times (4 levels of depth each). */
const deepSelection = (levels: number) => {
  let inner = 'id';
  for (let i = 0; i < levels; i++) inner = `checkpoints(first: 1) { edges { node { job { ${inner} } } } }`;
  return inner;
};
const deepQuery = (levels: number) => `{ fineTuningJob(id: "ftjob-abc") { ${deepSelection(levels)} } }`;

/**
 * A raw websocket: send frames (after a connection_init, wait for the acknowledgement first, since the server
 * handles messages asynchronously), then report how the server closed it.
 */
async function wsFrames(s: Server, frames: (string | Buffer)[], protocol: string | string[] = 'graphql-transport-ws') {
  const { ws, messages, closed } = await rawSocket(s.api.url, protocol);
  let acked = false;
  for (const f of frames) {
    ws.send(f);
    if (f === INIT && !acked && frames.length > 1 && frames[1] !== INIT) {
      const until = Date.now() + 5000;
      while (!messages.some((m) => (m as { type?: string }).type === 'connection_ack') && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      acked = true;
    }
  }
  const timer = setTimeout(() => ws.terminate(), 5000);
  const c = await closed;
  clearTimeout(timer);
  return { close: c.code };
}

const INIT = JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${TOKEN}` } });

/** Runs one operation over graphql-ws (authenticated) and returns its GraphQL errors. */
async function overWs(s: Server, query: string, variables: Record<string, unknown> = {}) {
  const session = wsSession(s.api.url, { authorization: `Bearer ${TOKEN}` });
  try {
    const r = await wsOperation(session.client, query, variables);
    const errors = Array.isArray(r.error) ? r.error : r.results.flatMap((x) => x.errors ?? []);
    return { wsErrors: errors };
  } finally {
    await session.dispose();
  }
}

const CASES: Case[] = [
  // ---- the request itself -------------------------------------------------------------------------------
  { name: 'malformed JSON', run: (s) => post(s, '{"query": "{ __typename }"'), expect: { status: 400, code: 'BAD_REQUEST' } },
  {
    name: 'a batch (JSON array)',
    run: (s) => post(s, '[{"query":"{ __typename }"},{"query":"{ __typename }"}]'),
    expect: { status: 400, code: 'BAD_REQUEST' },
  },
  { name: 'a JSON string instead of an object', run: (s) => post(s, '"{ __typename }"'), expect: { status: 400, code: 'BAD_REQUEST' } },
  { name: 'missing query', run: (s) => post(s, '{"variables":{}}'), expect: { status: 400, code: 'BAD_REQUEST' } },
  { name: 'query is a number', run: (s) => post(s, '{"query":42}'), expect: { status: 400, code: 'BAD_REQUEST' } },
  { name: 'variables is a string', run: (s) => post(s, '{"query":"{ __typename }","variables":"{}"}'), expect: { status: 400, code: 'BAD_REQUEST' } },
  { name: 'an unknown body parameter', run: (s) => post(s, '{"query":"{ __typename }","queryId":"x"}'), expect: { status: 400, code: 'BAD_REQUEST' } },
  {
    name: 'oversized JSON body (Content-Length over 1 MiB)',
    run: (s) => gql(s, '{ __typename }', { pad: 'x'.repeat(1_100_000) }),
    expect: { status: 413, code: 'REQUEST_ENTITY_TOO_LARGE' },
  },
  {
    name: 'oversized chunked body (no Content-Length)',
    run: (s) =>
      post(
        s,
        new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('{"query":"{ __typename }","variables":{"pad":"'));
            for (let i = 0; i < 12; i++) c.enqueue(new TextEncoder().encode('y'.repeat(100_000)));
            c.enqueue(new TextEncoder().encode('"}}'));
            c.close();
          },
        }),
      ),
    expect: { status: 413, code: 'REQUEST_ENTITY_TOO_LARGE' },
  },
  {
    name: 'unsupported content type (text/plain) from a script',
    run: (s) => post(s, '{"query":"{ __typename }"}', { 'content-type': 'text/plain' }),
    expect: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  },
  {
    name: 'a cross-site browser form POST (CSRF)',
    run: (s) =>
      post(s, 'query=mutation { deleteFile(id: "file-abc") { __typename } }', {
        'content-type': 'application/x-www-form-urlencoded',
        origin: 'https://evil.example',
        'sec-fetch-site': 'cross-site',
      }),
    expect: { status: 403, code: 'CSRF_HEADER_REQUIRED' },
  },
  {
    name: 'a mutation over GET',
    run: (s) =>
      fetch(`${s.api.url}/graphql?query=${encodeURIComponent(`mutation { deleteFile(id: "${s.trainingFile}") { __typename } }`)}`, {
        headers: { accept: ACCEPT, authorization: `Bearer ${TOKEN}` },
      }).then(read),
    expect: { status: 405, code: 'BAD_REQUEST' },
  },
  {
    name: 'a GET without a query',
    run: (s) => fetch(`${s.api.url}/graphql?variables=%7B%7D`, { headers: { accept: ACCEPT, authorization: `Bearer ${TOKEN}` } }).then(read),
    expect: { status: 400, code: 'BAD_REQUEST' },
  },
  {
    name: 'an operationName the document does not have',
    run: (s) => gql(s, 'query A { __typename }', undefined, { operationName: 'B' }),
    expect: { status: 400, code: 'OPERATION_RESOLUTION_FAILURE' },
  },

  // ---- the document ---------------------------------------------------------------------------------------
  { name: 'syntax error', run: (s) => gql(s, '{ fineTuningJob(id: "ftjob-abc") { id '), expect: { status: 400, code: 'GRAPHQL_PARSE_FAILED' } },
  {
    name: 'an unknown field',
    run: (s) => gql(s, '{ fineTuningJobs { edges { node { secretKey } } } }'),
    expect: { status: 400, code: 'GRAPHQL_VALIDATION_FAILED' },
  },
  {
    name: 'a literal of the wrong type',
    run: (s) => gql(s, '{ fineTuningJobs(first: "ten") { edges { cursor } } }'),
    expect: { status: 400, code: 'GRAPHQL_VALIDATION_FAILED' },
  },
  { name: 'a missing required argument', run: (s) => gql(s, '{ fineTuningJob { id } }'), expect: { status: 400, code: 'GRAPHQL_VALIDATION_FAILED' } },
  { name: 'depth bomb', run: (s) => gql(s, deepQuery(5)), expect: { status: 400, code: 'QUERY_LIMIT_EXCEEDED', limit: 'depth' } },
  {
    name: 'alias bomb',
    run: (s) => gql(s, `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: fineTuningJob(id: "ftjob-abc") { id }`).join(' ')} }`),
    expect: { status: 400, code: 'QUERY_LIMIT_EXCEEDED', limit: 'aliases' },
  },
  {
    name: 'cost bomb (100 jobs × 100 events × 100 checkpoints)',
    run: (s) =>
      gql(
        s,
        '{ fineTuningJobs(first: 100) { edges { node { id events(first: 100) { edges { node { id message } } } checkpoints(first: 100) { edges { node { id stepNumber } } } } } } }',
      ),
    expect: { status: 400, code: 'QUERY_LIMIT_EXCEEDED', limit: 'cost' },
  },
  { name: 'token bomb', run: (s) => gql(s, `{ ${'__typename '.repeat(3000)}}`), expect: { status: 400, code: 'QUERY_LIMIT_EXCEEDED', limit: 'tokens' } },
  {
    name: 'directive bomb',
    run: (s) => gql(s, `{ __typename ${'@skip(if: false) '.repeat(40)}}`),
    expect: { status: 400, code: 'QUERY_LIMIT_EXCEEDED', limit: 'directives' },
  },
  {
    name: 'first: 10000 (literal)',
    run: (s) => gql(s, '{ fineTuningJobs(first: 10000) { edges { cursor } } }'),
    expect: { status: 400, code: 'BAD_USER_INPUT', field: 'first' },
  },
  {
    name: 'first: -1 (literal)',
    run: (s) => gql(s, '{ files(first: -1) { edges { cursor } } }'),
    expect: { status: 400, code: 'BAD_USER_INPUT', field: 'first' },
  },

  // ---- variables and arguments ----------------------------------------------------------------------------
  {
    name: 'a variable of the wrong type',
    run: (s) => gql(s, 'query($first: Int) { fineTuningJobs(first: $first) { edges { cursor } } }', { first: 'many' }),
    expect: { status: 400, code: 'BAD_USER_INPUT', field: '$first' },
  },
  {
    name: 'first: 10000 (variable)',
    run: (s) => gql(s, 'query($first: Int) { fineTuningJobs(first: $first) { edges { cursor } } }', { first: 10000 }),
    expect: { status: 200, code: 'BAD_USER_INPUT', field: 'first' },
  },
  {
    name: 'events(first: 101) of a job',
    run: (s) => gql(s, 'query($n: Int) { fineTuningJobs(first: 1) { edges { node { events(first: $n) { edges { cursor } } } } } }', { n: 101 }),
    expect: { status: 200, code: 'BAD_USER_INPUT', field: 'first' },
  },
  {
    name: 'an id with an unknown prefix',
    run: (s) => gql(s, '{ fineTuningJob(id: "job-123") { id } }'),
    expect: { status: 200, code: 'BAD_USER_INPUT', field: 'id' },
  },
  { name: 'an empty id', run: (s) => gql(s, '{ fineTuningJob(id: "") { id } }'), expect: { status: 200, code: 'BAD_USER_INPUT', field: 'id' } },
  {
    name: 'a huge id (10,000 characters)',
    run: (s) => gql(s, 'query($id: ID!) { fineTuningJob(id: $id) { id } }', { id: `ftjob-${'a'.repeat(10_000)}` }),
    expect: { status: 200, code: 'BAD_USER_INPUT', field: 'id' },
  },
  {
    name: 'a file id where a job id is expected',
    run: (s) => gql(s, '{ fineTuningJob(id: "file-abc123") { id } }'),
    expect: { status: 200, code: 'BAD_USER_INPUT', field: 'id' },
  },
  {
    name: 'node() with an id of no known type',
    run: (s) => gql(s, '{ node(id: "user-42") { id } }'),
    expect: { status: 200, code: 'BAD_USER_INPUT', field: 'id' },
  },

  // ---- mutation inputs: ValidationError results naming the field, before any upstream call ----------------
  {
    name: 'nEpochs 0',
    run: (s) => create(s, { hyperparameters: { nEpochs: 0 } }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.hyperparameters.nEpochs' },
  },
  {
    name: 'nEpochs 51',
    run: (s) => create(s, { hyperparameters: { nEpochs: 51 } }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.hyperparameters.nEpochs' },
  },
  {
    name: 'batchSize 300 (supervised method)',
    run: (s) => create(s, { method: { type: 'SUPERVISED', supervised: { hyperparameters: { batchSize: 300 } } } }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.method.supervised.hyperparameters.batchSize' },
  },
  {
    name: 'learningRateMultiplier -1',
    run: (s) => create(s, { hyperparameters: { learningRateMultiplier: -1 } }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.hyperparameters.learningRateMultiplier' },
  },
  {
    name: 'DPO beta 3',
    run: (s) => create(s, { method: { type: 'DPO', dpo: { hyperparameters: { beta: 3 } } } }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.method.dpo.hyperparameters.beta' },
  },
  { name: 'seed -5', run: (s) => create(s, { seed: -5 }), expect: { status: 200, validationError: 'ValidationError', field: 'input.seed' } },
  {
    name: 'suffix of 65 characters',
    run: (s) => create(s, { suffix: 's'.repeat(65) }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.suffix' },
  },
  {
    name: 'metadata with 17 pairs',
    run: (s) => create(s, { metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.metadata' },
  },
  {
    name: 'metadata with a non-string value',
    run: (s) => create(s, { metadata: { team: { nested: true } } }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.metadata.team' },
  },
  { name: 'an empty model', run: (s) => create(s, { model: '  ' }), expect: { status: 200, validationError: 'ValidationError', field: 'input.model' } },
  {
    name: 'a job id as trainingFile',
    run: (s) => create(s, { trainingFile: 'ftjob-abc123' }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.trainingFile' },
  },
  {
    name: 'an idempotencyKey of 300 characters',
    run: (s) => create(s, { idempotencyKey: 'k'.repeat(300) }),
    expect: { status: 200, validationError: 'ValidationError', field: 'input.idempotencyKey' },
  },
  {
    name: 'a file id to cancelFineTuningJob',
    run: (s) => gql(s, 'mutation { cancelFineTuningJob(id: "file-abc123") { __typename ... on ValidationError { field message } } }'),
    expect: { status: 200, validationError: 'ValidationError', field: 'id' },
  },
  {
    name: 'a job id to deleteFile',
    run: (s) => gql(s, 'mutation { deleteFile(id: "ftjob-abc123") { __typename ... on ValidationError { field message } } }'),
    expect: { status: 200, validationError: 'ValidationError', field: 'id' },
  },
  {
    name: 'an input field of the wrong type (variable coercion)',
    run: (s) => gql(s, CREATE, { input: { model: MODEL, trainingFile: s.trainingFile, hyperparameters: { nEpochs: 'three' } } }),
    expect: { status: 400, code: 'BAD_USER_INPUT', field: 'input.hyperparameters.nEpochs' },
  },

  // ---- uploads (multipart, served by yoga) ------------------------------------------------------------------
  {
    name: 'a non-JSONL upload',
    run: (s) => upload(s, [{ content: 'Dear team,\nhere are my notes, not JSON lines.\n', name: 'notes.txt' }]),
    expect: { status: 200, validationError: 'ValidationError', field: 'file' },
    upstreamRefuses: true,
  },
  {
    name: `an oversized upload (over MAX_UPLOAD_BYTES=${MAX_UPLOAD})`,
    run: (s) => upload(s, [{ content: trainingJsonl(400), name: 'big.jsonl' }]),
    expect: { status: 413, code: 'REQUEST_ENTITY_TOO_LARGE' },
  },
  {
    name: 'two files in one upload',
    run: (s) =>
      upload(s, [
        { content: trainingJsonl(10), name: 'a.jsonl' },
        { content: trainingJsonl(10), name: 'b.jsonl' },
      ]),
    expect: { status: 400, code: 'BAD_REQUEST' },
  },
  {
    name: 'a multipart request without operations',
    run: (s) => upload(s, [{ content: trainingJsonl(10), name: 'a.jsonl' }], 'FINE_TUNE', false),
    expect: { status: 400, code: 'BAD_REQUEST' },
  },
  {
    name: 'an upload purpose that does not exist',
    run: (s) => upload(s, [{ content: trainingJsonl(10), name: 'a.jsonl' }], 'EVERYTHING'),
    expect: { status: 400, code: 'BAD_USER_INPUT', field: '$purpose' },
  },
  {
    name: 'an upload purpose that cannot be uploaded (FINE_TUNE_RESULTS)',
    run: (s) => upload(s, [{ content: trainingJsonl(10), name: 'a.jsonl' }], 'FINE_TUNE_RESULTS'),
    expect: { status: 200, validationError: 'ValidationError', field: 'purpose' },
  },

  // ---- subscriptions ----------------------------------------------------------------------------------------
  {
    name: 'an SSE subscription to a file id',
    run: async (s) => {
      const r = await sse(s.api.url, 'subscription { fineTuningJobUpdated(id: "file-abc123") { id } }', {}, { token: TOKEN });
      return { status: r.status, text: JSON.stringify(r.events), errors: r.events.flatMap((e) => e.errors ?? []) };
    },
    expect: { status: 200, code: 'BAD_USER_INPUT', field: 'id' },
  },
  {
    name: 'an SSE subscription with a depth bomb',
    run: async (s) => {
      const r = await sse(s.api.url, `subscription { fineTuningJobUpdated(id: "ftjob-abc") { ${deepSelection(5)} } }`, {}, { token: TOKEN });
      return { status: r.status, text: JSON.stringify(r.events), errors: r.events.flatMap((e) => e.errors ?? []) };
    },
    expect: { status: 200, code: 'QUERY_LIMIT_EXCEEDED', limit: 'depth' },
  },

  // ---- graphql-ws ---------------------------------------------------------------------------------------------
  { name: 'ws: a garbage frame', run: (s) => wsFrames(s, [INIT, 'this is not json {{{']), expect: { close: 4400 } },
  { name: 'ws: a binary garbage frame', run: (s) => wsFrames(s, [Buffer.from([0xff, 0x00, 0x13, 0x37])]), expect: { close: 4400 } },
  { name: 'ws: an unknown message type', run: (s) => wsFrames(s, [INIT, JSON.stringify({ type: 'hack', payload: {} })]), expect: { close: 4400 } },
  {
    name: 'ws: subscribe before connection_init',
    run: (s) => wsFrames(s, [JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ __typename }' } })]),
    expect: { close: 4401 },
  },
  { name: 'ws: a second connection_init', run: (s) => wsFrames(s, [INIT, INIT]), expect: { close: 4429 } },
  {
    name: 'ws: subscribe without a query',
    run: (s) => wsFrames(s, [INIT, JSON.stringify({ id: '1', type: 'subscribe', payload: { variables: {} } })]),
    expect: { close: 4400 },
  },
  {
    name: 'ws: the same subscription id twice',
    run: (s) => {
      const sub = JSON.stringify({ id: 'dup', type: 'subscribe', payload: { query: 'subscription { fineTuningJobUpdated(id: "ftjob-abcdef") { id } }' } });
      return wsFrames(s, [INIT, sub, sub]);
    },
    expect: { close: 4409 },
  },
  {
    name: 'ws: a frame over the size limit',
    run: (s) => wsFrames(s, [INIT, JSON.stringify({ type: 'ping', payload: { pad: 'z'.repeat(1_100_000) } })]),
    expect: { close: 1009 },
  },
  { name: 'ws: no graphql-transport-ws subprotocol', run: (s) => wsFrames(s, [INIT], []), expect: { close: 4406 } },
  {
    name: 'ws: a subscription to a file id',
    run: (s) => overWs(s, 'subscription { fineTuningJobEvents(jobId: "file-abc123") { id } }'),
    expect: { wsError: 'BAD_USER_INPUT', field: 'jobId' },
  },
  {
    name: 'ws: an alias bomb',
    run: (s) =>
      overWs(
        s,
        `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: __typename`).join(' ')} fineTuningJobs { edges { cursor } } a: fineTuningJobs { edges { cursor } } b: files { edges { cursor } } ${Array.from({ length: 20 }, (_, i) => `f${i}: files { edges { cursor } }`).join(' ')} }`,
      ),
    expect: { wsError: 'QUERY_LIMIT_EXCEEDED', limit: 'aliases' },
  },
  { name: 'ws: a syntax error', run: (s) => overWs(s, 'subscription { fineTuningJobUpdated(id: '), expect: { wsError: 'GRAPHQL_PARSE_FAILED' } },
];

function check(c: Case, out: Awaited<ReturnType<Case['run']>>) {
  const e = c.expect;
  if ('close' in e) {
    expect((out as { close: number }).close).toBe(e.close);
    return;
  }
  if ('wsError' in e) {
    const errors = (out as { wsErrors: any[] }).wsErrors;
    const err = errors.find((x) => x.extensions?.code === e.wsError && (!e.limit || x.extensions?.limit === e.limit));
    expect(err, JSON.stringify(errors)).toBeTruthy();
    if (e.field) expect(err.extensions.field).toBe(e.field);
    expect(err.message.length).toBeGreaterThan(5);
    return;
  }
  const o = out as Outcome;
  expect(o.status, o.text.slice(0, 500)).toBe(e.status);
  // A clear answer is also a short one: no input is echoed back at length.
  expect(o.text.length, o.text.slice(0, 200)).toBeLessThan(10_000);
  if ('validationError' in e) {
    const result = Object.values(o.data ?? {})[0] as { __typename: string; field: string; message: string };
    expect(result, o.text).toMatchObject({ __typename: e.validationError, field: e.field });
    expect(result.message.length).toBeGreaterThan(5);
    return;
  }
  const err = o.errors?.find((x) => x.extensions?.code === e.code && (!e.limit || x.extensions?.limit === e.limit));
  expect(err, o.text.slice(0, 500)).toBeTruthy();
  if (e.field) expect(err!.extensions!.field).toBe(e.field);
  expect(err!.message.length).toBeGreaterThan(5);
}

it('has at least 30 bad inputs', () => {
  expect(CASES.length).toBeGreaterThanOrEqual(30);
});

let emu: RunningEmulator;
beforeAll(async () => {
  emu = await startEmulator({ stepMs: 5 });
  // One job, so that nested connections (events of a job) have something to resolve.
  const client = emu.client(SERVER_KEY);
  const file = await uploadTraining(client, trainingJsonl(12));
  const job = await client.fineTuning.jobs.create({ model: MODEL, training_file: file, hyperparameters: { n_epochs: 1 } });
  // Finished before the cases run: its results file must not appear in the middle of a count.
  await waitForStatus(client, job.id, ['succeeded']);
});
afterAll(async () => {
  await emu?.close();
});

describe.each([
  ['fast path', {}],
  ['yoga only (GRAPHQL_FAST_PATH=0)', { GRAPHQL_FAST_PATH: '0' }],
])('bad inputs, %s', (_label, extraEnv) => {
  const s = {} as Server;
  beforeAll(async () => {
    s.api = await startApi({
      baseURL: emu.baseURL,
      apiKey: SERVER_KEY,
      env: {
        AUTH_MODE: 'tokens',
        GATEWAY_TOKENS: JSON.stringify([{ token: TOKEN, scopes: ['read', 'write'], name: 'admin' }]),
        MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
        ...extraEnv,
      },
    });
    s.trainingFile = await uploadTraining(emu.client(SERVER_KEY), trainingJsonl(12));
  });
  afterAll(async () => {
    await s.api?.close();
  });

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const client = emu.client(SERVER_KEY);
    const stored = await storedCounts(client);
    const writes = writesAt(emu);
    const seen = emu.requests.length;

    check(c, await c.run(s));

    // The server is still up, still answers, and nothing was stored upstream.
    const health = await fetch(`${s.api.url}/health`);
    expect(health.status).toBe(200);
    const q = await gql(s, '{ files(first: 1) { edges { cursor } } }');
    expect(q.errors, q.text).toBeUndefined();
    if (c.upstreamRefuses) {
      const sent = emu.requests.slice(seen).filter((r) => r.method !== 'GET');
      expect(sent.length).toBeLessThanOrEqual(1);
      expect(sent.every((r) => r.status >= 400)).toBe(true);
    } else {
      expect(writesAt(emu), 'write requests at the upstream').toBe(writes);
    }
    expect(await storedCounts(client)).toEqual(stored);
  });

  it('still serves websockets after the abuse', async () => {
    const session = wsSession(s.api.url, { authorization: `Bearer ${TOKEN}` });
    const r = await wsOperation(session.client, '{ __typename }');
    expect(r.results[0]!.data).toEqual({ __typename: 'Query' });
    await session.dispose();
  });
});
