/** Forward-only Relay connections over the upstream's cursor pages (the cursor is the upstream id). */
import type { Page } from '../upstream/types.js';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export interface ForwardArgs {
  first?: number | null;
  after?: string | null;
}

export interface Connection<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
}

/**
 * Fetches one page: `first` → `limit` (default 20; range checked by the schema), `after` → `after`.
 * `first: 0` asks the upstream for one item only to tell whether there is a next page, and returns no edges.
 */
export async function forwardConnection<T extends { id: string }>(
  args: ForwardArgs,
  fetchPage: (params: { after: string | null; limit: number }) => Promise<Page<T>>,
): Promise<Connection<T>> {
  const first = args.first ?? DEFAULT_PAGE_SIZE;
  const after = args.after ?? null;
  if (first === 0) {
    const probe = await fetchPage({ after, limit: 1 });
    return {
      edges: [],
      pageInfo: { hasNextPage: probe.data.length > 0, hasPreviousPage: after !== null, startCursor: null, endCursor: null },
    };
  }
  const page = await fetchPage({ after, limit: first });
  const edges = page.data.map((node) => ({ cursor: node.id, node }));
  return {
    edges,
    pageInfo: {
      hasNextPage: page.has_more && edges.length > 0,
      hasPreviousPage: after !== null,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges[edges.length - 1]?.cursor ?? null,
    },
  };
}
