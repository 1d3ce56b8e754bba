import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/** How the outbound queue hands bytes to a client socket. */
export interface SocketWriter {
  /** Whether a write now would go out without waiting behind an earlier one (and the socket is open). */
  readonly writable: boolean;
  /** Writes `data` whole, in order after every earlier write; `data` must not change afterwards. */
  write(data: Buffer): void;
  /** Writes `parts` back to back, as one write; the array may be reused, its buffers must not change. */
  writev(parts: readonly Buffer[]): void;
}

/**
 * A writer for `socket` that calls `onWritable` once it takes writes again after holding back. On a
 * plain TCP socket, writes go straight to its libuv handle (see HandleWriter); otherwise (TLS, or a
 * Node without the binding) through `socket.write`.
 */
export function socketWriter(socket: Socket, onWritable: () => void): SocketWriter {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  const plain = (socket as { encrypted?: boolean }).encrypted !== true;
  if (binding && plain && handle && typeof handle.writeBuffer === 'function') return new HandleWriter(socket, handle, onWritable);
  return new StreamWriter(socket, onWritable);
}

/** Through Node's Writable: `socket.write`, its high-water mark, its 'drain'. */
class StreamWriter implements SocketWriter {
  constructor(
    private readonly socket: Socket,
    onWritable: () => void,
  ) {
    socket.on('drain', onWritable);
  }

  get writable(): boolean {
    return !this.socket.destroyed && !this.socket.writableNeedDrain;
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

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

/** Node's stream binding, as its own net.Socket uses it; null where it is not there (the writer falls back). */
const binding: StreamWrapBinding | null = (() => {
  try {
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    return typeof b.WriteWrap === 'function' && b.streamBaseState && typeof b.kLastWriteWasAsync === 'number' ? (b as StreamWrapBinding) : null;
  } catch {
    return null;
  }
})();

/**
 * Writes straight to the socket's libuv handle, as net.Socket itself does underneath, without the
 * Writable stream around it: no state machine, no buffering in JS, no callback on the next tick. A
 * broadcast is one write per member per round, and that machinery was a third of the proxy's user time
 * per write (and more of its memory touched per member) at the broadcast peak.
 *
 * libuv writes what the kernel takes at once and keeps the rest, in order, ahead of any later write on
 * the handle, net.Socket's own included (`end`, a last ERROR). While it keeps some, the writer is not
 * `writable` and the queue waits; `onWritable` is called when libuv is done. A write that fails
 * destroys the socket with the error, as net.Socket does.
 */
class HandleWriter implements SocketWriter {
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
    private readonly onWritable: () => void,
  ) {}

  get writable(): boolean {
    // net.Socket drops its handle when destroyed.
    return this.pending === 0 && (this.socket as unknown as { _handle: unknown })._handle === this.handle;
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

  /** After a write was handed to libuv: what it kept stays alive until done (the caller may reuse `parts`). */
  private dispatched(req: WriteReq, err: number, data: Buffer | readonly Buffer[]): void {
    if (err !== 0) return this.fail(err);
    if (binding!.streamBaseState[binding!.kLastWriteWasAsync]) {
      req.buffer = Buffer.isBuffer(data) ? data : [...data];
      this.req = null;
      this.pending++;
    }
  }

  private newRequest(): WriteReq {
    const req = new binding!.WriteWrap();
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
    else if (this.pending === 0) this.onWritable();
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
