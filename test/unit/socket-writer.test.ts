import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { socketWriter } from '../../src/proxy/socket-writer.js';
import { selfSignedCert } from '../helpers/tls-cert.js';

/**
 * The outbound queue's writer, on real loopback sockets: what it writes arrives whole and in order,
 * behind and ahead of net.Socket's own writes, and it says when the socket holds writes back.
 */
const cleanup: (() => void)[] = [];
afterEach(() => cleanup.splice(0).forEach((f) => f()));

interface Pair {
  /** The server side, which the writer writes to. */
  server: net.Socket;
  /** The client side: what it reads, all of it, once the server ends. */
  received: Promise<Buffer>;
  client: net.Socket;
}

async function pair(secure = false): Promise<Pair> {
  const cert = secure ? selfSignedCert() : null;
  const listener = cert
    ? tls.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) })
    : net.createServer();
  const accepted = once(listener, secure ? 'secureConnection' : 'connection');
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as net.AddressInfo;
  const client = cert ? tls.connect({ port, host: '127.0.0.1', ca: cert.cert }) : net.connect(port, '127.0.0.1');
  const [server] = (await accepted) as [net.Socket];
  cleanup.push(() => {
    client.destroy();
    server.destroy();
    listener.close();
  });
  const chunks: Buffer[] = [];
  client.on('data', (d: Buffer) => chunks.push(d));
  const received = once(client, 'end').then(() => Buffer.concat(chunks));
  return { server, client, received };
}

/** `n` bytes counting up from `seed`, so a reordered or lost slice shows. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i) & 0xff;
  return b;
}

describe.each([
  ['plain TCP (straight to the handle)', false],
  ['TLS (through socket.write)', true],
])('socketWriter on %s', (_name, secure) => {
  it('delivers every write whole and in order, ahead of a later socket.end(data)', async () => {
    const { server, received } = await pair(secure);
    const writer = socketWriter(server, () => {});
    const parts = [bytes(100, 1), bytes(3_000, 2), bytes(10, 3)];
    for (const p of parts) writer.write(p);
    writer.writev(parts);
    writer.writev([bytes(5, 5)]);
    server.end(bytes(7, 4));
    expect((await received).equals(Buffer.concat([...parts, ...parts, bytes(5, 5), bytes(7, 4)]))).toBe(true);
  });

  it('holds back while a reader does not read, says so, and calls onWritable once it may write again', async () => {
    const { server, client, received } = await pair(secure);
    client.pause();
    let calls = 0;
    const writer = socketWriter(server, () => calls++);
    const written: Buffer[] = [];
    // Far more than the kernel's buffers on both sides: some of it has to wait. Every other write is
    // a writev from one reused array, which must not matter once it returns.
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
    scratch.length = 0;
    scratch.push(Buffer.from('not written'));
    expect(calls).toBe(0);
    // On plain TCP what waits is libuv's, in order on the handle: net.Socket's Writable never saw it.
    expect(server.writableLength === 0).toBe(!secure);
    client.resume();
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (calls === 0) return;
        clearInterval(poll);
        resolve();
      }, 5);
    });
    expect(writer.writable).toBe(true);
    written.push(bytes(5, 99));
    writer.write(written.at(-1)!);
    server.end();
    expect((await received).equals(Buffer.concat(written))).toBe(true);
  });

  it('is not writable once the socket is destroyed', async () => {
    const { server } = await pair(secure);
    const writer = socketWriter(server, () => {});
    expect(writer.writable).toBe(true);
    server.destroy();
    expect(writer.writable).toBe(false);
  });
});
