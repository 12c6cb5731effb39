/**
 * Client authentication: who is calling, which upstream credential their request uses, and what they may do.
 *
 * AUTH_MODE (see src/config.ts for the default):
 * - `tokens`:      clients present a bearer token listed in GATEWAY_TOKENS; the upstream credential is the
 *                  server's own key (OPENAI_API_KEY, or the embedded service's local key). Tokens are compared
 *                  in constant time (sha256 of both sides, crypto.timingSafeEqual, every configured token tried).
 * - `passthrough`: the client's own `Authorization: Bearer sk-…` is the upstream credential (scopes read+write);
 *                  the upstream decides whether it is valid.
 * - `none`:        no client authentication (only allowed on a loopback address); the server's key, read+write.
 *
 * HTTP and SSE requests authenticate with the Authorization header; graphql-ws clients in `connection_init`
 * (connectionParams `{ authorization: "Bearer …" }`, `Authorization` also accepted).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  type DocumentNode,
  type GraphQLError,
  getOperationAST,
  Kind,
  type OperationDefinitionNode,
  type OperationTypeNode,
  type SelectionSetNode,
} from 'graphql/index.js';
import { ApiError } from '../upstream/errors.js';
import { credentialTag } from '../util/credential-hash.js';

export type Scope = 'read' | 'write';
export const SCOPES: readonly Scope[] = ['read', 'write'];

/** How clients authenticate (AUTH_MODE and GATEWAY_TOKENS, read by src/config.ts). Tokens are kept only as sha256 hashes. */
export type AuthConfig = { mode: 'none' } | { mode: 'passthrough' } | { mode: 'tokens'; tokens: GatewayToken[] };

/** One entry of GATEWAY_TOKENS: kept as a sha256 hash, never in clear. */
export interface GatewayToken {
  name: string;
  hash: Buffer;
  scopes: ReadonlySet<Scope>;
  /** This token's own request rate per minute (overrides RATE_LIMIT_PER_MINUTE; 0: unlimited). */
  ratePerMinute?: number;
}

/** Who is calling and what they may do (checked by Pothos scope-auth and the operation gate in src/http/yoga.ts). */
export interface RequestAuth {
  /** False when the request carried no valid credential (then `scopes` is empty). */
  authenticated: boolean;
  scopes: ReadonlySet<Scope>;
  /** For logs only: `anonymous`, `token:<name>`, `key:<hash prefix>` or `unauthenticated`. */
  principalId: string;
  /** Why authentication failed, for the UNAUTHENTICATED error. */
  failure?: string;
  /** This caller's own GraphQL operations per minute (a GATEWAY_TOKENS entry's `ratePerMinute`), over the server's. */
  ratePerMinute?: number;
}

export interface Principal {
  /** The upstream credential this caller's requests use. Never logged, never returned. */
  credential: string;
  scopes: ReadonlySet<Scope>;
  /** For logs: `anonymous`, `token:<name>` or `key:<hash prefix>`; never the token or key itself. */
  id: string;
  /** The token's own rate limit (GATEWAY_TOKENS `ratePerMinute`), when it has one. */
  ratePerMinute?: number;
}

/** The outcome of authenticating one request or connection. */
export type AuthResult = { ok: true; principal: Principal } | { ok: false; reason: 'missing' | 'malformed' | 'invalid'; message: string };

const BOTH: ReadonlySet<Scope> = new Set<Scope>(['read', 'write']);

/** Longest bearer value looked at; longer ones are refused without hashing megabytes. */
export const MAX_BEARER_LENGTH = 512;
/** Printable ASCII without spaces: what OpenAI keys and our tokens look like. */
const BEARER_SHAPE = /^[\x21-\x7e]+$/;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export const MESSAGES = {
  missing: 'Authentication required: send `Authorization: Bearer <token>` (websockets: connectionParams.authorization).',
  malformed: 'The Authorization header is not a valid bearer token.',
  invalid: 'The bearer token is not valid.',
} as const;

export interface Authenticator {
  readonly mode: AuthConfig['mode'];
  /** Authenticates an `Authorization` header value (HTTP, SSE). */
  fromHeader(authorization: string | null | undefined): AuthResult;
  /** Authenticates graphql-ws connectionParams (`authorization` or `Authorization`). */
  fromConnectionParams(params: unknown): AuthResult;
}

/**
 * @param serverKey the server's own upstream credential (used in `tokens` and `none` modes).
 */
export function createAuthenticator(auth: AuthConfig, serverKey: string): Authenticator {
  const anonymous: AuthResult = { ok: true, principal: { credential: serverKey, scopes: BOTH, id: 'anonymous' } };
  const tokens = auth.mode === 'tokens' ? auth.tokens : [];

  /** The bearer value of a header, or why there is none. */
  const bearer = (header: string | null | undefined): { value: string } | Exclude<AuthResult, { ok: true }> => {
    if (header === undefined || header === null || header.trim() === '') {
      return { ok: false, reason: 'missing', message: MESSAGES.missing };
    }
    const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m || m[1]!.length > MAX_BEARER_LENGTH || !BEARER_SHAPE.test(m[1]!)) {
      return { ok: false, reason: 'malformed', message: MESSAGES.malformed };
    }
    return { value: m[1]! };
  };

  const fromHeader = (header: string | null | undefined): AuthResult => {
    if (auth.mode === 'none') return anonymous;
    const b = bearer(header);
    if (!('value' in b)) return b;
    if (auth.mode === 'passthrough') {
      return { ok: true, principal: { credential: b.value, scopes: BOTH, id: `key:${credentialTag(b.value)}` } };
    }
    // tokens: hash both sides (equal lengths for timingSafeEqual) and try every token, so the time taken
    // does not depend on which token (if any) matched.
    const presented = sha256(b.value);
    let match: (typeof tokens)[number] | undefined;
    for (const t of tokens) {
      if (timingSafeEqual(presented, t.hash) && !match) match = t;
    }
    if (!match) return { ok: false, reason: 'invalid', message: MESSAGES.invalid };
    return {
      ok: true,
      principal: {
        credential: serverKey,
        scopes: match.scopes,
        id: `token:${match.name}`,
        ...(match.ratePerMinute !== undefined ? { ratePerMinute: match.ratePerMinute } : {}),
      },
    };
  };

  return {
    mode: auth.mode,
    fromHeader,
    fromConnectionParams(params) {
      if (auth.mode === 'none') return anonymous;
      const p = params && typeof params === 'object' && !Array.isArray(params) ? (params as Record<string, unknown>) : {};
      const value = p.authorization ?? p.Authorization;
      if (value !== undefined && typeof value !== 'string') return { ok: false, reason: 'malformed', message: MESSAGES.malformed };
      return fromHeader(value);
    },
  };
}

/** sha256 of a configured token (config keeps only these, never the tokens). */
export function hashToken(token: string): Buffer {
  return sha256(token);
}

// ---- the operation gate ---------------------------------------------------------------------------------

/** The scope each kind of operation needs (the same table as the Pothos root types in src/schema/builder.ts). */
export const OPERATION_SCOPES: Record<OperationTypeNode, Scope> = {
  query: 'read',
  mutation: 'write',
  subscription: 'read',
} as Record<OperationTypeNode, Scope>;

/** The root field names an operation selects (through fragments), for the gate. */
function rootFieldNames(document: DocumentNode, operation: OperationDefinitionNode): string[] {
  const fragments = new Map<string, SelectionSetNode>();
  for (const def of document.definitions) if (def.kind === Kind.FRAGMENT_DEFINITION) fragments.set(def.name.value, def.selectionSet);
  const names: string[] = [];
  const seen = new Set<string>();
  const walk = (set: SelectionSetNode) => {
    for (const sel of set.selections) {
      if (sel.kind === Kind.FIELD) names.push(sel.name.value);
      else if (sel.kind === Kind.INLINE_FRAGMENT) walk(sel.selectionSet);
      else if (!seen.has(sel.name.value)) {
        seen.add(sel.name.value);
        const frag = fragments.get(sel.name.value);
        if (frag) walk(frag);
      }
    }
  };
  walk(operation.selectionSet);
  return names;
}

/**
 * The operation gate: before anything executes (argument validation included, which Pothos runs before a
 * field's scope check), an operation whose caller lacks the scope of its kind is refused as a whole:
 * UNAUTHENTICATED (HTTP 401) without a valid credential, FORBIDDEN (403) when the credential lacks the scope.
 * Operations that only ask for `__typename`, `__schema` or `__type` pass (the schema is public).
 * Returns undefined when the operation may run.
 */
export function operationAuthError(
  document: DocumentNode,
  operationName: string | null | undefined,
  auth: RequestAuth,
  opts: { http?: boolean } = {},
): GraphQLError | undefined {
  const operation = getOperationAST(document, operationName ?? undefined);
  if (!operation) return undefined; // graphql-js reports the missing operation itself
  const scope = OPERATION_SCOPES[operation.operation];
  if (auth.scopes.has(scope)) return undefined;
  if (rootFieldNames(document, operation).every((n) => n.startsWith('__'))) return undefined;
  const http = opts.http !== false;
  if (!auth.authenticated) {
    return new ApiError(auth.failure ?? MESSAGES.missing, 'UNAUTHENTICATED', http ? { http: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } } } : {});
  }
  return new ApiError(
    `This token lacks the "${scope}" scope, which ${operation.operation === 'query' ? 'queries' : `${operation.operation}s`} need.`,
    'FORBIDDEN',
    http ? { http: { status: 403, headers: { 'WWW-Authenticate': `Bearer error="insufficient_scope", scope="${scope}"` } } } : {},
  );
}
