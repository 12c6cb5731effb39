/**
 * The state and helpers of the secret-leak tee (see test/security/leak-tee.ts, the vitest setup file that
 * installs it for every test file). Test helpers import registerSecret/registerEnvSecrets from here.
 */
import childProcess from 'node:child_process';
import http from 'node:http';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { Socket } from 'node:net';
import { Writable } from 'node:stream';
import WebSocket from 'ws';
import { LOCAL_API_KEY } from '../../src/config.js';

interface TeeState {
  secrets: Set<string>;
  /** Teed text by channel. */
  texts: { channel: string; text: string }[];
  bytes: number;
}

const KEY = Symbol.for('finetune-graphql.leak-tee');
const g = globalThis as unknown as Record<symbol, TeeState | undefined>;

/** The tee of this worker (created by the first test file that runs in it). */
function state(): TeeState {
  let s = g[KEY];
  if (!s) {
    s = { secrets: new Set(), texts: [], bytes: 0 };
    g[KEY] = s;
    install(s);
  }
  return s;
}

const NOT_SECRET = new Set([LOCAL_API_KEY]);

/** Adds a secret to look for (values under 8 characters and the documented local key are ignored). */
export function registerSecret(value: string | null | undefined): void {
  if (!value || value.length < 8 || NOT_SECRET.has(value)) return;
  state().secrets.add(value);
}

/** Registers OPENAI_API_KEY and every GATEWAY_TOKENS token of an environment. */
export function registerEnvSecrets(env: Record<string, string | undefined> | undefined): void {
  if (!env) return;
  registerSecret(env.OPENAI_API_KEY);
  try {
    const tokens = env.GATEWAY_TOKENS ? (JSON.parse(env.GATEWAY_TOKENS) as { token?: unknown }[]) : [];
    if (Array.isArray(tokens)) for (const t of tokens) if (t && typeof t.token === 'string') registerSecret(t.token);
  } catch {
    /* not JSON: the server refuses it, nothing to look for */
  }
}

function noteAuthorization(value: unknown): void {
  if (typeof value !== 'string') return;
  const m = /^\s*Bearer\s+(.+?)\s*$/i.exec(value);
  registerSecret(m ? m[1] : value.trim());
}

function tee(s: TeeState, channel: string, chunk: unknown, encoding?: unknown): void {
  let text: string;
  if (typeof chunk === 'string') text = chunk;
  else if (chunk instanceof Uint8Array)
    text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString(
      typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8',
    );
  else return;
  if (!text) return;
  s.texts.push({ channel, text });
  s.bytes += text.length;
}

function install(s: TeeState): void {
  // ---- HTTP servers: learn bearer values of requests; tee responses (except the upstream REST API) ----
  const serverEmit = http.Server.prototype.emit;
  http.Server.prototype.emit = function (this: http.Server, event: string | symbol, ...args: unknown[]) {
    if ((event === 'request' || event === 'upgrade') && args[0] && typeof args[0] === 'object') {
      noteAuthorization((args[0] as http.IncomingMessage).headers?.authorization);
    }
    return (serverEmit as (...a: unknown[]) => boolean).call(this, event, ...args);
  } as typeof serverEmit;

  const proto = http.ServerResponse.prototype;
  const isUpstreamApi = (res: http.ServerResponse) => {
    const url = res.req?.url ?? '';
    return url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?');
  };
  const teeHeaders = (res: http.ServerResponse & { __leakHeaders?: boolean }, extra?: unknown) => {
    if (res.__leakHeaders) return;
    res.__leakHeaders = true;
    tee(s, 'http-response-headers', JSON.stringify({ set: res.getHeaders(), extra: extra ?? null }));
  };
  const writeHead = proto.writeHead;
  proto.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
    if (!isUpstreamApi(this)) {
      const headers = args.find((a) => a && typeof a === 'object');
      const message = typeof args[1] === 'string' ? args[1] : undefined;
      teeHeaders(this, { headers, message });
    }
    return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof writeHead;
  const write = proto.write;
  proto.write = function (this: http.ServerResponse, chunk: unknown, ...rest: unknown[]) {
    if (!isUpstreamApi(this)) {
      teeHeaders(this);
      tee(s, 'http-response', chunk, rest[0]);
    }
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof write;
  const end = proto.end;
  proto.end = function (this: http.ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (!isUpstreamApi(this)) {
      teeHeaders(this);
      if (typeof chunk !== 'function') tee(s, 'http-response', chunk, rest[0]);
    }
    return (end as (...a: unknown[]) => http.ServerResponse).call(this, chunk, ...rest);
  } as typeof end;

  // ---- websockets: tee what servers send; learn what clients authenticate with ----
  const wsSend = WebSocket.prototype.send;
  WebSocket.prototype.send = function (this: WebSocket & { _isServer?: boolean }, data: unknown, ...rest: unknown[]) {
    if (this._isServer) tee(s, 'websocket-frame', data);
    else if (typeof data === 'string' || Buffer.isBuffer(data)) {
      try {
        const msg = JSON.parse(String(data)) as { type?: string; payload?: Record<string, unknown> };
        if (msg?.type === 'connection_init' && msg.payload) {
          noteAuthorization(msg.payload.authorization);
          noteAuthorization(msg.payload.Authorization);
        }
      } catch {
        /* not JSON: a garbage frame sent on purpose */
      }
    }
    return (wsSend as (...a: unknown[]) => void).call(this, data, ...rest);
  } as typeof wsSend;
  const wsClose = WebSocket.prototype.close;
  WebSocket.prototype.close = function (this: WebSocket & { _isServer?: boolean }, code?: number, reason?: unknown) {
    if (this._isServer && reason !== undefined) tee(s, 'websocket-close', reason);
    return (wsClose as (...a: unknown[]) => void).call(this, code, reason);
  } as typeof wsClose;

  // ---- logs: string writes to non-socket streams, stdout/stderr, pino's default destination ----
  const streamWrite = Writable.prototype.write;
  Writable.prototype.write = function (this: Writable, chunk: unknown, ...rest: unknown[]) {
    const std = this === (process.stdout as unknown) || this === (process.stderr as unknown);
    if (std) tee(s, 'stdout/stderr', chunk, rest[0]);
    else if (!(this instanceof Socket) && typeof chunk === 'string') tee(s, 'log-stream', chunk);
    return (streamWrite as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof streamWrite;
  // pino's default destination is a SonicBoom, which writes to its file descriptor directly and sets `write`
  // on each instance: wrap the constructor in require's cache before pino loads it.
  const require = createRequire(import.meta.url);
  const sonicPath = require.resolve('sonic-boom');
  const Original = require('sonic-boom') as new (opts: unknown) => { write(data: string): boolean };
  function TeedSonicBoom(opts: unknown) {
    const sb = new Original(opts);
    const sbWrite = sb.write.bind(sb);
    sb.write = (data: string) => {
      tee(s, 'pino-destination', data);
      return sbWrite(data);
    };
    return sb;
  }
  Object.setPrototypeOf(TeedSonicBoom, Original);
  TeedSonicBoom.prototype = Original.prototype;
  const cached = require.cache[sonicPath];
  if (cached) cached.exports = TeedSonicBoom;

  // ---- child processes: their environment's secrets, their output ----
  const spawn = childProcess.spawn;
  const wrapped = function (this: unknown, ...args: unknown[]) {
    const opts = args.find((a) => a && typeof a === 'object' && !Array.isArray(a)) as { env?: Record<string, string> } | undefined;
    registerEnvSecrets(opts?.env);
    const child = (spawn as (...a: unknown[]) => childProcess.ChildProcess).apply(this, args);
    for (const [name, stream] of [
      ['child-stdout', child.stdout],
      ['child-stderr', child.stderr],
    ] as const) {
      if (!stream) continue;
      const push = stream.push.bind(stream);
      stream.push = (chunk: unknown, encoding?: BufferEncoding) => {
        tee(s, name, chunk, encoding);
        return push(chunk, encoding);
      };
    }
    return child;
  };
  (childProcess as { spawn: unknown }).spawn = wrapped;
  syncBuiltinESMExports();
}

/** Where `secret` appears in the teed text, if anywhere (the secret itself is not repeated). */
export function findLeaks(): { channel: string; secretHint: string; context: string }[] {
  const s = state();
  const leaks: { channel: string; secretHint: string; context: string }[] = [];
  for (const secret of s.secrets) {
    for (const { channel, text } of s.texts) {
      const at = text.indexOf(secret);
      if (at === -1) continue;
      const mask = (t: string) => t.split(secret).join('<SECRET>');
      leaks.push({
        channel,
        secretHint: `${secret.slice(0, 3)}… (${secret.length} characters)`,
        context: mask(text.slice(Math.max(0, at - 120), at + secret.length + 120)),
      });
      break;
    }
  }
  return leaks;
}

/** Counters of this worker's tee (for tests of the mechanism itself). */
export function teeStats(): { secrets: number; chunks: number; bytes: number; channels: Record<string, number> } {
  const s = state();
  const channels: Record<string, number> = {};
  for (const t of s.texts) channels[t.channel] = (channels[t.channel] ?? 0) + 1;
  return { secrets: s.secrets.size, chunks: s.texts.length, bytes: s.bytes, channels };
}

/** Forget everything teed so far (a new test file in a reused worker starts clean). */
export function resetTee(): void {
  const s = state();
  s.texts.length = 0;
  s.bytes = 0;
  s.secrets.clear();
}
