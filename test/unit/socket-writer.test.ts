import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { type HandleInternals, type SocketWriter, nodeInternals, socketWriter } from '../../src/proxy/socket-writer.js';
import { selfSignedCert } from '../helpers/tls-cert.js';
import { until } from '../helpers/until.js';

/**
 * The outbound queue's writer, on real loopback sockets: what it writes arrives whole and in order,
 * behind and ahead of net.Socket's own writes, and it says when the socket holds writes back. Each
 * behaviour is checked on the three paths a socket can take: straight to the libuv handle (plain TCP),
 * through socket.write on a plain TCP socket (the fallback when Node's internals are not as expected),
 * and through socket.write on TLS.
 */
const cleanup: (() => void)[] = [];
afterEach(() => cleanup.splice(0).forEach((f) => f()));

interface Pair {
  /** The server side, which the writer writes to. */
  server: net.Socket;
  /** The client side: what it reads, all of it, once the server ends. */
  received: Promise<Buffer>;
  client: net.Socket;
  /** The client's TCP socket (under TLS, the one the TLS socket runs on). */
  tcp: net.Socket;
}

/** `unread`: the plain server side never reads (pauseOnConnect), so only a write finds a reset. */
async function pair(secure = false, { unread = false } = {}): Promise<Pair> {
  const cert = secure ? selfSignedCert() : null;
  const listener = cert
    ? tls.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) })
    : net.createServer({ pauseOnConnect: unread });
  const accepted = once(listener, secure ? 'secureConnection' : 'connection');
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as net.AddressInfo;
  const tcp = net.connect(port, '127.0.0.1');
  const client = cert ? tls.connect({ socket: tcp, host: '127.0.0.1', ca: cert.cert }) : tcp;
  const [server] = (await accepted) as [net.Socket];
  // Errors are what some tests cause; they are looked at through the sockets' state.
  server.on('error', () => {});
  client.on('error', () => {});
  tcp.on('error', () => {});
  cleanup.push(() => {
    client.destroy();
    server.destroy();
    listener.close();
  });
  const chunks: Buffer[] = [];
  client.on('data', (d: Buffer) => chunks.push(d));
  const received = once(client, 'end').then(() => Buffer.concat(chunks));
  // A test that resets the connection never awaits it.
  received.catch(() => {});
  return { server, client, tcp, received };
}

/** `n` bytes counting up from `seed`, so a reordered or lost slice shows. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i) & 0xff;
  return b;
}

/**
 * Writes until the writer holds back (the reader does not read), alternating write and writev from one
 * reused array; returns what was written, in order.
 */
function fill(writer: SocketWriter): Buffer[] {
  const written: Buffer[] = [];
  // Far more than the kernel's buffers on both sides: some of it has to wait.
  const scratch: Buffer[] = [];
  for (let i = 0; writer.writable; i++) {
    expect(i).toBeLessThan(1_000);
    if (i % 2 === 0) {
      written.push(bytes(64 * 1024, i));
      writer.write(written.at(-1)!);
    } else {
      scratch.length = 0;
      scratch.push(bytes(32 * 1024, i), bytes(32 * 1024, i + 1));
      written.push(...scratch);
      writer.writev(scratch);
    }
  }
  // The array is the caller's again once writev returns: changing it must not matter.
  scratch.length = 0;
  scratch.push(Buffer.from('not written'));
  return written;
}

const PATHS = [
  { name: 'plain TCP, straight to the handle', secure: false, internals: nodeInternals, kind: 'handle' },
  { name: 'plain TCP, through socket.write (internals missing)', secure: false, internals: null, kind: 'stream' },
  { name: 'TLS, through socket.write', secure: true, internals: nodeInternals, kind: 'stream' },
] as const;

describe.each(PATHS)('socketWriter on $name', ({ secure, internals, kind }) => {
  const writerFor = (socket: net.Socket, onWritable: () => void = () => {}): SocketWriter => {
    const writer = socketWriter(socket, { onWritable }, internals);
    expect(writer.kind).toBe(kind);
    return writer;
  };

  it('delivers every write whole and in order, ahead of a later socket.end(data)', async () => {
    const { server, received } = await pair(secure);
    const writer = writerFor(server);
    const parts = [bytes(100, 1), bytes(3_000, 2), bytes(10, 3)];
    for (const p of parts) writer.write(p);
    writer.writev(parts);
    writer.writev([bytes(5, 5)]);
    server.end(bytes(7, 4));
    expect((await received).equals(Buffer.concat([...parts, ...parts, bytes(5, 5), bytes(7, 4)]))).toBe(true);
    // bytesWritten (the access log's bytesOut) counts what went past the Writable too.
    if (!secure) expect(server.bytesWritten).toBe(2 * 3_110 + 5 + 7);
  });

  it('holds back while a reader does not read, says so, and calls onWritable once it may write again', async () => {
    const { server, client, received } = await pair(secure);
    client.pause();
    let calls = 0;
    const writer = writerFor(server, () => calls++);
    const written = fill(writer);
    expect(calls).toBe(0);
    // On the handle, what waits is libuv's, in order on the handle: net.Socket's Writable never saw it.
    expect(server.writableLength === 0).toBe(kind === 'handle');
    client.resume();
    await until(() => calls > 0, 'onWritable');
    expect(writer.writable).toBe(true);
    written.push(bytes(5, 99));
    writer.write(written.at(-1)!);
    server.end();
    expect((await received).equals(Buffer.concat(written))).toBe(true);
  });

  it('writers of several sockets, written in turns, some held back at once: each gets its own bytes in order and its own onWritable', async () => {
    // Handle writers share their spare write request: one held by libuv must never serve another write.
    const pairs = await Promise.all([pair(secure), pair(secure), pair(secure)]);
    const calls = [0, 0, 0];
    const writers = pairs.map((p, i) => writerFor(p.server, () => calls[i]!++));
    const written: Buffer[][] = [[], [], []];
    for (let round = 0; round < 20; round++) {
      pairs.forEach((_, i) => {
        written[i]!.push(bytes(50, round * 3 + i));
        writers[i]!.write(written[i]!.at(-1)!);
      });
    }
    pairs[0]!.client.pause();
    pairs[1]!.client.pause();
    written[0]!.push(...fill(writers[0]!));
    written[1]!.push(...fill(writers[1]!));
    for (let round = 0; round < 20; round++) {
      written[2]!.push(bytes(64 * 1024, round));
      writers[2]!.write(written[2]!.at(-1)!);
      await until(() => writers[2]!.writable, 'the unpaused reader to take a write');
    }
    pairs[0]!.client.resume();
    pairs[1]!.client.resume();
    await until(() => calls[0]! > 0 && calls[1]! > 0, 'onWritable of both held writers');
    for (const [i, p] of pairs.entries()) {
      p.server.end();
      expect((await p.received).equals(Buffer.concat(written[i]!))).toBe(true);
    }
  });

  it('ending the socket while writes are held back sends them all first; the writer is not writable once it ends', async () => {
    const { server, client, received } = await pair(secure);
    client.pause();
    const writer = writerFor(server);
    const written = fill(writer);
    server.end(bytes(9, 7));
    expect(writer.writable).toBe(false);
    client.resume();
    expect((await received).equals(Buffer.concat([...written, bytes(9, 7)]))).toBe(true);
  });

  it('is not writable once the socket is ended, with nothing held back', async () => {
    const { server, received } = await pair(secure);
    const writer = writerFor(server);
    writer.write(bytes(10, 1));
    await until(() => writer.writable, 'the write taken');
    server.end();
    expect(writer.writable).toBe(false);
    expect((await received).equals(bytes(10, 1))).toBe(true);
  });

  it('is not writable once the socket is destroyed', async () => {
    const { server } = await pair(secure);
    const writer = writerFor(server);
    expect(writer.writable).toBe(true);
    server.destroy();
    expect(writer.writable).toBe(false);
  });

  it('destroying the socket with writes held back: no throw, the socket closes, onWritable is not called', async () => {
    const { server, client } = await pair(secure);
    client.pause();
    let calls = 0;
    const writer = writerFor(server, () => calls++);
    fill(writer);
    const closed = once(server, 'close');
    server.destroy();
    await closed;
    // The held writes come back cancelled a turn later; nothing of that reaches the queue.
    await new Promise((r) => setImmediate(r));
    expect(writer.writable).toBe(false);
    expect(calls).toBe(0);
  });

  it('a write the peer can no longer take destroys the socket with the error, as socket.write does', async () => {
    // On plain TCP nothing reads the server side, so the reset is found by a write; TLS reads for its
    // own records, so there the read may find it first: either way the socket ends destroyed.
    const { server, tcp } = await pair(secure, { unread: true });
    const errors: NodeJS.ErrnoException[] = [];
    server.on('error', (err) => errors.push(err));
    const writer = writerFor(server);
    const closed = new Promise((resolve) => server.once('close', resolve));
    tcp.resetAndDestroy();
    // The reset reaches the server's socket asynchronously: write until a write has failed.
    await until(() => {
      if (writer.writable) writer.write(bytes(1024, 1));
      return server.destroyed;
    }, 'a failed write to destroy the socket', 10_000);
    await closed;
    expect(writer.writable).toBe(false);
    expect(errors.map((e) => e.code)).toEqual([expect.stringMatching(/^(ECONNRESET|EPIPE)$/)]);
    if (!secure) expect(errors[0]!.syscall).toBe('write');
  });
});

describe('socketWriter falls back to socket.write', () => {
  it('on a Node whose internals are missing or of another major (nodeInternals null)', async () => {
    const { server } = await pair();
    expect(socketWriter(server, { onWritable: () => {} }, null).kind).toBe('stream');
  });

  it("when the socket's handle is not the TCP handle the internals name", async () => {
    const { server } = await pair();
    const otherTcp = class {} as HandleInternals['TCP'];
    expect(socketWriter(server, { onWritable: () => {} }, { ...nodeInternals!, TCP: otherTcp }).kind).toBe('stream');
  });

  it('when the handle has no writeBuffer or writev of its own kind (a changed internal)', async () => {
    const { server } = await pair();
    const handle = (server as unknown as { _handle: Record<string, unknown> })._handle;
    for (const method of ['writeBuffer', 'writev']) {
      handle[method] = undefined; // an own property hides the prototype's method
      expect(socketWriter(server, { onWritable: () => {} }).kind).toBe('stream');
      delete handle[method];
    }
    expect(socketWriter(server, { onWritable: () => {} }).kind).toBe('handle');
  });

  it("when the socket's Writable state does not say ended and destroyed as booleans (a changed internal)", async () => {
    const { server } = await pair();
    const socket = server as unknown as { _writableState: unknown };
    const real = socket._writableState;
    socket._writableState = { length: 0 };
    expect(socketWriter(server, { onWritable: () => {} }).kind).toBe('stream');
    socket._writableState = real;
    expect(socketWriter(server, { onWritable: () => {} }).kind).toBe('handle');
  });

  it("when bytes already wait in the socket's Writable, which a handle write would overtake", async () => {
    const { server, client } = await pair();
    client.pause();
    while (server.write(bytes(64 * 1024, 1)));
    expect(socketWriter(server, { onWritable: () => {} }).kind).toBe('stream');
  });
});

it('nodeInternals are found on Node 20, the major they were checked on, and only there', () => {
  expect(nodeInternals === null).toBe(!process.versions.node.startsWith('20.'));
});
