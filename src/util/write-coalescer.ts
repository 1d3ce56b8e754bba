import type { Socket } from 'node:net';

/**
 * Coalesces the writes one event-loop turn makes to a socket into one system call.
 *
 * Why: node:http answers pipelined HTTP/1.1 requests one response at a time — each `end()` forces its
 * response out (it uncorks the socket), and the next response is only handed the socket once that
 * write's callback ran. A business server that pipelines its calls therefore costs the push node one
 * `writev` per call, a fifth of its CPU at a few thousand calls/s (a loopback write is tens of µs on a
 * small machine). With this, a turn's responses leave together in the check phase (setImmediate),
 * as TickBatcher does for the backend stream.
 *
 * How: the socket's `_write`/`_writev` (the Writable implementer's hooks) keep the chunks, and report
 * them written at once while the kernel takes what is written (so node:http moves on to the next
 * response in the same turn); they are written in one `writev` at the end of the turn, or at once when
 * MAX_HELD_BYTES are held. Backpressure is kept: while a real write is still in the kernel's hands
 * (the peer reads slowly), callbacks wait for it, the socket's own buffer fills and `write()` returns
 * false as usual. `end()` writes what is held before the FIN. A write error destroys the socket (the
 * responses it carried are lost with the connection, as they would be anyway).
 */
export function coalesceWrites(socket: Socket): void {
  const realWritev = socket._writev!;
  const realFinal = socket._final;
  let held: { chunk: Buffer | string; encoding: BufferEncoding }[] = [];
  let heldBytes = 0;
  /** Callbacks of held writes that wait for a real write (the kernel is behind). */
  let waiting: ((err?: Error | null) => void)[] = [];
  let inFlight = 0;
  let afterWrites: (() => void)[] = [];
  let scheduled: NodeJS.Immediate | null = null;

  const flush = (): void => {
    if (scheduled !== null) clearImmediate(scheduled);
    scheduled = null;
    if (held.length === 0) return;
    const chunks = held;
    const callbacks = waiting;
    held = [];
    heldBytes = 0;
    waiting = [];
    inFlight++;
    realWritev.call(socket, chunks, (err?: Error | null) => {
      inFlight--;
      if (err) socket.destroy(err);
      for (const cb of callbacks) cb(err);
      // Writes taken while this one was in the kernel's hands wait for it: theirs is next.
      if (inFlight === 0 && waiting.length > 0) flush();
      if (inFlight === 0 && held.length === 0) for (const fn of afterWrites.splice(0)) fn();
    });
  };

  const take = (chunks: readonly { chunk: Buffer | string; encoding: BufferEncoding }[], cb: (err?: Error | null) => void): void => {
    for (const c of chunks) {
      held.push(c);
      heldBytes += c.chunk.length;
    }
    if (inFlight > 0) {
      waiting.push(cb);
      return;
    }
    if (heldBytes >= MAX_HELD_BYTES) {
      waiting.push(cb);
      flush();
      return;
    }
    scheduled ??= setImmediate(flush);
    cb();
  };

  socket._writev = (chunks, cb) => take(chunks as { chunk: Buffer | string; encoding: BufferEncoding }[], cb);
  socket._write = (chunk: Buffer | string, encoding, cb) => take([{ chunk, encoding }], cb);
  socket._final = (cb) => {
    flush();
    if (inFlight === 0) realFinal.call(socket, cb);
    else afterWrites.push(() => realFinal.call(socket, cb));
  };
  socket.once('close', () => {
    if (scheduled !== null) clearImmediate(scheduled);
    scheduled = null;
    held = [];
    afterWrites = [];
  });
}

/** Bytes held before they are written without waiting for the end of the turn. */
export const MAX_HELD_BYTES = 64 * 1024;
