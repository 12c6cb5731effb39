/**
 * The schema: importing a module registers its types on the builder. A new module (e.g. the live-updates
 * subscriptions) adds one import line here.
 */
import type { GraphQLSchema } from 'graphql/index.js';
import { builder } from './builder.js';
import './scalars.js';
import './errors.js';
import './enums.js';
import './types.js';
import './query.js';
import './mutation.js';
import './live.js';

export { builder };

let schema: GraphQLSchema | undefined;

/** The executable schema (built once). */
export function getSchema(): GraphQLSchema {
  schema ??= builder.toSchema();
  return schema;
}
