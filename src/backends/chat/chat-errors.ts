import { RequestError } from '../kit/request-error.js';

/**
 * Error codes of the Chat protocol (docs/chat.md §Errors): the stable names a Reply carries in
 * `error_code`. SDKs switch on the name, never on the message.
 */
export const ChatErrorCode = {
  /** The request is malformed or breaks a limit (body too large, empty key, unknown action…). */
  BAD_REQUEST: 'BAD_REQUEST',
  /** The session has not joined its room (or was removed from it). */
  NOT_JOINED: 'NOT_JOINED',
  /** The role does not allow it: moderation, attributes, system priority, a role not granted. */
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  /** The sender is muted in this room; `retry_after_ms` says for how long (0 = until lifted). */
  MUTED: 'MUTED',
  /** The user is banned from this room; `retry_after_ms` says for how long (0 = until lifted). */
  BANNED: 'BANNED',
  /** The sender's or the room's message rate is exceeded; the message was dropped. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** The message contains a word on the room's sensitive-word list (filter mode `reject`). */
  REJECTED_WORD: 'REJECTED_WORD',
  /**
   * The room's buffer for this priority is full (its store is slower than its traffic): the message was
   * dropped, or, for system and high, refused on arrival. Retry after `retry_after_ms`.
   */
  OVERLOADED: 'OVERLOADED',
  /** The moderation target is not in the room (kick). */
  NOT_FOUND: 'NOT_FOUND',
  /**
   * The backend serving the session does not hold the room's write lease (the room is moving between
   * backends after a failure or a recovery); nothing was written. Retry after `retry_after_ms`.
   */
  NOT_OWNER: 'NOT_OWNER',
  /** The backend failed (its store is unreachable…); retrying later may succeed. */
  INTERNAL: 'INTERNAL',
} as const;
export type ChatErrorCode = (typeof ChatErrorCode)[keyof typeof ChatErrorCode];

/** A request that fails with a Chat error code; turned into a Reply with `ok: false`. */
export class ChatError extends RequestError<ChatErrorCode> {}
