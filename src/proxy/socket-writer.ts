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
  const state = (socket as unknown as { _writableState?: Partial<WritableState> })._writableState;
  if (
    internals !== null &&
    handle instanceof internals.TCP &&
    (socket as { encrypted?: boolean }).encrypted !== true &&
    !socket.connecting &&
    socket.writableLength === 0 &&
    typeof (handle as Partial<StreamHandle>).writeBuffer === 'function' &&
    typeof (handle as Partial<StreamHandle>).writev === 'function' &&
    state?.ended === false &&
    state.destroyed === false
  ) {
    return new HandleWriter(socket, handle as StreamHandle, state as WritableState, listener, internals);
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
}

/**
 * The part of a socket's Writable state a HandleWriter reads: both flags are set synchronously, by
 * `end()` and by `destroy()` (before net.Socket drops its handle), and never cleared.
 */
interface WritableState {
  readonly ended: boolean;
  readonly destroyed: boolean;
}

/** The part of Node's stream handle (TCPWrap) a HandleWriter uses. */
interface StreamHandle {
  writeBuffer(req: WriteReq, data: Buffer): number;
  writev(req: WriteReq, chunks: readonly Buffer[], allBuffers: true): number;
}

/**
 * A write request as Node's stream handles take it (see lib/internal/stream_base_commons.js). Node's C++
 * side reads nothing of it but `oncomplete`, and only for a write libuv had to keep.
 */
interface WriteReq {
  oncomplete: (this: WriteReq, status: number) => void;
  /** Kept alive while libuv still writes it. */
  buffer: Buffer | readonly Buffer[] | null;
  /** The writer whose write libuv keeps; null while spare. */
  writer: HandleWriter | null;
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

  constructor(
    private readonly socket: Socket,
    private readonly handle: StreamHandle,
    /** The socket's own Writable state: one object read per write, not the socket and then its state. */
    private readonly state: WritableState,
    private readonly listener: WritableListener,
    private readonly internals: HandleInternals,
  ) {}

  get writable(): boolean {
    return this.pending === 0 && !this.state.ended && !this.state.destroyed;
  }

  write(data: Buffer): void {
    const req = spareRequest ?? newRequest(this.internals);
    this.dispatched(req, this.handle.writeBuffer(req, data), data);
  }

  writev(parts: readonly Buffer[]): void {
    if (parts.length === 1) return this.write(parts[0]!);
    const req = spareRequest ?? newRequest(this.internals);
    this.dispatched(req, this.handle.writev(req, parts, true), parts);
  }

  /**
   * After a write was handed to libuv: a request libuv keeps is this writer's until done, with what it
   * writes kept alive (the caller may reuse `parts`); one it did not keep is the next write's, any writer's.
   */
  private dispatched(req: WriteReq, err: number, data: Buffer | readonly Buffer[]): void {
    if (err !== 0) {
      // Node may have tied the request to a write it then gave up: it is not reused.
      spareRequest = null;
      return this.fail(err);
    }
    const { streamBaseState, kLastWriteWasAsync } = this.internals;
    if (streamBaseState[kLastWriteWasAsync]) {
      req.buffer = Buffer.isBuffer(data) ? data : [...data];
      req.writer = this;
      spareRequest = null;
      this.pending++;
    } else spareRequest = req;
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

/**
 * The request for the next write of any handle writer. A write the kernel takes at once leaves it
 * untouched (Node only attaches its C++ side when libuv has to keep the write), so one request serves
 * write after write, socket after socket: a walk over thousands of members reads one object, not one
 * per connection, and an idle connection keeps none. A write libuv keeps takes it along (see
 * HandleWriter.dispatched); the next write makes a new one.
 */
let spareRequest: WriteReq | null = null;

function newRequest(internals: HandleInternals): WriteReq {
  const req = new internals.WriteWrap();
  req.oncomplete = onWriteComplete;
  req.buffer = null;
  req.writer = null;
  return req;
}

function onWriteComplete(this: WriteReq, status: number): void {
  this.writer!.completed(status);
}
