/**
 * Expected failures are data: mutation results are unions of a success type and these error types, which
 * implement `interface Error { message: String! }`. The same classes, thrown elsewhere, become GraphQL
 * errors with `extensions.code` (they extend GraphQLError).
 */
import { ConflictError, NotFoundError, ValidationError } from '../upstream/errors.js';
import { builder } from './builder.js';

export const ErrorInterface = builder.interfaceRef<Error>('Error').implement({
  description: 'An expected failure of a mutation. Query `message`, or a specific type for details.',
  fields: (t) => ({
    message: t.exposeString('message', { description: 'What went wrong, for a person.' }),
  }),
});

builder.objectType(ValidationError, {
  name: 'ValidationError',
  description: 'The input was rejected (before any upstream call for out-of-range values, or by the upstream).',
  interfaces: [ErrorInterface],
  fields: (t) => ({
    field: t.exposeString('field', {
      description: 'The input field that is wrong, as a dotted path (e.g. `input.hyperparameters.nEpochs`).',
    }),
  }),
});

builder.objectType(NotFoundError, {
  name: 'NotFoundError',
  description: 'The job or file does not exist (or belongs to another organisation).',
  interfaces: [ErrorInterface],
});

builder.objectType(ConflictError, {
  name: 'ConflictError',
  description: 'The operation conflicts with the current state, e.g. cancelling a job that already finished.',
  interfaces: [ErrorInterface],
});

/** The error types every mutation result can hold. */
export const MUTATION_ERRORS = [ValidationError, NotFoundError, ConflictError];
