/**
 * The Pothos schema builder. Other modules add types and fields to it by importing `builder`
 * (for example a later subscription module calls `builder.subscriptionFields(...)`).
 */
import SchemaBuilder from '@pothos/core';
import DataloaderPlugin from '@pothos/plugin-dataloader';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ValidationPlugin from '@pothos/plugin-validation';
import type { GraphQLResolveInfo } from 'graphql/index.js';
import { DEFAULT_LIMITS } from '../config.js';
import type { Scope } from '../http/auth.js';
import type { GraphQLContext } from '../resolvers/context.js';
import { decodeGlobalId } from '../resolvers/ids.js';
import { ForbiddenError, UnauthenticatedError, ValidationError } from '../upstream/errors.js';

export interface SchemaTypes {
  Context: GraphQLContext;
  DefaultFieldNullability: false;
  DefaultEdgesNullability: false;
  DefaultNodeNullability: false;
  /** `read` for queries and subscriptions, `write` for mutations (src/http/auth.ts gives each caller theirs). */
  AuthScopes: { read: boolean; write: boolean };
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
    Upload: { Input: File; Output: never };
  };
}

type Issue = { message: string; path?: ReadonlyArray<PropertyKey | { key: PropertyKey }> };

/** `['input', 'hyperparameters', 'nEpochs']` → `input.hyperparameters.nEpochs`. */
export function issuePath(issue: Issue, fallback: string): string {
  const parts = (issue.path ?? []).map((p) => String(typeof p === 'object' && p !== null ? p.key : p));
  return parts.length ? parts.join('.') : fallback;
}

/** The scope each root type needs. The operation gate (src/http/yoga.ts) applies the same table. */
export const ROOT_SCOPES = { query: 'read', mutation: 'write', subscription: 'read' } as const satisfies Record<string, Scope>;

/** UNAUTHENTICATED without a valid credential, FORBIDDEN when the credential lacks the scope. */
export function authError(ctx: GraphQLContext, scope: Scope, what: string): Error {
  if (!ctx.auth.authenticated) return new UnauthenticatedError(ctx.auth.failure ?? 'Authentication required.');
  return new ForbiddenError(`This token lacks the "${scope}" scope, which ${what} needs.`);
}

function scopeOfRoot(info: GraphQLResolveInfo): Scope {
  return info.parentType.name === 'Mutation' ? ROOT_SCOPES.mutation : info.parentType.name === 'Subscription' ? ROOT_SCOPES.subscription : ROOT_SCOPES.query;
}

export const builder = new SchemaBuilder<SchemaTypes>({
  // Order matters: scope-auth first (nothing runs before the scope check inside the resolver; argument
  // validation runs earlier, which is why src/http/yoga.ts also checks scopes before execution); errors wraps
  // validation (so invalid input becomes a ValidationError result) and dataloader.
  plugins: [ScopeAuthPlugin, ErrorsPlugin, ValidationPlugin, RelayPlugin, DataloaderPlugin],
  scopeAuth: {
    // Subscriptions are checked once, when they start, not for every event.
    authorizeOnSubscribe: true,
    authScopes: (ctx) => ({ read: ctx.auth.scopes.has('read'), write: ctx.auth.scopes.has('write') }),
    unauthorizedError: (_parent, ctx, info) => {
      const scope = scopeOfRoot(info);
      return authError(ctx, scope, `${info.parentType.name}.${info.fieldName}`);
    },
  },
  defaultFieldNullability: false,
  errors: {
    // Mutation inputs that fail validation become ValidationError results (data), not top-level errors.
    unsafelyHandleInputErrors: true,
  },
  validation: {
    validationError: (result) => {
      const issue = (result.issues?.[0] ?? { message: 'Invalid input' }) as Issue;
      const field = issuePath(issue, 'input');
      return new ValidationError(`${field}: ${issue.message}`, field);
    },
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    // The global id is the OpenAI id itself; its prefix names the type.
    encodeGlobalID: (_typename, id) => String(id),
    decodeGlobalID: (globalID) => decodeGlobalId(globalID),
    edgesFieldOptions: { nullable: false },
    nodeFieldOptions: { nullable: false },
    nodeQueryOptions: {
      description: 'Any object by its OpenAI id (ftjob-…, ftevent-…, ftckpt_…, file-…). Null with a NOT_FOUND error when it does not exist.',
    },
    nodesQueryOptions: {
      description: `Objects by their OpenAI ids, in the order given; null (with a NOT_FOUND error) where one does not exist. At most ${DEFAULT_LIMITS.maxNodes} ids by default (GRAPHQL_MAX_NODES): a longer list is a BAD_USER_INPUT error on \`ids\`, and nothing is fetched.`,
    },
    pageInfoTypeOptions: {
      description:
        'Forward pagination information. `hasPreviousPage` is true when `after` was given; `last`/`before` are not offered because the upstream only pages forward.',
    },
  },
});

builder.queryType({ description: 'Fine-tuning jobs and files. Needs the `read` scope.', authScopes: { read: true } });
builder.mutationType({
  description: 'Create and steer fine-tuning jobs; upload and delete files. Needs the `write` scope.',
  authScopes: { write: true },
});
// No Subscription type yet: an object type without fields is invalid GraphQL. The live-updates module
// declares it (builder.subscriptionType({ fields: ... })) in its own file under src/schema/.
