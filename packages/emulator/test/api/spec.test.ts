/**
 * The checks against OpenAI's published spec: every file of test/api checks its responses with
 * expectMatchesSchema, which needs the spec (test/kit/spec.ts). Without it those checks do nothing, and this file
 * reports them as skipped; with it, the helper's own checks run here.
 */
import { describe, expect, it } from 'vitest';
import { matchesSchema, SPEC_PATH, SPEC_SKIPPED } from '../kit/spec.js';

describe.skipIf(!SPEC_PATH)(`responses against OpenAI's published spec (${SPEC_PATH ?? SPEC_SKIPPED})`, () => {
  it('the checks of test/api run against the spec', () => {
    expect(SPEC_PATH).toBeTruthy();
  });

  it('the helper tells a matching body from one that is not', () => {
    const error = { error: { message: 'No such job', type: 'invalid_request_error', param: null, code: null } };
    expect(matchesSchema(error, 'Error')).toBe(true);
    expect(matchesSchema({ error: { message: '' } }, 'Error')).toBe(false);
    expect(matchesSchema({ object: 'list', data: [{ id: 1 }], has_more: false }, 'ListPaginatedFineTuningJobsResponse')).toBe(false);
  });
});
