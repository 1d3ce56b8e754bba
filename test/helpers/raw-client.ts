import net from 'node:net';
import tls from 'node:tls';
import { FRAME_TYPE_NAMES, FrameType } from '../../src/protocol/constants.js';
import { codeName } from '../../src/protocol/codes.js';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import { encodeFrame, encodeWindowUpdate } from '../../src/protocol/encoder.js';
import { type Welcome, decodeGoAway, decodeStatus, decodeWelcome, encodeHello, encodeOpen, encodeStatus } from '../../src/protocol/messages.js';

/** HELLO fields a test may set. */
export type HelloOptions = { sessionWindow?: number; connectionWindow?: number; acceptsBatch?: boolean; acceptsRefresh?: boolean };

/** A decoded frame as a raw test client sees it. */
export interface RawFrame {
  type: FrameType;
  name: string;
  flags: number;
  sessionId: number;
  payload: Buffer;
}

/**
 * A protocol client with no SDK logic: it sends exactly the bytes a test asks for and records every
 * frame the proxy sends, so tests can assert the precise reaction to bad input.
 */
export class RawClient {
  readonly frames: RawFrame[] = [];
  /** Every frame received, in arrival order, with the time it arrived (never consumed by `next`). */
  readonly received: (RawFrame & { at: number })[] = [];
  /** DATA frames received; with `keepData` false they are only counted, for high-volume tests. */
  dataCount = 0;
  keepData = true;
  /** Called with the payload size of each DATA frame not kept (`keepData` false). */
  onData: ((bytes: number) => void) | null = null;
  /** Sees every non-DATA frame first; returning true consumes it (it is neither kept nor awaited). */
  onFrame: ((frame: RawFrame) => boolean) | null = null;
  /** The WELCOME of {@link hello}. */
  welcome: Welcome | null = null;
  /** Set when the bytes received broke the framing (the decoder then stops). */
  decodeError: Error | null = null;
  readonly closed: Promise<void>;
  private readonly socket: net.Socket;
  private readonly decoder: FrameDecoder;
  private waiters: { match: (f: RawFrame) => boolean; resolve: (f: RawFrame) => void }[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.decoder = new FrameDecoder(
      {
        onFrame: (type, flags, sessionId, payload) => {
          if (type === FrameType.DATA) {
            this.dataCount++;
            if (!this.keepData) {
              this.onData?.(payload.length);
              return;
            }
          }
          const frame = { type, name: FRAME_TYPE_NAMES[type]!, flags, sessionId, payload: Buffer.from(payload) };
          if (this.onFrame?.(frame)) return;
          this.frames.push(frame);
          this.received.push({ ...frame, at: performance.now() });
          for (const w of [...this.waiters]) {
            if (w.match(frame)) {
              this.waiters.splice(this.waiters.indexOf(w), 1);
              w.resolve(frame);
            }
          }
        },
      },
      { maxPayload: 16 * 1024 * 1024 },
    );
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch (err) {
        // A test that sends a peer bad bytes on purpose may get them back; it reads what came before.
        this.decodeError = err as Error;
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, localAddress }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Wraps an already connected socket (e.g. TLS over a socket that sent a PROXY header). */
  static fromSocket(socket: net.Socket): RawClient {
    return new RawClient(socket);
  }

  /** Connects over TLS, trusting only `ca`. */
  static connectTls(port: number, ca: Buffer): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ port, host: '127.0.0.1', ca }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Connects (from `localAddress` when given) and completes HELLO/WELCOME with `token`. */
  static async handshake(port: number, token: string, hello: HelloOptions = {}, localAddress?: string): Promise<RawClient> {
    return (await RawClient.connect(port, '127.0.0.1', localAddress)).hello(token, hello);
  }

  /** Sends HELLO and waits for WELCOME. */
  async hello(token: string, hello: HelloOptions = {}): Promise<RawClient> {
    this.send(encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions: [1], token, ...hello })));
    this.welcome = decodeWelcome((await this.next(FrameType.WELCOME)).payload);
    return this;
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Writes `bytes`; false when the socket's buffer is full (wait for {@link drained}). */
  write(bytes: Uint8Array): boolean {
    return this.socket.write(bytes);
  }

  /** Resolves once the socket's write buffer has drained. */
  drained(): Promise<void> {
    return new Promise((resolve) => this.socket.once('drain', () => resolve()));
  }

  open(sessionId: number, business = 'echo', metadata: Record<string, string> = {}): void {
    this.send(encodeFrame(FrameType.OPEN, 0, sessionId, encodeOpen({ business, metadata })));
  }

  data(sessionId: number, payload: string | Buffer, priority = 1): void {
    this.send(encodeFrame(FrameType.DATA, priority, sessionId, Buffer.from(payload)));
  }

  close(sessionId: number, code = 0): void {
    this.send(encodeFrame(FrameType.CLOSE, 0, sessionId, encodeStatus({ code, reason: '' })));
  }

  reset(sessionId: number, code = 207): void {
    this.send(encodeFrame(FrameType.RESET, 0, sessionId, encodeStatus({ code, reason: '' })));
  }

  windowUpdate(sessionId: number, increment: number): void {
    this.send(encodeWindowUpdate(sessionId, increment));
  }

  /** Resolves with the first frame (already received or future) matching type and session. */
  next(type: FrameType, sessionId?: number, timeoutMs = 5_000): Promise<RawFrame> {
    const match = (f: RawFrame): boolean => f.type === type && (sessionId === undefined || f.sessionId === sessionId);
    const i = this.frames.findIndex(match);
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no ${FRAME_TYPE_NAMES[type]} (session ${sessionId ?? 'any'}) within ${timeoutMs} ms; got ${describeFrames(this.frames)}`));
      }, timeoutMs);
      const done = (f: RawFrame): void => {
        clearTimeout(timer);
        this.frames.splice(this.frames.indexOf(f), 1);
        resolve(f);
      };
      this.waiters.push({ match, resolve: done });
    });
  }

  /** The code name carried by an ERROR/RESET/CLOSE/OPEN_FAIL frame, e.g. "BAD_MAGIC". */
  static codeOf(f: RawFrame): string {
    if (f.type === FrameType.GOAWAY) return codeName(decodeGoAway(f.payload).code);
    return codeName(decodeStatus(f.name, f.payload).code);
  }

  /** Resolves with the ERROR code name, after which the server must close the socket. */
  async errorCode(timeoutMs = 5_000): Promise<string> {
    const f = await this.next(FrameType.ERROR, undefined, timeoutMs);
    await this.closed;
    return RawClient.codeOf(f);
  }

  destroy(): void {
    this.socket.destroy();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }
}

/** Frame names in order, runs of one name counted ("PONG ×48211"), so a flood's frames stay readable in an error. */
function describeFrames(frames: readonly RawFrame[]): string {
  const runs: [string, number][] = [];
  for (const f of frames) {
    // A refusal says why: its code.
    const name = f.type === FrameType.ERROR ? `ERROR ${RawClient.codeOf(f)}` : f.name;
    const last = runs.at(-1);
    if (last?.[0] === name) last[1]++;
    else runs.push([name, 1]);
  }
  const shown = runs.slice(0, 20).map(([name, n]) => (n > 1 ? `${name} ×${n}` : name));
  return (runs.length > 20 ? [...shown, `… ${runs.length - 20} more runs`] : shown).join(',');
}
