import {
  CONNECTION_FRAMES,
  DATA_FLAGS_MASK,
  FLAG_BATCH,
  FLAG_PRIORITY_MASK,
  FRAME_TYPE_NAMES,
  FRAME_VERSION,
  FrameType,
  HEADER_SIZE,
  MAGIC,
  MAX_CONTROL_PAYLOAD,
  MAX_FRAME_TYPE,
  MAX_PING_PAYLOAD,
  WINDOW_UPDATE_SIZE,
} from './constants.js';
import { Code } from './codes.js';
import { ProtocolError } from './errors.js';

/** Receives each complete frame. `payload` may be a view into a pushed chunk: copy it to keep it past the call. */
export interface FrameSink {
  onFrame(type: FrameType, flags: number, sessionId: number, payload: Buffer): void;
}

export interface DecoderLimits {
  /** Largest DATA payload accepted. */
  maxPayload: number;
  /**
   * Whether DATA may carry the BATCH flag: only a server sets it (PROTOCOL.md §2.3), so a server's decoder
   * passes false and refuses it as BAD_FLAGS. Default true (a client's decoder).
   */
  acceptBatch?: boolean;
}

const EMPTY = Buffer.alloc(0);

/**
 * Push-style incremental frame decoder. Knows nothing about sockets: bytes in through `push`, frames
 * out through the sink. Headers are validated as soon as their 12 bytes are present, so an oversized
 * length is refused before a byte of its payload is buffered. Payloads are zero-copy views into the
 * pushed chunk unless a frame spans chunks, in which case exactly that frame is copied once.
 *
 * On the first violation `push` throws a {@link ProtocolError} (connection-scoped: the stream cannot be
 * resynchronised) and every later call throws it again.
 */
export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  /** Read position in chunks[0]: consumed bytes stay in place instead of re-slicing the chunk per frame. */
  private offset = 0;
  private buffered = 0;
  /** -1 while waiting for a header; otherwise the payload length of the frame whose header was read. */
  private pendingLength = -1;
  private pendingType: FrameType = FrameType.DATA;
  private pendingFlags = 0;
  private pendingSession = 0;
  private failure: ProtocolError | null = null;

  constructor(
    private readonly sink: FrameSink,
    private readonly limits: DecoderLimits,
  ) {}

  /** Bytes held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    try {
      this.drain();
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.failure = err;
        this.chunks.length = 0;
        this.offset = 0;
        this.buffered = 0;
      }
      throw err;
    }
  }

  private drain(): void {
    for (;;) {
      if (this.pendingLength < 0) {
        if (this.buffered < HEADER_SIZE) return;
        const first = this.chunks[0]!;
        if (first.length - this.offset >= HEADER_SIZE) {
          this.readHeader(first, this.offset);
          this.skip(HEADER_SIZE);
        } else {
          this.readHeader(this.take(HEADER_SIZE), 0);
        }
      }
      const length = this.pendingLength;
      if (this.buffered < length) return;
      const payload = length === 0 ? EMPTY : this.take(length);
      this.pendingLength = -1;
      this.sink.onFrame(this.pendingType, this.pendingFlags, this.pendingSession, payload);
    }
  }

  private readHeader(h: Buffer, at: number): void {
    if (h[at] !== MAGIC) {
      throw new ProtocolError(Code.BAD_MAGIC, `frame: bad magic (0x${hex(h[at]!)} vs 0x${hex(MAGIC)})`);
    }
    if (h[at + 1] !== FRAME_VERSION) {
      throw new ProtocolError(Code.UNSUPPORTED_VERSION, `frame: unsupported framing version (${h[at + 1]} vs ${FRAME_VERSION})`);
    }
    const type = h[at + 2]!;
    if (type === 0 || type > MAX_FRAME_TYPE) {
      throw new ProtocolError(Code.UNKNOWN_FRAME_TYPE, `frame: unknown type (0x${hex(type)})`);
    }
    const flags = h[at + 3]!;
    const sessionId = h.readUInt32BE(at + 4);
    const length = h.readUInt32BE(at + 8);

    if (type === FrameType.DATA) {
      if ((flags & ~DATA_FLAGS_MASK) !== 0 || (flags & FLAG_PRIORITY_MASK) === 3) {
        throw new ProtocolError(Code.BAD_FLAGS, `DATA: reserved flags set (0x${hex(flags)})`);
      }
      if ((flags & FLAG_BATCH) !== 0 && this.limits.acceptBatch === false) {
        throw new ProtocolError(Code.BAD_FLAGS, `DATA: BATCH (0x04) is set only by the server (flags 0x${hex(flags)})`);
      }
    } else if (flags !== 0) {
      throw new ProtocolError(Code.BAD_FLAGS, `${FRAME_TYPE_NAMES[type]}: flags must be 0 (0x${hex(flags)})`);
    }

    if (CONNECTION_FRAMES.has(type)) {
      if (sessionId !== 0) throw new ProtocolError(Code.BAD_SESSION_ID, `${FRAME_TYPE_NAMES[type]}: session id must be 0 (${sessionId})`);
    } else if (sessionId === 0 && type !== FrameType.WINDOW_UPDATE) {
      throw new ProtocolError(Code.BAD_SESSION_ID, `${FRAME_TYPE_NAMES[type]}: session id must not be 0`);
    }

    const max = maxLength(type as FrameType, this.limits.maxPayload);
    if (length > max) {
      throw new ProtocolError(Code.FRAME_TOO_LARGE, `${FRAME_TYPE_NAMES[type]}: payload too large (${length} vs ${max} bytes)`);
    }
    if (type === FrameType.WINDOW_UPDATE && length !== WINDOW_UPDATE_SIZE) {
      throw new ProtocolError(Code.MALFORMED_PAYLOAD, `WINDOW_UPDATE: body must be ${WINDOW_UPDATE_SIZE} bytes (${length})`);
    }

    this.pendingType = type as FrameType;
    this.pendingFlags = flags;
    this.pendingSession = sessionId;
    this.pendingLength = length;
  }

  /** Drops `n` bytes that lie in the first chunk. */
  private skip(n: number): void {
    this.buffered -= n;
    this.offset += n;
    if (this.offset === this.chunks[0]!.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }

  /** Removes and returns the next `n` bytes; a view when they lie in one chunk, one copy otherwise. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    const start = this.offset;
    if (first.length - start >= n) {
      const view = start === 0 && n === first.length ? first : first.subarray(start, start + n);
      this.skip(n);
      return view;
    }
    this.buffered -= n;
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const available = c.length - this.offset;
      const want = n - filled;
      if (available <= want) {
        c.copy(out, filled, this.offset);
        filled += available;
        this.chunks.shift();
        this.offset = 0;
      } else {
        c.copy(out, filled, this.offset, this.offset + want);
        this.offset += want;
        filled = n;
      }
    }
    return out;
  }
}

/** Largest payload accepted for a frame type. */
export function maxLength(type: FrameType, maxPayload: number): number {
  switch (type) {
    case FrameType.DATA:
      return maxPayload;
    case FrameType.PING:
    case FrameType.PONG:
      return MAX_PING_PAYLOAD;
    case FrameType.WINDOW_UPDATE:
      return WINDOW_UPDATE_SIZE;
    default:
      return MAX_CONTROL_PAYLOAD;
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}
