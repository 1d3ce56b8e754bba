import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/** How the outbound queue hands bytes to a client socket. */
export interface SocketWriter {
  /** 'handle': straight to the libuv handle (HandleWriter); 'stream': through `socket.write`. */
  readonly kind: 'handle' | 'stream';
  /** Whether a write now would go out without waiting behind an earlier one (and the socket is open). */
  readonly writable: boolean;
  /** Writes `data` whole, in order after every earlier write; `data` must not change afterwards. */
  write(data: Buffer): void;
  /** Writes `parts` back to back, as one write; the array may be reused, its buffers must not change. */
  writev(parts: readonly Buffer[]): void;
  /** Gives back what the writer keeps between writes for speed (an idle connection's queue calls it). */
  release(): void;
}

/** Who is told when a writer takes writes again after holding back. */
export interface WritableListener {
  onWritable(): void;
}

/** The listener of a StreamWriter's socket: its 'drain' listener is one function shared by every socket. */
const LISTENER = Symbol('livemux.writableListener');
type ListenedSocket = Socket & { [LISTENER]: WritableListener };

function onSocketDrain(this: ListenedSocket): void {
  this[LISTENER].onWritable();
}

/**
 * A writer for `socket` that calls `listener.onWritable()` once it takes writes again after holding
 * back (an object rather than a callback: a closure per connection costs it ~100 bytes). On a
 * plain TCP socket, when Node's internals are as checked (`internals`, see {@link nodeInternals}),
 * writes go straight to its libuv handle (see HandleWriter); otherwise (TLS, a socket that is not a
 * connected TCP socket, bytes already waiting in its Writable, another Node) through `socket.write`.
 *
 * The queue that owns the writer must be the socket's only writer until it ends the socket: bytes
 * written through `socket.write` meanwhile could be overtaken. In the proxy the only other writes
 * are the connection's last ones (`socket.end(ERROR)`), after which its queue writes nothing.
 */
export function socketWriter(socket: Socket, listener: WritableListener, internals: HandleInternals | null = nodeInternals): SocketWriter {
  const handle = (socket as unknown as { _handle?: unknown })._handle;
  if (
    internals !== null &&
    handle instanceof internals.TCP &&
    (socket as { encrypted?: boolean }).encrypted !== true &&
    !socket.connecting &&
    socket.writableLength === 0 &&
    typeof (handle as Partial<StreamHandle>).writeBuffer === 'function' &&
    typeof (handle as Partial<StreamHandle>).writev === 'function'
  ) {
    return new HandleWriter(socket, handle as StreamHandle, listener, internals);
  }
  return new StreamWriter(socket, listener);
}

/** Through Node's Writable: `socket.write`, its high-water mark, its 'drain'. */
class StreamWriter implements SocketWriter {
  readonly kind = 'stream';

  constructor(
    private readonly socket: Socket,
    listener: WritableListener,
  ) {
    (socket as ListenedSocket)[LISTENER] = listener;
    socket.on('drain', onSocketDrain);
  }

  get writable(): boolean {
    return !this.socket.destroyed && !this.socket.writableNeedDrain && !this.socket.writableEnded;
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  writev(parts: readonly Buffer[]): void {
    // One concatenation, not cork/write/uncork: the Writable's corked writev of many small buffers
    // stalled the slow-consumer test (never explained); TLS copies the bytes to encrypt them anyway.
    this.socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }

  release(): void {}
}

/** The part of Node's stream handle (TCPWrap) a HandleWriter uses. */
interface StreamHandle {
  writeBuffer(req: WriteReq, data: Buffer): number;
  writev(req: WriteReq, chunks: readonly Buffer[], allBuffers: true): number;
}

/** A write request as Node's stream handles take it (see lib/internal/stream_base_commons.js). */
interface WriteReq {
  handle: StreamHandle;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  bytes: number;
  /** Kept alive while libuv still writes it. */
  buffer: Buffer | readonly Buffer[] | null;
  writer: HandleWriter;
}

/** What the handle writer takes from Node's internals: the stream_wrap binding, and tcp_wrap's TCP. */
export interface HandleInternals {
  WriteWrap: new () => WriteReq;
  /** Where a handle's write says whether libuv kept part of it (`kLastWriteWasAsync`). */
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
  /** The class of a TCP socket's handle: pipes, TLS and JS-stream handles are not one. */
  TCP: abstract new (...args: never[]) => unknown;
}

/**
 * Node majors whose stream internals the handle writer has been checked against, by
 * test/unit/socket-writer.test.ts (write requests completed through `oncomplete`, `kLastWriteWasAsync`
 * set by every write). On any other major the writer falls back to `socket.write`: a changed
 * completion protocol would otherwise stall a socket without an error.
 */
const CHECKED_NODE_MAJORS = [20];

/**
 * Node's internals as net.Socket itself uses them, through `process.binding` (still there in Node 20,
 * deprecated in documentation only); null when anything is missing or not of the expected shape, or on
 * a Node major not in CHECKED_NODE_MAJORS.
 */
export const nodeInternals: HandleInternals | null = (() => {
  if (!CHECKED_NODE_MAJORS.includes(Number(process.versions.node.split('.')[0]))) return null;
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const stream = binding('stream_wrap') as Partial<HandleInternals>;
    const { TCP } = binding('tcp_wrap') as Partial<HandleInternals>;
    const { WriteWrap, streamBaseState, kLastWriteWasAsync } = stream;
    if (typeof WriteWrap !== 'function' || typeof TCP !== 'function') return null;
    if (!(streamBaseState instanceof Int32Array) || typeof kLastWriteWasAsync !== 'number') return null;
    return { WriteWrap, streamBaseState, kLastWriteWasAsync, TCP };
  } catch {
    return null;
  }
})();

/**
 * Writes straight to the socket's libuv handle, as net.Socket itself does underneath, without the
 * Writable stream around it: no state machine, no buffering in JS, no callback on the next tick. A
 * broadcast is one write per member per round, and that machinery was a third of the proxy's user time
 * per write at the broadcast peak (BENCHMARKS.md, "the handle writer").
 *
 * libuv writes what the kernel takes at once and keeps the rest, in order, ahead of any later write on
 * the handle, net.Socket's own included (`end`, a last ERROR; a shutdown waits for it too). While it
 * keeps some, the writer is not `writable` and the queue waits: at most one write is held per socket,
 * where net.Socket would buffer up to its high-water mark. `listener.onWritable()` is called when libuv is done.
 * A write that fails destroys the socket with the error, as net.Socket does; a socket destroyed with
 * writes held gets them back cancelled, which is ignored. Once the socket is ending or destroyed the
 * writer is not writable.
 */
class HandleWriter implements SocketWriter {
  readonly kind = 'handle';
  /** Writes libuv has not finished. */
  private pending = 0;
  /**
   * The request for the next write. A write the kernel takes at once leaves it untouched (Node only
   * attaches its C++ side when libuv has to keep the write), so it serves write after write; one that
   * libuv keeps takes it along, and the next write gets a new one.
   */
  private req: WriteReq | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly handle: StreamHandle,
    private readonly listener: WritableListener,
    private readonly internals: HandleInternals,
  ) {}

  get writable(): boolean {
    // net.Socket drops its handle when destroyed; `writableEnded` once end() was called.
    return this.pending === 0 && (this.socket as unknown as { _handle: unknown })._handle === this.handle && !this.socket.writableEnded;
  }

  write(data: Buffer): void {
    const req = (this.req ??= this.newRequest());
    this.dispatched(req, this.handle.writeBuffer(req, data), data);
  }

  writev(parts: readonly Buffer[]): void {
    if (parts.length === 1) return this.write(parts[0]!);
    const req = (this.req ??= this.newRequest());
    this.dispatched(req, this.handle.writev(req, parts, true), parts);
  }

  /** The spare request (a WriteWrap and its properties, ~110 bytes) is made again by the next write. */
  release(): void {
    this.req = null;
  }

  /** After a write was handed to libuv: what it kept stays alive until done (the caller may reuse `parts`). */
  private dispatched(req: WriteReq, err: number, data: Buffer | readonly Buffer[]): void {
    if (err !== 0) return this.fail(err);
    const { streamBaseState, kLastWriteWasAsync } = this.internals;
    if (streamBaseState[kLastWriteWasAsync]) {
      req.buffer = Buffer.isBuffer(data) ? data : [...data];
      this.req = null;
      this.pending++;
    }
  }

  private newRequest(): WriteReq {
    const req = new this.internals.WriteWrap();
    req.handle = this.handle;
    req.oncomplete = onWriteComplete;
    req.async = false;
    req.bytes = 0;
    req.buffer = null;
    req.writer = this;
    return req;
  }

  /** @internal A write libuv held has ended. */
  completed(status: number): void {
    this.pending--;
    if (status < 0) this.fail(status);
    else if (this.pending === 0) this.listener.onWritable();
  }

  private fail(errno: number): void {
    if (this.socket.destroyed) return;
    const err = Object.assign(new Error(`write ${getSystemErrorName(errno)}`), { errno, code: getSystemErrorName(errno), syscall: 'write' });
    this.socket.destroy(err);
  }
}

function onWriteComplete(this: WriteReq, status: number): void {
  this.writer.completed(status);
}
