/** Data fetching for files. */
import type { GraphQLContext } from './context.js';
import { forwardConnection, type ForwardArgs } from './connections.js';
import type { RawFile } from '../upstream/types.js';

/** DataLoader batch function for files: one retrieve per distinct id (the upstream has no batch endpoint). */
export function loadFiles(ctx: GraphQLContext, ids: readonly string[]): Promise<(RawFile | Error)[]> {
  return Promise.all(ids.map((id) => ctx.api.retrieveFile(id).catch((e: Error) => e)));
}

export function filesConnection(ctx: GraphQLContext, args: ForwardArgs & { purpose?: string | null }) {
  return forwardConnection(args, (p) => ctx.api.listFiles({ ...p, purpose: args.purpose }));
}
