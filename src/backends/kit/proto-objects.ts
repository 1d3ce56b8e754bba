import type protobuf from 'protobufjs';

/**
 * Protobuf messages as the plain objects the business codecs hand out (chat-codec.ts, im-codec.ts):
 * camelCase fields, 64-bit integers as numbers, bytes as Buffers, every scalar with its default, and
 * oneof members and unset sub-messages absent rather than null. Pure: the SDK imports it.
 */
const TO_OBJECT: protobuf.IConversionOptions = { defaults: true, arrays: true, objects: true, longs: Number, bytes: Buffer };

/** Decodes `bytes` as `type` into such a plain object; throws protobufjs's error on malformed bytes. */
export function decodePlain(type: protobuf.Type, bytes: Uint8Array): Record<string, unknown> {
  return dropNulls(type.toObject(type.decode(bytes), TO_OBJECT));
}

/** toObject fills unset sub-messages with null, at any depth: the codecs' interfaces use absence instead. */
function dropNulls(value: Record<string, unknown>): Record<string, unknown> {
  for (const [key, v] of Object.entries(value)) {
    if (v === null) {
      delete value[key];
    } else if (Array.isArray(v)) {
      for (const item of v) if (isMessage(item)) dropNulls(item);
    } else if (isMessage(v)) {
      dropNulls(v);
    }
  }
  return value;
}

function isMessage(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Buffer.isBuffer(value);
}
