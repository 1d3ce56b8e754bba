/**
 * Every error the push HTTP API answers, in one registry (docs/push.md §Errors is generated from the same
 * table and a test keeps them equal): a stable `code` business servers switch on, its HTTP status, and
 * whether retrying the same call later can succeed. The body is always
 * `{"code": "...", "message": "...", "retry_after_s"?: n}`.
 */
export const ApiErrors = {
  BAD_JSON: { status: 400, retry: false, meaning: 'The body is not valid JSON.' },
  UNAUTHORIZED: { status: 401, retry: false, meaning: 'No `Authorization: Bearer <key>` header, or the key is not one of the configured API keys.' },
  NOT_FOUND: { status: 404, retry: false, meaning: 'No push with this id (never created, created with another API key, forgotten after its retention, or dropped by `max_records`), or an unknown path.' },
  METHOD_NOT_ALLOWED: { status: 405, retry: false, meaning: 'The path exists but not with this method.' },
  ID_CONFLICT: { status: 409, retry: false, meaning: 'A push with this id exists with a different request: an `id` makes one call idempotent, it cannot be reused for another push.' },
  PAYLOAD_TOO_LARGE: { status: 413, retry: false, meaning: 'The body exceeds the API\'s body limit, or the decoded `data` exceeds the push size limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retry: false, meaning: 'The body is not `application/json`.' },
  INVALID_BODY: { status: 422, retry: false, meaning: 'The JSON does not follow the contract: the message names the field and what is wrong.' },
  RATE_LIMITED: { status: 429, retry: true, meaning: 'This API key exceeded its rate; `retry_after_s` (and the `Retry-After` header) say when to retry.' },
  INTERNAL: { status: 500, retry: true, meaning: 'An unexpected fault, logged by the server.' },
  UNAVAILABLE: { status: 503, retry: true, meaning: 'The push store cannot be reached, or a call with the same id is still being created; retry with the same id (nothing is sent twice).' },
} as const satisfies Record<string, { status: number; retry: boolean; meaning: string }>;

export type ApiErrorCode = keyof typeof ApiErrors;

/** A refusal of the push API: turned into the JSON error body with its registry status. */
export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly retryAfterS = 0,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get status(): number {
    return ApiErrors[this.code].status;
  }

  /** The JSON body. */
  toJSON(): { code: ApiErrorCode; message: string; retry_after_s?: number } {
    return this.retryAfterS > 0 ? { code: this.code, message: this.message, retry_after_s: this.retryAfterS } : { code: this.code, message: this.message };
  }
}
