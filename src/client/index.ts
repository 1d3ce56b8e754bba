/**
 * The livemux client SDK: the public API of this folder. Everything else in src/client is internal.
 */
export { connect, LivemuxClient, type ClientEvents, type ReconnectingInfo } from './client.js';
export { ClientSession, type OpenOptions, type SendOptions, type SessionEvents } from './client-session.js';
export type { IncomingMessage } from './session-inbox.js';
export { openPush, PushClient, type Push, type PushClientEvents, type PushClientOptions } from './push-client.js';
export type { ClientLogger, ConnectOptions, ReconnectOptions } from './options.js';
export {
  ClientClosedError,
  ConnectionLostError,
  OpenFailedError,
  PayloadTooLargeError,
  ServerError,
  SessionClosedError,
  WireCodeError,
} from './errors.js';
export { ClientState, SessionState } from './states.js';

// Error bases and wire vocabulary that appear in the signatures above, so SDK users need no deep imports.
export { ConfigError, LivemuxError, ProtocolError } from '../protocol/errors.js';
export { Code, codeInfo, type CodeInfo, type RetryAdvice } from '../protocol/codes.js';
export type { PriorityName } from '../protocol/constants.js';
export type { ClientInfo, GoAway, Limits, Welcome } from '../protocol/messages.js';
