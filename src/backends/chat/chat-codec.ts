/**
 * Encoding and decoding of the Chat protocol (proto/livemux/chat/v1/chat.proto, docs/chat.md). Pure
 * functions, no I/O; shared by the Chat backend, the tests and client apps (exported by the package).
 */
import protobuf from 'protobufjs';
import { protoPath } from '../../paths.js';
import { decodePlain } from '../kit/proto-objects.js';
import { ChatError, ChatErrorCode } from './chat-errors.js';

/** Role values on the wire (`livemux.chat.v1.Role`). */
export const WireRole = { UNSPECIFIED: 0, MEMBER: 1, HOST: 2, ADMIN: 3, WHITELISTED: 4 } as const;
export type WireRole = (typeof WireRole)[keyof typeof WireRole];

/** Moderation actions on the wire (`livemux.chat.v1.ModerateAction`). */
export const ModerateAction = { UNSPECIFIED: 0, MUTE: 1, UNMUTE: 2, KICK: 3, BAN: 4, UNBAN: 5, WHITELIST: 6, UNWHITELIST: 7 } as const;
export type ModerateAction = (typeof ModerateAction)[keyof typeof ModerateAction];

export interface JoinRequest { sinceSeq: number; role: number }
export interface SendRequest { body: Uint8Array; clientMsgId: string }
export interface ListMembersRequest { cursor: string; limit: number }
export interface ModerateRequest { action: number; targetUser: string; durationMs: number; reason: string }
export interface SetAttributesRequest { set: Record<string, string>; delete: string[] }
export interface HistoryRequest { afterSeq: number; limit: number }

/** A client request; exactly one member besides `requestId` is set. */
export interface ChatRequest {
  requestId: number;
  join?: JoinRequest;
  send?: SendRequest;
  leave?: Record<string, never>;
  listMembers?: ListMembersRequest;
  moderate?: ModerateRequest;
  setAttributes?: SetAttributesRequest;
  history?: HistoryRequest;
}

export interface RoomMessage { seq: number; senderId: string; priority: number; body: Uint8Array; sentAtMs: number; clientMsgId: string }
export interface MemberInfo { userId: string; role: number; joinedAtMs: number }
export interface Reply {
  requestId: number;
  ok: boolean;
  errorCode: string;
  errorMessage: string;
  retryAfterMs: number;
  sent?: { seq: number };
  members?: { members: MemberInfo[]; nextCursor: string; onlineCount: number };
  history?: { messages: RoomMessage[]; oldestSeq: number };
  attributes?: { version: number };
}
export interface HistoryGap { fromSeq: number; toSeq: number }
export interface Joined { seq: number; onlineCount: number; attributes: Record<string, string>; attributesVersion: number; role: number }
export interface AttributesChanged { version: number; previousVersion: number; set: Record<string, string>; deleted: string[]; by: string }

/** A backend event; exactly one member is set. */
export interface ChatEvent {
  reply?: Reply;
  message?: RoomMessage;
  gap?: HistoryGap;
  joined?: Joined;
  attributesChanged?: AttributesChanged;
  kicked?: { reason: string; by: string };
  banned?: { reason: string; by: string; untilMs: number };
  memberJoined?: { userId: string; role: number; onlineCount: number };
  memberLeft?: { userId: string; onlineCount: number };
}

const root = protobuf.loadSync(protoPath('livemux/chat/v1/chat.proto'));
const RequestType = root.lookupType('livemux.chat.v1.ChatRequest');
const EventType = root.lookupType('livemux.chat.v1.ChatEvent');
export function encodeChatRequest(request: ChatRequest): Buffer {
  return Buffer.from(RequestType.encode(RequestType.fromObject(request as unknown as Record<string, unknown>)).finish());
}

/** Decodes a request; a malformed one throws ChatError BAD_REQUEST. */
export function decodeChatRequest(payload: Uint8Array): ChatRequest {
  try {
    return decodePlain(RequestType, payload) as unknown as ChatRequest;
  } catch (err) {
    throw new ChatError(ChatErrorCode.BAD_REQUEST, `chat request: not a valid ChatRequest (${(err as Error).message})`);
  }
}

export function encodeChatEvent(event: ChatEvent): Buffer {
  return Buffer.from(EventType.encode(EventType.fromObject(event as unknown as Record<string, unknown>)).finish());
}

/** Decodes an event; throws on malformed bytes. */
export function decodeChatEvent(payload: Uint8Array): ChatEvent {
  return decodePlain(EventType, payload) as unknown as ChatEvent;
}

/** The name of the member set in a request, or null when none is. */
export function requestKind(request: ChatRequest): keyof Omit<ChatRequest, 'requestId'> | null {
  for (const kind of ['join', 'send', 'leave', 'listMembers', 'moderate', 'setAttributes', 'history'] as const) {
    if (request[kind] !== undefined) return kind;
  }
  return null;
}
