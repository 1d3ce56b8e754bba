/**
 * Encoding and decoding of the IM protocol (proto/livemux/im/v1/im.proto, docs/im.md). Pure functions,
 * no I/O; shared by the IM backend, the SDK's ImClient and the tests (so nothing here may import the
 * backend's server side).
 */
import protobuf from 'protobufjs';
import { protoPath } from '../../paths.js';
import { decodePlain } from '../kit/proto-objects.js';
import { ImError, ImErrorCode } from './im-errors.js';
import { lengthField, numberField, varintLength, writeField, writeVarint } from '../../util/varint.js';

export interface SyncRequest { afterSeq: number }
export interface SendRequest { to: string; body: Uint8Array; clientMsgId: string }
export interface AckRequest { inboxSeq: number }
export interface ReadRequest { peer: string; convSeq: number }
export interface RecallRequest { peer: string; convSeq: number }
export interface TypingRequest { to: string }
export interface HistoryRequest { peer: string; beforeSeq: number; limit: number }
export interface WatchPresenceRequest { users: string[] }
export interface UserRequest { user: string }
export interface ListBlockedRequest { after: string }

/** A client request; exactly one member besides `requestId` is set. */
export interface ImRequest {
  requestId: number;
  sync?: SyncRequest;
  send?: SendRequest;
  ack?: AckRequest;
  read?: ReadRequest;
  recall?: RecallRequest;
  typing?: TypingRequest;
  history?: HistoryRequest;
  watchPresence?: WatchPresenceRequest;
  block?: UserRequest;
  unblock?: UserRequest;
  listBlocked?: ListBlockedRequest;
}

export type ImRequestKind = keyof Omit<ImRequest, 'requestId'>;
const REQUEST_KINDS: readonly ImRequestKind[] = ['sync', 'send', 'ack', 'read', 'recall', 'typing', 'history', 'watchPresence', 'block', 'unblock', 'listBlocked'];

export interface Message {
  serverId: string;
  sender: string;
  recipient: string;
  convSeq: number;
  body: Uint8Array;
  sentAtMs: number;
  clientMsgId: string;
  senderDevice: string;
  recalled: boolean;
}
export interface ReadReceipt { reader: string; peer: string; convSeq: number; readAtMs: number }
export interface RecallNotice { serverId: string; sender: string; recipient: string; convSeq: number; recalledAtMs: number }

/** What an inbox entry carries (its stored body): exactly one member is set. */
export interface InboxPayload {
  message?: Message;
  read?: ReadReceipt;
  recall?: RecallNotice;
}
export interface InboxItem extends InboxPayload { inboxSeq: number }

export interface SendResult { serverId: string; convSeq: number; sentAtMs: number; clientMsgId: string; duplicate: boolean }
export interface Unread { peer: string; count: number; lastConvSeq: number }
export interface SyncResult { lastInboxSeq: number; unread: Unread[] }
export interface ReadResult { readSeq: number; unread: number }
export interface HistoryPage { messages: Message[]; hasMore: boolean; oldestRetainedSeq: number }
export interface PresenceEvent { user: string; online: boolean; atMs: number }
export interface BlockedList { users: string[]; hasMore: boolean }

export interface Reply {
  requestId: number;
  ok: boolean;
  errorCode: string;
  errorMessage: string;
  retryAfterMs: number;
  sent?: SendResult;
  sync?: SyncResult;
  read?: ReadResult;
  history?: HistoryPage;
  presence?: { users: PresenceEvent[] };
  blocked?: BlockedList;
}

/** A backend event; exactly one member is set. */
export interface ImEvent {
  reply?: Reply;
  entries?: { items: InboxItem[] };
  synced?: { lastSeq: number; resumed: boolean };
  gap?: { fromSeq: number; toSeq: number };
  typing?: { from: string; atMs: number };
  presence?: PresenceEvent;
}

const root = protobuf.loadSync(protoPath('livemux/im/v1/im.proto'));
const RequestType = root.lookupType('livemux.im.v1.ImRequest');
const EventType = root.lookupType('livemux.im.v1.ImEvent');
const ItemType = root.lookupType('livemux.im.v1.InboxItem');
/**
 * Encodes a plain object of the shapes above. protobufjs encodes plain objects directly when their
 * field types are right (numbers for integers, Uint8Array for bytes), which they are by these
 * interfaces, so no `fromObject` copy is made: this runs several times per message sent.
 */
function encode(type: protobuf.Type, value: object): Buffer {
  const bytes = type.encode(value as Record<string, unknown>).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

export function encodeImRequest(request: ImRequest): Buffer {
  return encode(RequestType, request);
}

/** Decodes a request; malformed bytes throw ImError BAD_REQUEST. */
export function decodeImRequest(payload: Uint8Array): ImRequest {
  try {
    return decodePlain(RequestType, payload) as unknown as ImRequest;
  } catch (err) {
    throw new ImError(ImErrorCode.BAD_REQUEST, `im request: not a valid ImRequest (${(err as Error).message})`);
  }
}

/** The name of the member set in a request, or null when none is (e.g. a kind from a newer protocol). */
export function requestKind(request: ImRequest): ImRequestKind | null {
  return REQUEST_KINDS.find((k) => request[k] !== undefined) ?? null;
}

export function encodeImEvent(event: ImEvent): Buffer {
  return encode(EventType, event);
}

/**
 * `ImEvent { reply { request_id, ok: true, sent? } }`, the answer to every send and every ack, written
 * by hand into one buffer (as encodeMessageFields, and for the same reason). The same bytes as
 * encodeImEvent of that reply (test/unit/im-codec.test.ts holds the two equal).
 */
export function encodeOkReply(requestId: number, sent?: SendResult): Buffer {
  const serverId = sent === undefined ? 0 : Buffer.byteLength(sent.serverId);
  const clientMsgId = sent === undefined ? 0 : Buffer.byteLength(sent.clientMsgId);
  const result =
    sent === undefined ? 0 : lengthField(serverId) + numberField(sent.convSeq) + numberField(sent.sentAtMs) + lengthField(clientMsgId) + (sent.duplicate ? 2 : 0);
  // A result is written even when empty (every field at its default): it says which result it is.
  const reply = numberField(requestId) + 2 + (sent === undefined ? 0 : 1 + varintLength(result) + result);
  const out = Buffer.allocUnsafe(1 + varintLength(reply) + reply);
  let at = writeField(out, 0, 0x0a, reply); // ImEvent.reply: field 1, length-delimited
  if (requestId !== 0) at = writeField(out, at, 0x08, requestId);
  at = writeField(out, at, 0x10, 1); // ok
  if (sent === undefined) return out;
  at = writeField(out, at, 0x52, result); // Reply.sent: field 10, length-delimited
  at = stringField(out, at, 0x0a, sent.serverId, serverId);
  if (sent.convSeq !== 0) at = writeField(out, at, 0x10, sent.convSeq);
  if (sent.sentAtMs !== 0) at = writeField(out, at, 0x18, sent.sentAtMs);
  at = stringField(out, at, 0x22, sent.clientMsgId, clientMsgId);
  if (sent.duplicate) writeField(out, at, 0x28, 1);
  return out;
}

/** Decodes an event; throws on malformed bytes. */
export function decodeImEvent(payload: Uint8Array): ImEvent {
  return decodePlain(EventType, payload) as unknown as ImEvent;
}

/** The stored body of an inbox entry: an InboxItem without its inbox_seq (given when delivered). */
export function encodeInboxPayload(payload: InboxPayload): Buffer {
  return encode(ItemType, payload);
}

export function decodeInboxPayload(body: Uint8Array): InboxPayload {
  const { inboxSeq: _, ...payload } = decodePlain(ItemType, body);
  return payload as InboxPayload;
}

/**
 * A message's encoded fields but conv_seq: what the store completes once it has numbered the message.
 * Written by hand, once per send: protobufjs's writer (an operation object per field, then a pass
 * copying them out) made garbage the IM backend's collector paid for. The same bytes as protobufjs
 * (fields in order, those at their default left out; test/unit/im-codec.test.ts holds the two equal).
 */
export function encodeMessageFields(m: Omit<Message, 'convSeq' | 'recalled'>): Buffer {
  const serverId = Buffer.byteLength(m.serverId);
  const sender = Buffer.byteLength(m.sender);
  const recipient = Buffer.byteLength(m.recipient);
  const clientMsgId = Buffer.byteLength(m.clientMsgId);
  const senderDevice = Buffer.byteLength(m.senderDevice);
  const body = m.body.length;
  const out = Buffer.allocUnsafe(
    lengthField(serverId) + lengthField(sender) + lengthField(recipient) + lengthField(body) + numberField(m.sentAtMs) + lengthField(clientMsgId) + lengthField(senderDevice),
  );
  let at = stringField(out, 0, 0x0a, m.serverId, serverId);
  at = stringField(out, at, 0x12, m.sender, sender);
  at = stringField(out, at, 0x1a, m.recipient, recipient);
  if (body > 0) {
    at = writeField(out, at, 0x2a, body);
    out.set(m.body, at);
    at += body;
  }
  if (m.sentAtMs !== 0) at = writeField(out, at, 0x30, m.sentAtMs);
  at = stringField(out, at, 0x3a, m.clientMsgId, clientMsgId);
  stringField(out, at, 0x42, m.senderDevice, senderDevice);
  return out;
}

/** Writes a string field of `bytes` UTF-8 bytes (none when empty); returns the offset after it. */
function stringField(out: Buffer, at: number, tag: number, text: string, bytes: number): number {
  return bytes === 0 ? at : writeField(out, at, tag, bytes) + out.write(text, at + 1 + varintLength(bytes));
}

/**
 * The stored inbox body of a message, `InboxItem { message }`, from its encoded fields and its
 * conv_seq (Message field 4, appended: protobuf fields may come in any order). The Redis IM store
 * builds the same bytes inside its send script (redis-scripts.ts, a test compares them).
 *
 * Its own memory, exactly its size, not a slice of Node's shared 8 KiB pool: a store keeps it for
 * days, and a pool slice kept alive keeps its whole slab (with every short-lived buffer cut from it).
 */
export function inboxMessageBody(fields: Buffer, convSeq: number): Buffer {
  const messageLength = fields.length + 1 + varintLength(convSeq);
  const out = Buffer.allocUnsafeSlow(1 + varintLength(messageLength) + messageLength);
  let at = 0;
  out[at++] = 0x12; // InboxItem.message: field 2, length-delimited
  at = writeVarint(out, at, messageLength);
  at += fields.copy(out, at);
  out[at++] = 0x20; // Message.conv_seq: field 4, varint
  writeVarint(out, at, convSeq);
  return out;
}

/**
 * `ImEvent { entries { items } }` from stored entries, without decoding them: an InboxItem is its
 * inbox_seq field (1, varint) followed by the stored body (the item's other fields), since protobuf
 * fields may come in any order and concatenated encodings merge. One allocation for the whole event.
 */
export function encodeEntriesEvent(entries: readonly { readonly seq: number; readonly body: Buffer }[]): Buffer {
  let itemsLength = 0;
  const itemLengths: number[] = [];
  for (const e of entries) {
    const itemLength = 1 + varintLength(e.seq) + e.body.length;
    itemLengths.push(itemLength);
    itemsLength += 1 + varintLength(itemLength) + itemLength;
  }
  const out = Buffer.allocUnsafe(1 + varintLength(itemsLength) + itemsLength);
  let at = 0;
  out[at++] = 0x12; // ImEvent.entries: field 2, length-delimited
  at = writeVarint(out, at, itemsLength);
  entries.forEach((e, i) => {
    out[at++] = 0x0a; // Entries.items: field 1, length-delimited
    at = writeVarint(out, at, itemLengths[i]!);
    out[at++] = 0x08; // InboxItem.inbox_seq: field 1, varint
    at = writeVarint(out, at, e.seq);
    at += e.body.copy(out, at);
  });
  return out;
}
