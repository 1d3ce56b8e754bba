/**
 * The one registry of error/close codes (PROTOCOL.md §6). Codes travel in OPEN_FAIL, CLOSE, RESET,
 * GOAWAY and ERROR bodies. test/unit/codes.test.ts keeps this table and PROTOCOL.md in sync.
 *
 * Ranges: 0 normal · 1xx connection protocol faults · 2xx session faults · 3xx authentication ·
 * 4xx server lifecycle and load.
 */

/** What a client should do after receiving the code. */
export type RetryAdvice =
  /** Not an error. */
  | 'none'
  /** A client bug or a permanent refusal: do not retry the same thing. */
  | 'never'
  /** Reconnect (or reopen) at once, jitter only. */
  | 'immediate'
  /** Reconnect (or reopen) with exponential backoff starting at the given delay. */
  | 'backoff'
  /** Obtain a fresh token, then reconnect. */
  | 'refresh_token';

export interface CodeInfo {
  readonly code: number;
  readonly name: string;
  readonly retry: RetryAdvice;
  /** First retry delay in ms for 'backoff' (0 otherwise). */
  readonly delayMs: number;
  readonly meaning: string;
}

function def(code: number, name: string, retry: RetryAdvice, delayMs: number, meaning: string): CodeInfo {
  return Object.freeze({ code, name, retry, delayMs, meaning });
}

export const Code = {
  NORMAL: 0,

  PROTOCOL_ERROR: 100,
  BAD_MAGIC: 101,
  UNSUPPORTED_VERSION: 102,
  FRAME_TOO_LARGE: 103,
  UNKNOWN_FRAME_TYPE: 104,
  BAD_FLAGS: 105,
  MALFORMED_PAYLOAD: 106,
  UNEXPECTED_FRAME: 107,
  FLOW_CONTROL_ERROR: 108,
  BAD_SESSION_ID: 109,

  UNKNOWN_SESSION: 200,
  SESSION_ID_REUSED: 201,
  TOO_MANY_SESSIONS: 202,
  UNKNOWN_BUSINESS: 203,
  BACKEND_UNAVAILABLE: 204,
  BACKEND_CLOSED: 205,
  SESSION_FLOW_CONTROL: 206,
  CANCELLED: 207,
  BUSINESS_DISABLED: 208,
  MISSING_HASH_KEY: 209,
  ENDPOINT_REMOVED: 210,
  HALF_CLOSE_TIMEOUT: 211,
  SESSION_IDS_EXHAUSTED: 212,
  MESSAGE_TOO_LARGE: 213,

  AUTH_FAILED: 300,
  AUTH_EXPIRED: 301,

  HANDSHAKE_TIMEOUT: 400,
  HEARTBEAT_TIMEOUT: 401,
  IDLE_TIMEOUT: 402,
  SLOW_CONSUMER: 403,
  RATE_LIMITED: 404,
  GOING_AWAY: 405,
  INTERNAL_ERROR: 406,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

const TABLE: readonly CodeInfo[] = [
  def(Code.NORMAL, 'NORMAL', 'none', 0, 'Graceful close requested by either side.'),

  def(Code.PROTOCOL_ERROR, 'PROTOCOL_ERROR', 'never', 0, 'Generic framing violation not covered by a narrower code.'),
  def(Code.BAD_MAGIC, 'BAD_MAGIC', 'never', 0, 'Frame does not start with the magic byte 0x4C: the stream is not livemux or lost sync.'),
  def(Code.UNSUPPORTED_VERSION, 'UNSUPPORTED_VERSION', 'never', 0, 'Frame version byte or every HELLO version is unsupported by the server.'),
  def(Code.FRAME_TOO_LARGE, 'FRAME_TOO_LARGE', 'never', 0, 'Payload length exceeds the announced limit for this frame type.'),
  def(Code.UNKNOWN_FRAME_TYPE, 'UNKNOWN_FRAME_TYPE', 'never', 0, 'Frame type byte is not assigned.'),
  def(Code.BAD_FLAGS, 'BAD_FLAGS', 'never', 0, 'A reserved flag bit or the reserved priority value 3 is set.'),
  def(Code.MALFORMED_PAYLOAD, 'MALFORMED_PAYLOAD', 'never', 0, 'A control-frame body is not valid for its type (bad protobuf, wrong fixed size, missing field).'),
  def(Code.UNEXPECTED_FRAME, 'UNEXPECTED_FRAME', 'never', 0, 'Frame is not legal in the current connection state (e.g. OPEN before HELLO, a second HELLO).'),
  def(Code.FLOW_CONTROL_ERROR, 'FLOW_CONTROL_ERROR', 'never', 0, 'Peer sent more DATA than the connection window allowed, or a WINDOW_UPDATE overflowed 2^31-1 or was 0.'),
  def(Code.BAD_SESSION_ID, 'BAD_SESSION_ID', 'never', 0, 'Session id is 0 on a session frame, or non-zero on a connection frame.'),

  def(Code.UNKNOWN_SESSION, 'UNKNOWN_SESSION', 'never', 0, 'Frame names a session that is not open (never opened, or already closed/reset).'),
  def(Code.SESSION_ID_REUSED, 'SESSION_ID_REUSED', 'never', 0, 'OPEN uses a session id that is open or was used before on this connection.'),
  def(Code.TOO_MANY_SESSIONS, 'TOO_MANY_SESSIONS', 'backoff', 1000, 'OPEN would exceed the max sessions per connection; close a session first.'),
  def(Code.UNKNOWN_BUSINESS, 'UNKNOWN_BUSINESS', 'never', 0, 'No route in routes.yaml serves this business name (also the close of a session whose route a reload removed).'),
  def(Code.BACKEND_UNAVAILABLE, 'BACKEND_UNAVAILABLE', 'backoff', 1000, 'No healthy backend endpoint, or the bound endpoint failed; retry after the hint.'),
  def(Code.BACKEND_CLOSED, 'BACKEND_CLOSED', 'never', 0, 'The backend closed the session (the reason says why).'),
  def(Code.SESSION_FLOW_CONTROL, 'SESSION_FLOW_CONTROL', 'never', 0, 'Peer sent more DATA on a session than its session window allowed.'),
  def(Code.CANCELLED, 'CANCELLED', 'none', 0, 'The session was abandoned by the peer that sent RESET (no error implied).'),
  def(Code.BUSINESS_DISABLED, 'BUSINESS_DISABLED', 'backoff', 30000, 'The business is disabled in routes.yaml (enabled: false); its sessions are closed and new ones refused until it is enabled again.'),
  def(Code.MISSING_HASH_KEY, 'MISSING_HASH_KEY', 'never', 0, 'OPEN lacks the metadata field its route hashes on (e.g. room_id); the reason names the field.'),
  def(Code.ENDPOINT_REMOVED, 'ENDPOINT_REMOVED', 'immediate', 0, 'A config reload removed the session\'s backend endpoint and the session could not be moved; reopen at once.'),
  def(Code.HALF_CLOSE_TIMEOUT, 'HALF_CLOSE_TIMEOUT', 'never', 0, 'After the client\'s CLOSE the backend did not end its side within the half-close timeout; the server ended the session.'),
  def(Code.SESSION_IDS_EXHAUSTED, 'SESSION_IDS_EXHAUSTED', 'immediate', 0, 'The client used session id 2^32-1, the last one; open new sessions on a new connection (this one closes when its sessions end).'),
  def(Code.MESSAGE_TOO_LARGE, 'MESSAGE_TOO_LARGE', 'never', 0, 'The backend sent a message larger than this connection\'s max_payload; the server closed the session and told the backend.'),

  def(Code.AUTH_FAILED, 'AUTH_FAILED', 'never', 0, 'Token missing, malformed, or its signature or claims are invalid.'),
  def(Code.AUTH_EXPIRED, 'AUTH_EXPIRED', 'refresh_token', 0, 'Token has expired; get a new one and reconnect.'),

  def(Code.HANDSHAKE_TIMEOUT, 'HANDSHAKE_TIMEOUT', 'backoff', 1000, 'No valid HELLO within the handshake timeout.'),
  def(Code.HEARTBEAT_TIMEOUT, 'HEARTBEAT_TIMEOUT', 'immediate', 0, 'Peer missed consecutive heartbeats; the connection is presumed dead.'),
  def(Code.IDLE_TIMEOUT, 'IDLE_TIMEOUT', 'immediate', 0, 'No session for the idle timeout (§9.2); reconnect when needed.'),
  def(Code.SLOW_CONSUMER, 'SLOW_CONSUMER', 'backoff', 2000, 'Client read too slowly: even after dropping low-priority DATA the outbound queue exceeded its bound.'),
  def(Code.RATE_LIMITED, 'RATE_LIMITED', 'backoff', 5000, 'Client exceeded a rate limit (e.g. OPEN/RESET flood).'),
  def(Code.GOING_AWAY, 'GOING_AWAY', 'immediate', 0, 'Server is draining (deploy, scale-in); reconnect, to the GOAWAY address hint if given.'),
  def(Code.INTERNAL_ERROR, 'INTERNAL_ERROR', 'backoff', 1000, 'Unexpected server fault; reported and logged.'),
];

/** Every code, in numeric order. */
export const CODES: readonly CodeInfo[] = TABLE;

const BY_CODE = new Map(TABLE.map((c) => [c.code, c]));

/** Registry entry for a code; unknown codes (from a newer peer) map to a generic, retry-with-backoff entry. */
export function codeInfo(code: number): CodeInfo {
  return BY_CODE.get(code) ?? def(code, `UNKNOWN_${code}`, 'backoff', 1000, 'Code not known to this version.');
}

/** Symbolic name of a code, for logs and metric labels. */
export function codeName(code: number): string {
  return codeInfo(code).name;
}
