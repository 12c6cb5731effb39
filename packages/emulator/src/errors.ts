/**
 * OpenAI's error envelope: `{"error": {"message", "type", "param", "code"}}` with OpenAI's HTTP statuses.
 * Routes throw an `ApiError`; the app's error handler turns it into the envelope.
 */

export type ErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'conflict_error' | 'rate_limit_error' | 'server_error';

export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (e.g. Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the field that is wrong. */
export function badRequest(message: string, param: string | null, code: string | null = 'invalid_value'): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

export function notFound(message: string, param: string | null = 'id', code: string | null = null): ApiError {
  return new ApiError(404, message, 'invalid_request_error', param, code);
}

export const fileNotFound = (id: string) => notFound(`No such File object: ${id}`, 'id', 'file_not_found');
export const jobNotFound = (id: string) => notFound(`No such fine-tuning job: ${id}`, 'fine_tuning_job_id', 'fine_tune_not_found');

/** OpenAI's text when no key is given at all. */
export const MISSING_KEY_MESSAGE =
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth " +
  "(i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API " +
  'from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.';

/** OpenAI says "Incorrect API key provided: sk-abc***"; we never echo any part of a key. */
export const MALFORMED_KEY_MESSAGE =
  'Incorrect API key provided. The Authorization header must be "Bearer <key>" with a non-empty key of at most ' +
  '512 printable characters. You can find your API key at https://platform.openai.com/account/api-keys.';
