/**
 * JSON-scalar inputs bounded (GRAPHQL_MAX_JSON_DEPTH, GRAPHQL_MAX_JSON_BYTES).
 *
 * A value of the `JSON` scalar anywhere in an operation's input (`input.method.reinforcement`, `input.metadata`,
 * `fineTuningJobs(metadata:)`, …) nested more than `maxJsonDepth` levels deep (`{}` and `[]` are one level), or
 * longer than `maxJsonBytes` once serialised, is refused with BAD_USER_INPUT naming the field (`field`,
 * `limit: "jsonDepth" | "jsonBytes"`, `max`) before any resolver runs, instead of reaching code that walks it
 * recursively (the idempotency fingerprint, the SDK's JSON.stringify: a RangeError, an unexpected 500).
 *
 * Literals are checked while the document is validated (once per document), variables before execution (an
 * envelop hook: yoga's HTTP path, the JSON fast path and graphql-ws alike). The field of a variable is named as
 * in graphql-js's coercion errors: `input.method.reinforcement` inside `$input`, `$name` for the variable itself.
 * The scalar's own parse functions cannot see the server's limits (the schema is built once, without the
 * configuration), hence a plugin given the limits.
 */
import {
  type ASTVisitor,
  type ExecutionArgs,
  type ExecutionResult,
  getNamedType,
  getOperationAST,
  GraphQLError,
  type GraphQLInputType,
  type GraphQLNamedType,
  isInputObjectType,
  isListType,
  isNonNullType,
  Kind,
  typeFromAST,
  type ValidationContext,
  type ValueNode,
  valueFromASTUntyped,
} from 'graphql/index.js';
import type { Plugin } from 'graphql-yoga';
import type { Limits } from '../../config.js';

type JsonLimits = Pick<Limits, 'maxJsonDepth' | 'maxJsonBytes'>;

const JSON_SCALAR = 'JSON';

function refusal(field: string, limit: 'jsonDepth' | 'jsonBytes', max: number, http: boolean): GraphQLError {
  const what = limit === 'jsonDepth' ? `JSON nested more than ${max} levels deep` : `JSON longer than ${max} bytes`;
  return new GraphQLError(`${field}: ${what}.`, {
    extensions: { code: 'BAD_USER_INPUT', field, limit, max, ...(http ? { http: { spec: true, status: 400 } } : {}) },
  });
}

/** True when `value` has more than `levels` levels of objects and arrays (it stops looking there). */
function deeperThan(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (levels === 0) return true;
  for (const child of Array.isArray(value) ? value : Object.values(value)) if (deeperThan(child, levels - 1)) return true;
  return false;
}

function literalDeeperThan(node: ValueNode, levels: number): boolean {
  if (node.kind !== Kind.OBJECT && node.kind !== Kind.LIST) return false;
  if (levels === 0) return true;
  const children = node.kind === Kind.LIST ? node.values : node.fields.map((f) => f.value);
  for (const child of children) if (literalDeeperThan(child, levels - 1)) return true;
  return false;
}

export function useJsonLimits(limits: JsonLimits): Plugin {
  /** Whether an input type can hold a JSON value, by named type (the schema never changes). */
  const holdsJson = new Map<GraphQLNamedType, boolean>();
  const canHoldJson = (type: GraphQLInputType): boolean => {
    const named = getNamedType(type);
    const known = holdsJson.get(named);
    if (known !== undefined) return known;
    holdsJson.set(named, false); // a recursive input type
    const result = named.name === JSON_SCALAR || (isInputObjectType(named) && Object.values(named.getFields()).some((f) => canHoldJson(f.type)));
    holdsJson.set(named, result);
    return result;
  };

  const checkJson = (value: unknown, field: string, http: boolean): GraphQLError | undefined => {
    if (deeperThan(value, limits.maxJsonDepth)) return refusal(field, 'jsonDepth', limits.maxJsonDepth, http);
    if (Buffer.byteLength(JSON.stringify(value) ?? '') > limits.maxJsonBytes) return refusal(field, 'jsonBytes', limits.maxJsonBytes, http);
    return undefined;
  };

  /** A variable's value (as sent) along its type; `path` as graphql-js words it. */
  const checkValue = (value: unknown, type: GraphQLInputType, variable: string, path: string): GraphQLError | undefined => {
    if (value === null || value === undefined || !canHoldJson(type)) return undefined;
    if (isNonNullType(type)) return checkValue(value, type.ofType, variable, path);
    if (isListType(type)) {
      if (!Array.isArray(value)) return checkValue(value, type.ofType, variable, path);
      for (let i = 0; i < value.length; i++) {
        const err = checkValue(value[i], type.ofType, variable, `${path}.${i}`);
        if (err) return err;
      }
      return undefined;
    }
    if (isInputObjectType(type)) {
      if (typeof value !== 'object' || Array.isArray(value)) return undefined;
      for (const [name, f] of Object.entries(type.getFields())) {
        const err = checkValue((value as Record<string, unknown>)[name], f.type, variable, `${path}.${name}`);
        if (err) return err;
      }
      return undefined;
    }
    return checkJson(value, path ? `${variable}${path}` : `$${variable}`, true);
  };

  /** A literal along its type (variables inside it are checked with the variables). */
  const checkLiteral = (node: ValueNode, type: GraphQLInputType, path: string): GraphQLError | undefined => {
    if (node.kind === Kind.VARIABLE || node.kind === Kind.NULL || !canHoldJson(type)) return undefined;
    if (isNonNullType(type)) return checkLiteral(node, type.ofType, path);
    if (isListType(type)) {
      if (node.kind !== Kind.LIST) return checkLiteral(node, type.ofType, path);
      for (let i = 0; i < node.values.length; i++) {
        const err = checkLiteral(node.values[i]!, type.ofType, `${path}.${i}`);
        if (err) return err;
      }
      return undefined;
    }
    if (isInputObjectType(type)) {
      if (node.kind !== Kind.OBJECT) return undefined;
      const fields = type.getFields();
      for (const f of node.fields) {
        const def = fields[f.name.value];
        const err = def ? checkLiteral(f.value, def.type, `${path}.${f.name.value}`) : undefined;
        if (err) return err;
      }
      return undefined;
    }
    if (literalDeeperThan(node, limits.maxJsonDepth)) return refusal(path, 'jsonDepth', limits.maxJsonDepth, false);
    return checkJson(valueFromASTUntyped(node), path, false);
  };

  const literalRule = (context: ValidationContext): ASTVisitor => ({
    Argument(node) {
      const def = context.getArgument();
      const err = def ? checkLiteral(node.value, def.type, node.name.value) : undefined;
      if (err) context.reportError(new GraphQLError(err.message, { nodes: [node], extensions: err.extensions }));
    },
    VariableDefinition(node) {
      if (!node.defaultValue) return;
      const type = typeFromAST(context.getSchema(), node.type) as GraphQLInputType | undefined;
      const err = type ? checkLiteral(node.defaultValue, type, `$${node.variable.name.value}`) : undefined;
      if (err) context.reportError(new GraphQLError(err.message, { nodes: [node], extensions: err.extensions }));
    },
  });

  const check = ({ args, setResultAndStopExecution }: { args: ExecutionArgs; setResultAndStopExecution: (r: ExecutionResult) => void }) => {
    const operation = getOperationAST(args.document, args.operationName ?? undefined);
    const variables = (args.variableValues ?? {}) as Record<string, unknown>;
    for (const def of operation?.variableDefinitions ?? []) {
      const type = typeFromAST(args.schema, def.type) as GraphQLInputType | undefined;
      if (!type) continue;
      const err = checkValue(variables[def.variable.name.value], type, def.variable.name.value, '');
      if (err) return setResultAndStopExecution({ errors: [err] });
    }
  };

  return {
    onValidate: ({ addValidationRule }) => addValidationRule(literalRule),
    onExecute: check as never,
    onSubscribe: check as never,
  };
}
