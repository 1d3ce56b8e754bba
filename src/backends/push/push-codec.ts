/**
 * Encoding and decoding of the Push protocol (proto/livemux/push/v1/push.proto, docs/push.md). Pure
 * functions, no I/O; shared by the Push backend and the SDK's push client. The .proto file is parsed on
 * first use, not on import, so importing the SDK stays cheap for apps that never open a push session.
 */
import protobuf from 'protobufjs';
import { protoPath } from '../../paths.js';
import { lengthField, numberField, varintLength, writeField } from '../../util/varint.js';

/** Who a push was addressed to (`livemux.push.v1.Audience`). */
export const Audience = { USERS: 0, TOPIC: 1, ALL: 2 } as const;
export type Audience = (typeof Audience)[keyof typeof Audience];

/** A client request; exactly one member besides `requestId` is set. */
export interface PushRequest {
  requestId: number;
  ack?: { ids: string[] };
  subscribe?: { topics: string[] };
  unsubscribe?: { topics: string[] };
  listTopics?: Record<string, never>;
}

/** One push as a device receives it. */
export interface PushMessage {
  id: string;
  data: Uint8Array;
  /** 0 system, 1 high, 2 low (PROTOCOL.md §8). */
  priority: number;
  collapseKey: string;
  sentAtMs: number;
  /** 0: online devices only. */
  expiresAtMs: number;
  audience: Audience;
  topic: string;
}

export interface PushReply {
  requestId: number;
  ok: boolean;
  errorCode: string;
  errorMessage: string;
  topics: string[];
}

/** A backend event; exactly one member is set. */
export interface PushEvent {
  push?: PushMessage;
  reply?: PushReply;
  synced?: { backlog: number; topics: string[] };
}

interface Types {
  request: protobuf.Type;
  event: protobuf.Type;
}

let types: Types | null = null;

function load(): Types {
  if (types === null) {
    const root = protobuf.loadSync(protoPath('livemux/push/v1/push.proto'));
    types = { request: root.lookupType('livemux.push.v1.PushRequest'), event: root.lookupType('livemux.push.v1.PushEvent') };
  }
  return types;
}

/**
 * What protobufjs's `decode` returns, as far as it is read here: unset fields read their defaults from
 * the message's prototype (sub-messages null, uint64 a Long, bytes an empty array). Reading these
 * directly, rather than through `toObject`, is what keeps decoding cheap on the path of every push (it
 * is a third of the SDK's cost of receiving one).
 */
type Long = number | { toNumber(): number };
interface DecodedRequest {
  requestId: number;
  ack: { ids: string[] } | null;
  subscribe: { topics: string[] } | null;
  unsubscribe: { topics: string[] } | null;
  listTopics: object | null;
}
interface DecodedEvent {
  push: (Omit<PushMessage, 'sentAtMs' | 'expiresAtMs'> & { sentAtMs: Long; expiresAtMs: Long }) | null;
  reply: PushReply | null;
  synced: { backlog: number; topics: string[] } | null;
}

const EMPTY = Buffer.alloc(0);
const toNumber = (value: Long): number => (typeof value === 'number' ? value : value.toNumber());

// encode takes the plain objects as they are (the interfaces above match the generated shape, enums as
// numbers, bytes as Buffers): no fromObject copy on the path of every push.
export function encodePushRequest(request: PushRequest): Buffer {
  const { request: type } = load();
  return asBuffer(type.encode(request as unknown as protobuf.Message).finish());
}

/**
 * The encoder's output as a Buffer without copying it: under Node, protobufjs already writes into a
 * Buffer of its own (Buffer.from would copy each push's bytes once more, on both sides of the wire).
 */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes a request; throws on malformed bytes (the caller answers BAD_REQUEST). */
export function decodePushRequest(payload: Uint8Array): PushRequest {
  const { request: type } = load();
  const m = type.decode(payload) as unknown as DecodedRequest;
  const request: PushRequest = { requestId: m.requestId };
  if (m.ack != null) request.ack = { ids: m.ack.ids };
  if (m.subscribe != null) request.subscribe = { topics: m.subscribe.topics };
  if (m.unsubscribe != null) request.unsubscribe = { topics: m.unsubscribe.topics };
  if (m.listTopics != null) request.listTopics = {};
  return request;
}

export function encodePushEvent(event: PushEvent): Buffer {
  if (event.push !== undefined && event.reply === undefined && event.synced === undefined) return encodePushOnly(event.push);
  const { event: type } = load();
  return asBuffer(type.encode(event as unknown as protobuf.Message).finish());
}

/**
 * `PushEvent{push}` written by hand: the event a node encodes for every push it delivers, where
 * protobufjs's writer (an operation object per field, then a pass copying them out) was ~3 % of the push
 * node's time. The same bytes as protobufjs (fields in order, those at their default left out;
 * test/unit/push-codec.test.ts holds the two equal).
 */
function encodePushOnly(p: PushMessage): Buffer {
  const id = Buffer.byteLength(p.id);
  const collapseKey = Buffer.byteLength(p.collapseKey);
  const topic = Buffer.byteLength(p.topic);
  const data = p.data.length;
  const inner =
    lengthField(id) + lengthField(data) + numberField(p.priority) + lengthField(collapseKey) +
    numberField(p.sentAtMs) + numberField(p.expiresAtMs) + numberField(p.audience) + lengthField(topic);
  const out = Buffer.allocUnsafe(1 + varintLength(inner) + inner);
  let at = writeField(out, 0, 0x0a, inner);
  if (id > 0) {
    at = writeField(out, at, 0x0a, id);
    at += out.write(p.id, at);
  }
  if (data > 0) {
    at = writeField(out, at, 0x12, data);
    out.set(p.data, at);
    at += data;
  }
  if (p.priority !== 0) at = writeField(out, at, 0x18, p.priority);
  if (collapseKey > 0) {
    at = writeField(out, at, 0x22, collapseKey);
    at += out.write(p.collapseKey, at);
  }
  if (p.sentAtMs !== 0) at = writeField(out, at, 0x28, p.sentAtMs);
  if (p.expiresAtMs !== 0) at = writeField(out, at, 0x30, p.expiresAtMs);
  if (p.audience !== 0) at = writeField(out, at, 0x38, p.audience);
  if (topic > 0) out.write(p.topic, writeField(out, at, 0x42, topic));
  return out;
}

/** Decodes an event; throws on malformed bytes. `push.data` is a view into `payload`. */
export function decodePushEvent(payload: Uint8Array): PushEvent {
  const { event: type } = load();
  const m = type.decode(payload) as unknown as DecodedEvent;
  const event: PushEvent = {};
  if (m.push != null) {
    const p = m.push;
    event.push = {
      id: p.id,
      data: p.data.length === 0 ? EMPTY : p.data,
      priority: p.priority,
      collapseKey: p.collapseKey,
      sentAtMs: toNumber(p.sentAtMs),
      expiresAtMs: toNumber(p.expiresAtMs),
      audience: p.audience,
      topic: p.topic,
    };
  }
  if (m.reply != null) {
    const r = m.reply;
    event.reply = { requestId: r.requestId, ok: r.ok, errorCode: r.errorCode, errorMessage: r.errorMessage, topics: r.topics };
  }
  if (m.synced != null) event.synced = { backlog: m.synced.backlog, topics: m.synced.topics };
  return event;
}

/** Topic names: 1-128 of A-Z a-z 0-9 . _ : - (e.g. `class:42`, `city:bj`). */
export const TOPIC_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** Device ids (session metadata `device_id`): the same alphabet and length as topics. */
export const DEVICE_ID_PATTERN = TOPIC_PATTERN;
/** Push ids (`id` of POST /v1/push): 1-128 of A-Z a-z 0-9 . _ : -. */
export const PUSH_ID_PATTERN = TOPIC_PATTERN;
