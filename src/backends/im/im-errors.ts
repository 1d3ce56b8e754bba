import { RequestError } from '../kit/request-error.js';

/**
 * Error codes of the IM protocol (docs/im.md §Errors): the stable names a Reply carries in
 * `error_code`. SDKs switch on the name, never on the message. A test keeps this registry and the
 * table in docs/im.md in sync.
 */
export const ImErrorCode = {
  /** The request is malformed, or names an invalid user (empty, too long, yourself). */
  BAD_REQUEST: 'BAD_REQUEST',
  /** The message body is over the size limit. */
  TOO_LARGE: 'TOO_LARGE',
  /** Your send (or typing) rate is exceeded; nothing was stored. Retry after `retry_after_ms`. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** The recipient blocked you; nothing was stored. */
  BLOCKED: 'BLOCKED',
  /** The message to recall does not exist (or is no longer retained). */
  NOT_FOUND: 'NOT_FOUND',
  /** You may not do this to that message (recalling someone else's). */
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  /** The recall window of the message has passed. */
  RECALL_EXPIRED: 'RECALL_EXPIRED',
  /** The presence watch list is over its limit (or its Reply would not fit the connection's max_payload). */
  TOO_MANY_WATCHED: 'TOO_MANY_WATCHED',
  /** The block list is full (1000 users by default): unblock someone first. */
  TOO_MANY_BLOCKED: 'TOO_MANY_BLOCKED',
  /** The backend failed (its store is unreachable…); retrying the same request later is safe. */
  INTERNAL: 'INTERNAL',
} as const;
export type ImErrorCode = (typeof ImErrorCode)[keyof typeof ImErrorCode];

/** A request that fails with an IM error code; answered with a Reply with `ok: false`. */
export class ImError extends RequestError<ImErrorCode> {}
