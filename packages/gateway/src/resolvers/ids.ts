/**
 * Global ids ARE OpenAI's ids; the prefix names the type, so an id pasted from the OpenAI dashboard works
 * in `node(id:)`. An unknown prefix is a BAD_USER_INPUT error.
 */
import { ValidationError } from '../upstream/errors.js';

export const TYPE_PREFIXES: ReadonlyArray<readonly [prefix: string, typename: NodeTypename]> = [
  ['ftjob-', 'FineTuningJob'],
  ['ftevent-', 'FineTuningJobEvent'],
  ['ft-event-', 'FineTuningJobEvent'],
  ['ftckpt_', 'FineTuningJobCheckpoint'],
  ['ftckpt-', 'FineTuningJobCheckpoint'],
  ['file-', 'File'],
];

export type NodeTypename = 'FineTuningJob' | 'FineTuningJobEvent' | 'FineTuningJobCheckpoint' | 'File';

export function typenameOfId(id: string): NodeTypename | null {
  for (const [prefix, typename] of TYPE_PREFIXES) if (id.startsWith(prefix) && id.length > prefix.length) return typename;
  return null;
}

const ID_RE = /^[A-Za-z0-9_\-:.]{1,200}$/;

/** Decode a global id (used by the relay plugin). Throws BAD_USER_INPUT naming `field` for an unknown prefix. */
export function decodeGlobalId(globalID: string, field = 'id'): { typename: NodeTypename; id: string } {
  const typename = ID_RE.test(globalID) ? typenameOfId(globalID) : null;
  if (!typename) {
    throw new ValidationError(`"${globalID.slice(0, 80)}" is not a known id: expected an OpenAI id starting with ftjob-, ftevent-, ftckpt_ or file-.`, field);
  }
  return { typename, id: globalID };
}

/** Checks that `id` is an id of `typename`, naming `field` when it is not. */
export function expectId(id: string, typename: NodeTypename, field: string): string {
  const decoded = decodeGlobalId(id, field);
  if (decoded.typename !== typename) {
    throw new ValidationError(`"${id.slice(0, 80)}" is a ${decoded.typename} id, not a ${typename} id.`, field);
  }
  return id;
}
