/**
 * What an operation will cost upstream, estimated before it runs: an upper bound of the upstream calls its
 * resolvers make with its variables (src/http/plugins/use-upstream-cost.ts refuses it over
 * GRAPHQL_MAX_UPSTREAM_CALLS; call-budget.ts then counts the calls it really makes).
 *
 * The operation is walked as graphql-js executes it: its own collectFields (fragments, @skip/@include, fields of
 * the same response name merged) and getArgumentValues (variables, their defaults), so `first: $n` counts as the
 * value of `$n`, an omitted `first` as DEFAULT_PAGE_SIZE, and a `first` outside 0–MAX_PAGE_SIZE (refused when the
 * field runs) as the nearest bound. Each level knows how many distinct objects it resolves fields for; the
 * per-request loaders (loaders.ts, the Pothos loadables of jobs and files) ask the upstream once per distinct
 * object and arguments, so a field costs one call per object, not per path that reaches it:
 *
 * | field | calls |
 * |---|---|
 * | `fineTuningJob`, `file` | 1 |
 * | `fineTuningJobs`, `files`, and `events`, `checkpoints` per job | 1 per page; the page holds `first` objects |
 * | `node`, `nodes` | per distinct id: 1 for a job or file, 2 for an event or checkpoint (its job, then its pages) |
 * | `trainingFile`, `validationFile`, `resultFiles` (one results file), `metrics` per job | 1 |
 * | a checkpoint's `job` | 1 per distinct job (all checkpoints of a page share theirs) |
 * | each mutation | 1 |
 * | a subscription | 0 (the shared poller); its selection is costed per event |
 *
 * Other fields cost nothing (they read the object already loaded). Under a list without a page size, a field is
 * counted for MAX_PAGE_SIZE items per parent. Finished-job cache hits are counted as calls (the estimate cannot
 * know them). Walks whose length only the upstream knows (metrics from the events of an unfinished job, an event
 * or checkpoint found by id, several results files) count one page here; the call budget counts the rest.
 */
import { collectFields, collectSubfields } from 'graphql/execution/collectFields.js';
import {
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  getArgumentValues,
  getNamedType,
  getNullableType,
  getOperationAST,
  getVariableValues,
  GraphQLError,
  type GraphQLField,
  type GraphQLObjectType,
  type GraphQLSchema,
  isCompositeType,
  isListType,
  isObjectType,
  Kind,
  type ValueNode,
  visit,
} from 'graphql/index.js';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './connections.js';
import { type NodeTypename, typenameOfId } from './ids.js';

export interface CostLimits {
  /** Ids in one `nodes(ids:)` (GRAPHQL_MAX_NODES): a longer list is refused here (BAD_USER_INPUT on `ids`). */
  maxNodes: number;
}

/** The estimate, or why the operation will not run (variables graphql-js cannot coerce, too many ids). */
export type CostEstimate = { calls: number } | { errors: readonly GraphQLError[] };

export interface CostArgs {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null;
  variableValues?: Record<string, unknown> | null;
}

/** What a level of the walk knows besides its object count. */
interface Level {
  /** Objects per page of the connection being walked (for its `edges`). */
  pageSize?: number;
  /** The distinct jobs whose events or checkpoints are being walked. */
  ownerJobs?: number;
}

/** What one field costs for `count` parent objects, and what it hands to its selection. */
interface Spend {
  calls: number;
  /** Objects the field resolves to (default: `count`, times MAX_PAGE_SIZE for a list). */
  objects?: number;
  /** For an abstract type: objects of each concrete type (default: each type may have all `objects`). */
  byType?: ReadonlyMap<string, number>;
  level?: Level;
}

type Rule = (count: number, args: Record<string, unknown>, level: Level, field: FieldNode) => Spend;

/** Upstream calls to resolve one node by id, by type (see findEvent, findCheckpoint). */
const NODE_CALLS: Record<NodeTypename, number> = { FineTuningJob: 1, File: 1, FineTuningJobEvent: 2, FineTuningJobCheckpoint: 2 };

const pageSize = (first: unknown): number => (typeof first === 'number' ? Math.min(Math.max(Math.trunc(first), 0), MAX_PAGE_SIZE) : DEFAULT_PAGE_SIZE);

const perObject: Rule = (count) => ({ calls: count, objects: count });
const page: Rule = (count, args) => ({ calls: count, objects: count, level: { pageSize: pageSize(args.first) } });
const pagePerJob: Rule = (count, args) => ({ calls: count, objects: count, level: { pageSize: pageSize(args.first), ownerJobs: count } });

function byIds(ids: unknown[]): Spend {
  const byType = new Map<string, number>();
  let calls = 0;
  for (const id of new Set(ids)) {
    const typename = typeof id === 'string' ? typenameOfId(id) : null;
    if (!typename) continue;
    byType.set(typename, (byType.get(typename) ?? 0) + 1);
    calls += NODE_CALLS[typename];
  }
  return { calls, byType };
}

const RULES: Record<string, Rule> = {
  'Query.fineTuningJob': perObject,
  'Query.file': perObject,
  'Query.fineTuningJobs': page,
  'Query.files': page,
  'Query.node': (_count, args) => byIds([args.id]),
  'FineTuningJob.trainingFile': perObject,
  'FineTuningJob.validationFile': perObject,
  'FineTuningJob.resultFiles': perObject,
  'FineTuningJob.metrics': perObject,
  'FineTuningJob.events': pagePerJob,
  'FineTuningJob.checkpoints': pagePerJob,
  'FineTuningJobCheckpoint.job': (count, _args, level) => {
    const jobs = Math.min(count, level.ownerJobs ?? count);
    return { calls: jobs, objects: jobs };
  },
};

class Estimator {
  constructor(
    private readonly schema: GraphQLSchema,
    private readonly fragments: Record<string, FragmentDefinitionNode>,
    private readonly variables: Record<string, unknown>,
    private readonly limits: CostLimits,
  ) {}

  private rule(parent: GraphQLObjectType, name: string): Rule | undefined {
    if (parent === this.schema.getMutationType()) return perObject;
    if (parent === this.schema.getSubscriptionType()) return (count) => ({ calls: 0, objects: count });
    if (parent === this.schema.getQueryType() && name === 'nodes') return (_count, args, _level, field) => this.nodes(args.ids, field);
    return RULES[`${parent.name}.${name}`];
  }

  private nodes(ids: unknown, field: FieldNode): Spend {
    const list = Array.isArray(ids) ? ids : [ids];
    if (list.length > this.limits.maxNodes) {
      throw new GraphQLError(`ids: at most ${this.limits.maxNodes} ids in one nodes(ids:) (got ${list.length}).`, {
        nodes: [field],
        extensions: { code: 'BAD_USER_INPUT', field: 'ids', limit: 'nodes', max: this.limits.maxNodes, http: { spec: true, status: 400 } },
      });
    }
    return byIds(list);
  }

  /** The calls of `fields` (a merged selection) on `count` distinct objects of `type`. */
  selection(type: GraphQLObjectType, count: number, fields: Map<string, readonly FieldNode[]>, level: Level): number {
    if (count <= 0) return 0;
    let calls = 0;
    for (const nodes of fields.values()) calls += this.field(type, count, nodes, level);
    return calls;
  }

  private field(parent: GraphQLObjectType, count: number, nodes: readonly FieldNode[], level: Level): number {
    const node = nodes[0]!;
    const name = node.name.value;
    if (name.startsWith('__')) return 0;
    const def: GraphQLField<unknown, unknown> | undefined = parent.getFields()[name];
    if (!def) return 0;
    let args: Record<string, unknown> = {};
    if (def.args.length > 0) {
      try {
        args = getArgumentValues(def, node, this.variables);
      } catch {
        return 0; // execution refuses the field's arguments before resolving it
      }
    }
    const rule = this.rule(parent, name);
    const spend: Spend = rule ? rule(count, args, level, node) : { calls: 0 };
    const named = getNamedType(def.type);
    if (!isCompositeType(named)) return spend.calls;
    const perParent = isListType(getNullableType(def.type)) ? (name === 'edges' && level.pageSize !== undefined ? level.pageSize : MAX_PAGE_SIZE) : 1;
    const objects = spend.objects ?? count * perParent;
    const next: Level = spend.level ?? { ownerJobs: level.ownerJobs };
    if (isObjectType(named)) return spend.calls + this.selection(named, objects, this.subfields(named, nodes), next);
    // An interface or union: each object is of one concrete type.
    let below = 0;
    for (const type of this.schema.getPossibleTypes(named)) {
      const n = spend.byType ? (spend.byType.get(type.name) ?? 0) : objects;
      const calls = this.selection(type, n, this.subfields(type, nodes), next);
      below = spend.byType ? below + calls : Math.max(below, calls);
    }
    return spend.calls + below;
  }

  private subfields(type: GraphQLObjectType, nodes: readonly FieldNode[]) {
    return collectSubfields(this.schema, this.fragments, this.variables, type, nodes) as Map<string, readonly FieldNode[]>;
  }

  root(type: GraphQLObjectType, operation: { selectionSet: Parameters<typeof collectFields>[4] }): number {
    const fields = collectFields(this.schema, this.fragments, this.variables, type, operation.selectionSet) as Map<string, readonly FieldNode[]>;
    return this.selection(type, 1, fields, {});
  }
}

const usesVariable = (value: ValueNode): boolean =>
  value.kind === Kind.VARIABLE ||
  (value.kind === Kind.LIST && value.values.some(usesVariable)) ||
  (value.kind === Kind.OBJECT && value.fields.some((f) => usesVariable(f.value)));

/**
 * Whether the estimate of `document` can change with its variables' values: when a variable gives an argument
 * the rules above read (`first`, the ids of `nodes` and `node`) or decides @skip/@include. Otherwise the
 * estimate is the document's own and may be kept with it.
 */
export function costDependsOnVariables(document: DocumentNode): boolean {
  let depends = false;
  visit(document, {
    Field(node) {
      for (const arg of node.arguments ?? []) {
        const name = arg.name.value;
        const read = name === 'first' || name === 'ids' || (name === 'id' && node.name.value === 'node');
        if (read && usesVariable(arg.value)) depends = true;
      }
    },
    Directive(node) {
      if ((node.name.value === 'skip' || node.name.value === 'include') && node.arguments?.some((a) => usesVariable(a.value))) depends = true;
    },
  });
  return depends;
}

/**
 * The upstream calls `args` (an operation and its variables) will make at most, or the errors that keep it from
 * running: variables graphql-js cannot coerce (execution would refuse them too; the same errors), or a
 * `nodes(ids:)` longer than `limits.maxNodes`.
 */
export function estimateUpstreamCalls(args: CostArgs, limits: CostLimits): CostEstimate {
  const operation = getOperationAST(args.document, args.operationName ?? undefined);
  if (!operation) return { calls: 0 };
  const root =
    operation.operation === 'query'
      ? args.schema.getQueryType()
      : operation.operation === 'mutation'
        ? args.schema.getMutationType()
        : args.schema.getSubscriptionType();
  if (!root) return { calls: 0 };
  const coerced = getVariableValues(args.schema, operation.variableDefinitions ?? [], args.variableValues ?? {}, { maxErrors: 20 });
  if (coerced.errors) return { errors: coerced.errors };
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const def of args.document.definitions) if (def.kind === Kind.FRAGMENT_DEFINITION) fragments[def.name.value] = def;
  try {
    return { calls: new Estimator(args.schema, fragments, coerced.coerced, limits).root(root, operation) };
  } catch (err) {
    if (err instanceof GraphQLError) return { errors: [err] };
    throw err;
  }
}
