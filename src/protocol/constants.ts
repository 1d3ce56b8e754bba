/**
 * Wire constants of the livemux framing protocol (PROTOCOL.md §2–§4).
 * Every numeric value here is pinned by test/unit/constants.test.ts: changing one is a wire break.
 */

/** First byte of every frame. */
export const MAGIC = 0x4c; // 'L'
/** Framing version carried in the second byte of every frame. */
export const FRAME_VERSION = 1;
/** Protocol versions this implementation can speak, negotiated in HELLO/WELCOME. */
export const SUPPORTED_VERSIONS: readonly number[] = [1];
/** Bytes in a frame header: magic, version, type, flags, session id (u32), length (u32). */
export const HEADER_SIZE = 12;

/** Frame types (header byte 2). */
export const FrameType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  OPEN: 0x03,
  OPEN_OK: 0x04,
  OPEN_FAIL: 0x05,
  DATA: 0x06,
  CLOSE: 0x07,
  RESET: 0x08,
  PING: 0x09,
  PONG: 0x0a,
  GOAWAY: 0x0b,
  WINDOW_UPDATE: 0x0c,
  ERROR: 0x0d,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Highest assigned frame type; types above it are unknown. */
export const MAX_FRAME_TYPE = FrameType.ERROR;

/** Name of each frame type, indexed by its numeric value (for logs and metrics labels). */
export const FRAME_TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(FrameType).map(([name, value]) => [value, name]),
);

/** Frame types whose session id must be 0 (connection-level frames). */
export const CONNECTION_FRAMES: ReadonlySet<number> = new Set([
  FrameType.HELLO,
  FrameType.WELCOME,
  FrameType.PING,
  FrameType.PONG,
  FrameType.GOAWAY,
  FrameType.ERROR,
]);

/** DATA priority (flags bits 0–1). Lower value = more important. */
export const Priority = {
  SYSTEM: 0,
  HIGH: 1,
  LOW: 2,
} as const;
export type Priority = (typeof Priority)[keyof typeof Priority];
export const PRIORITY_NAMES = ['system', 'high', 'low'] as const;
export type PriorityName = (typeof PRIORITY_NAMES)[number];

/** Mask of the priority bits in DATA flags. Value 3 is reserved and rejected. */
export const FLAG_PRIORITY_MASK = 0b0000_0011;
/**
 * DATA flag bit 2: the payload is several messages, each a u32 length and its bytes (PROTOCOL.md §4.9).
 * Only sent by the server, only to clients that set `accepts_batch` in HELLO.
 */
export const FLAG_BATCH = 0b0000_0100;
/** Every flag bit defined for DATA; any other bit set is ERR_BAD_FLAGS. */
export const DATA_FLAGS_MASK = FLAG_PRIORITY_MASK | FLAG_BATCH;

/** Largest PING/PONG opaque payload. */
export const MAX_PING_PAYLOAD = 64;
/** WINDOW_UPDATE body: one u32 increment. */
export const WINDOW_UPDATE_SIZE = 4;
/** Largest flow-control window (2^31 - 1, as in HTTP/2). */
export const MAX_WINDOW = 0x7fff_ffff;
/** Largest session id (2^32 - 1): after an OPEN with it, no id is left on the connection. */
export const MAX_SESSION_ID = 0xffff_ffff;
/** Frames a client may pipeline after HELLO before WELCOME; one more is ERROR RATE_LIMITED. */
export const MAX_PIPELINED = 64;
/** Largest control-frame body (HELLO carries the token, so it is larger than the rest). */
export const MAX_CONTROL_PAYLOAD = 16 * 1024;

/** Defaults the server announces in WELCOME unless configured otherwise. */
export const Defaults = {
  handshakeTimeoutMs: 10_000,
  heartbeatIntervalMs: 25_000,
  /** Missed PONGs before the connection is considered dead. */
  heartbeatMisses: 2,
  idleTimeoutMs: 300_000,
  maxSessions: 64,
  /** Half the default session window: a message never needs more than half a window (PROTOCOL.md §7). */
  maxPayload: 128 * 1024,
  /** Initial per-session window, each direction. */
  sessionWindow: 256 * 1024,
  /** Initial per-connection window, each direction. */
  connectionWindow: 1024 * 1024,
  /** Bytes the proxy may hold for one connection's outbound queue before dropping/closing. */
  outboundQueueBytes: 4 * 1024 * 1024,
  /** OPEN+RESET frames a client may send per second before GOAWAY RATE_LIMITED. */
  openResetRate: 100,
  drainTimeoutMs: 30_000,
  /** After a client's CLOSE, how long the backend may take to end its side before the server does. */
  halfCloseTimeoutMs: 10_000,
  /** Low-priority DATA frames per second one connection receives at most (a screen shows ~20). */
  lowPriorityRate: 20,
  /** Messages merged into one BATCH frame at most; older excess low messages are dropped. */
  lowPriorityMerge: 16,
} as const;
