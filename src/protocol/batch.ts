import { Code } from './codes.js';
import { ProtocolError } from './errors.js';

/** Bytes before each message in a BATCH payload: its length as a u32, big-endian. */
export const BATCH_PREFIX = 4;
const LENGTH_PREFIX = BATCH_PREFIX;

/** Encodes messages as one BATCH payload (PROTOCOL.md §4.9): for each, a u32 length then its bytes. */
export function encodeBatch(messages: readonly Uint8Array[]): Buffer {
  let size = 0;
  for (const m of messages) size += LENGTH_PREFIX + m.length;
  const out = Buffer.allocUnsafe(size);
  let offset = 0;
  for (const m of messages) {
    out.writeUInt32BE(m.length, offset);
    out.set(m, offset + LENGTH_PREFIX);
    offset += LENGTH_PREFIX + m.length;
  }
  return out;
}

/**
 * Calls `onMessage` with each message of a BATCH payload, in order, as zero-copy views. Throws
 * ProtocolError MALFORMED_PAYLOAD (and delivers nothing) if a length runs past the end.
 */
export function decodeBatch(payload: Buffer, onMessage: (message: Buffer, bytesWithPrefix: number) => void): void {
  const views: Buffer[] = [];
  let offset = 0;
  while (offset < payload.length) {
    if (payload.length - offset < LENGTH_PREFIX) {
      throw new ProtocolError(Code.MALFORMED_PAYLOAD, `DATA batch: truncated length at byte ${offset} of ${payload.length}`);
    }
    const length = payload.readUInt32BE(offset);
    const end = offset + LENGTH_PREFIX + length;
    if (end > payload.length) {
      throw new ProtocolError(Code.MALFORMED_PAYLOAD, `DATA batch: message of ${length} bytes at byte ${offset} runs past the end (${payload.length})`);
    }
    views.push(payload.subarray(offset + LENGTH_PREFIX, end));
    offset = end;
  }
  for (const v of views) onMessage(v, LENGTH_PREFIX + v.length);
}
