import { Code, codeInfo, codeName, type RetryAdvice } from '../protocol/codes.js';
import { LivemuxError, ProtocolError } from '../protocol/errors.js';

/**
 * Errors the client SDK rejects with. Those tied to the wire carry `wireCode` (PROTOCOL.md §6) and the
 * server's `reason`; `retry` is the registry's advice for that code, so callers never hard-code codes.
 */

/** Base of every client error that carries a wire code. `code` is `ERR_<NAME>` of that wire code. */
export class WireCodeError extends LivemuxError {
  constructor(
    readonly wireCode: number,
    message: string,
    /** The peer's human-readable reason (for logs; never parse it). */
    readonly reason = '',
    /** The peer's retry hint in ms; 0 = use the code's default delay. */
    readonly retryAfterMs = 0,
    code = `ERR_${codeName(wireCode)}`,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'WireCodeError';
  }

  /** What the protocol advises after this code (from codes.ts). */
  get retry(): RetryAdvice {
    return codeInfo(this.wireCode).retry;
  }
}

/** The server ended the connection: an ERROR frame, or the close that follows its GOAWAY. */
export class ServerError extends WireCodeError {
  constructor(
    readonly frame: 'ERROR' | 'GOAWAY',
    wireCode: number,
    reason: string,
    retryAfterMs = 0,
  ) {
    super(wireCode, `server: ${frame} ${codeName(wireCode)}${reason ? ` (${reason})` : ''}`, reason, retryAfterMs);
    this.name = 'ServerError';
  }
}

/** The server refused to open a session (OPEN_FAIL), or the client refused locally for the same reason. */
export class OpenFailedError extends WireCodeError {
  constructor(
    readonly business: string,
    wireCode: number,
    reason: string,
    retryAfterMs = 0,
  ) {
    super(wireCode, `open "${business}": ${codeName(wireCode)}${reason ? ` (${reason})` : ''}`, reason, retryAfterMs);
    this.name = 'OpenFailedError';
  }
}

/** An operation needed a session that has ended (or is ending); `wireCode` is the code it ended with. */
export class SessionClosedError extends WireCodeError {
  constructor(wireCode: number, reason: string, what = 'session', options?: { cause?: unknown }) {
    super(wireCode, `${what}: session closed with ${codeName(wireCode)}${reason ? ` (${reason})` : ''}`, reason, 0, undefined, options);
    this.name = 'SessionClosedError';
  }
}

/**
 * The transport failed without a word from the server (socket error or close, handshake timeout). The
 * wire has no code for this, so `wireCode` is HEARTBEAT_TIMEOUT ("presumed dead") for session `'close'`
 * listeners; `code` is the distinct ERR_CONNECTION_LOST.
 */
export class ConnectionLostError extends WireCodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.HEARTBEAT_TIMEOUT, `connection lost: ${message}`, message, 0, 'ERR_CONNECTION_LOST', options);
    this.name = 'ConnectionLostError';
  }

  /** 'backoff': PROTOCOL.md §10 backs off after a connection lost without a code (base 500 ms). */
  override get retry(): RetryAdvice {
    return 'backoff';
  }
}

/** A payload is over the largest DATA this connection accepts; nothing was sent. */
export class PayloadTooLargeError extends LivemuxError {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super('ERR_PAYLOAD_TOO_LARGE', `send: payload too large (${size} vs ${limit} bytes)`);
    this.name = 'PayloadTooLargeError';
  }
}

/** The application closed the client; pending opens and sends are rejected with this. */
export class ClientClosedError extends LivemuxError {
  constructor() {
    super('ERR_CLIENT_CLOSED', 'client: closed by the application');
    this.name = 'ClientClosedError';
  }
}

/**
 * A business backend (Chat, IM) answered a request with `ok: false`. `errorCode` is the protocol's
 * stable name (docs/chat.md §8, docs/im.md §Errors); switch on it, never on the message.
 */
export class RequestFailedError extends LivemuxError {
  constructor(
    readonly errorCode: string,
    message: string,
    /** When trying again may succeed, ms (0 = unknown). */
    readonly retryAfterMs = 0,
  ) {
    super(`ERR_${errorCode || 'FAILED'}`, `request failed: ${errorCode}${message ? ` (${message})` : ''}`);
    this.name = 'RequestFailedError';
  }
}

/**
 * The wire code and reason that describe `err` to a session's `'close'` listeners: the error's own code
 * when it has one, CANCELLED when the application closed the client, INTERNAL_ERROR otherwise.
 */
export function statusOf(err: unknown): { code: number; reason: string } {
  if (err instanceof WireCodeError) return { code: err.wireCode, reason: err.reason || err.message };
  if (err instanceof ProtocolError) return { code: err.wireCode, reason: err.message };
  if (err instanceof ClientClosedError) return { code: Code.CANCELLED, reason: err.message };
  return { code: Code.INTERNAL_ERROR, reason: err instanceof Error ? err.message : String(err) };
}
