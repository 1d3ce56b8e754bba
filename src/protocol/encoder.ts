import { FRAME_VERSION, FrameType, HEADER_SIZE, MAGIC, WINDOW_UPDATE_SIZE } from './constants.js';

/** Writes a frame header at `offset` of `target`. */
export function writeHeader(
  target: Buffer,
  offset: number,
  type: FrameType,
  flags: number,
  sessionId: number,
  length: number,
): void {
  target[offset] = MAGIC;
  target[offset + 1] = FRAME_VERSION;
  target[offset + 2] = type;
  target[offset + 3] = flags;
  target.writeUInt32BE(sessionId, offset + 4);
  target.writeUInt32BE(length, offset + 8);
}

/** A complete frame in one new buffer (header + a copy of the payload). */
export function encodeFrame(type: FrameType, flags: number, sessionId: number, payload?: Uint8Array): Buffer {
  const length = payload ? payload.length : 0;
  const out = Buffer.allocUnsafe(HEADER_SIZE + length);
  writeHeader(out, 0, type, flags, sessionId, length);
  if (payload && length > 0) out.set(payload, HEADER_SIZE);
  return out;
}

/** A DATA frame; `priority` goes in the flag bits. */
export function encodeData(sessionId: number, priority: number, payload: Uint8Array): Buffer {
  return encodeFrame(FrameType.DATA, priority, sessionId, payload);
}

/** A WINDOW_UPDATE frame granting `increment` bytes (session 0 = connection window). */
export function encodeWindowUpdate(sessionId: number, increment: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + WINDOW_UPDATE_SIZE);
  writeHeader(out, 0, FrameType.WINDOW_UPDATE, 0, sessionId, WINDOW_UPDATE_SIZE);
  out.writeUInt32BE(increment, HEADER_SIZE);
  return out;
}
