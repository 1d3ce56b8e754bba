/**
 * The livemux client SDK: the public API of this folder. Everything else in src/client is internal.
 */
export { connect, LivemuxClient, type ClientEvents, type ReconnectingInfo } from './client.js';
export { ClientSession, type OpenOptions, type SendOptions, type SessionEvents } from './client-session.js';
export { ImClient, type ImClientEvent, type ImClientOptions } from './im-client.js';
export { ChatClient, type ChatClientEvent, type ChatJoinOptions } from './chat-client.js';
export type { IncomingMessage } from './session-inbox.js';
export { openPush, PushClient, type Push, type PushClientEvents, type PushClientOptions } from './push-client.js';
export type { ClientLogger, ConnectOptions, ReconnectOptions } from './options.js';
export {
  ClientClosedError,
  ConnectionLostError,
  OpenFailedError,
  PayloadTooLargeError,
  RequestFailedError,
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
// The business protocols' shapes the typed clients hand out.
export type { HistoryPage, Message, PresenceEvent, ReadReceipt, ReadResult, RecallNotice, SendResult, SyncResult, Unread } from '../backends/im/im-codec.js';
export { ImErrorCode } from '../backends/im/im-errors.js';
export { ModerateAction, WireRole, type AttributesChanged, type Joined, type MemberInfo, type RoomMessage } from '../backends/chat/chat-codec.js';
export { ChatErrorCode } from '../backends/chat/chat-errors.js';
