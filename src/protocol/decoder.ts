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
  /**
   * Optional: sees each header once it passed the checks of PROTOCOL.md §2.5, before a byte of its payload
   * is buffered. Throwing a ProtocolError refuses the frame as a framing error does, so a receiver can
   * apply limits that depend on its own state (before authentication only HELLO, and a small one) without
   * holding the payload first.
   */
  onHeader?(type: FrameType, flags: number, sessionId: number, length: number): void;
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
 * out through the sink. Headers are validated as soon as their 12 bytes are present (and shown to the
 * sink's `onHeader`), so an oversized or unwanted frame is refused before a byte of its payload is buffered. Payloads are zero-copy views into the
 * pushed chunk unless a frame spans chunks, in which case exactly that frame is copied once; chunks that
 * are adjacent views of one buffer (see slabReads) count as one.
 *
 * On the first violation `push` throws a {@link ProtocolError} (connection-scoped: the stream cannot be
 * resynchronised) and every later call throws it again.
 */
export class FrameDecoder {
  /** Chunks not yet consumed; {@link NO_CHUNKS} while none is, so an idle decoder keeps no array of its own. */
  private chunks: Buffer[] = NO_CHUNKS;
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
    if (this.chunks === NO_CHUNKS) this.chunks = [chunk];
    else if (!this.joined(chunk)) this.chunks.push(chunk);
    this.buffered += chunk.length;
    try {
      this.drain();
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.failure = err;
        this.chunks = NO_CHUNKS;
        this.offset = 0;
        this.buffered = 0;
      }
      throw err;
    }
  }

  /**
   * Extends the last chunk over `chunk` when `chunk` continues it in memory (reads into one slab, see
   * slabReads), so a frame spanning them is still taken as a view, not copied; false otherwise.
   */
  private joined(chunk: Buffer): boolean {
    const last = this.chunks[this.chunks.length - 1]!;
    if (last.buffer !== chunk.buffer || last.byteOffset + last.length !== chunk.byteOffset) return false;
    this.chunks[this.chunks.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + chunk.length);
    return true;
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

    this.sink.onHeader?.(type as FrameType, flags, sessionId, length);

    this.pendingType = type as FrameType;
    this.pendingFlags = flags;
    this.pendingSession = sessionId;
    this.pendingLength = length;
  }

  /** Drops `n` bytes that lie in the first chunk. */
  private skip(n: number): void {
    this.buffered -= n;
    this.offset += n;
    if (this.offset === this.chunks[0]!.length) this.shiftChunk();
  }

  /**
   * Drops the first chunk, wholly consumed. The last one takes the array with it: an array keeps the
   * capacity it once grew to (17 slots, about 150 bytes), and a connection that idles between PINGs
   * would keep that for nothing.
   */
  private shiftChunk(): void {
    this.offset = 0;
    if (this.chunks.length === 1) this.chunks = NO_CHUNKS;
    else this.chunks.shift();
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
        this.shiftChunk();
      } else {
        c.copy(out, filled, this.offset, this.offset + want);
        this.offset += want;
        filled = n;
      }
    }
    return out;
  }
}

/** The chunk list of every decoder that holds nothing (frozen: it is never pushed to). */
const NO_CHUNKS: Buffer[] = Object.freeze([]) as unknown as Buffer[];

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
