import { once } from 'node:events';
import { type AddressInfo, type Socket, createServer, connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { coalesceWrites } from '../../src/util/write-coalescer.js';
import { until } from '../helpers/until.js';

/** A connected pair over loopback: `server` is the accepted side, coalesced; `writes` counts its real writes. */
async function pair(): Promise<{ server: Socket; client: Socket; writes: () => number; close: () => void }> {
  const listener = createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const accepted = once(listener, 'connection') as Promise<[Socket]>;
  const client = connect((listener.address() as AddressInfo).port, '127.0.0.1');
  const [server] = await accepted;
  let count = 0;
  // Counted below the coalescer: every call that reaches the socket's own write path.
  const writev = server._writev!;
  const write = server._write;
  server._writev = function (this: Socket, chunks, cb) {
    count++;
    writev.call(this, chunks, cb);
  };
  server._write = function (this: Socket, chunk, encoding, cb) {
    count++;
    write.call(this, chunk, encoding, cb);
  };
  coalesceWrites(server);
  return {
    server,
    client,
    writes: () => count,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

/** Reads from `socket` until `bytes` arrived. */
async function receive(socket: Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of socket as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    got += chunk.length;
    if (got >= bytes) break;
  }
  return Buffer.concat(chunks);
}

describe('coalesceWrites', () => {
  let close = (): void => {};
  afterEach(() => close());

  it('sends the writes of one turn in one system call, in order, calling every callback', async () => {
    const p = await pair();
    close = p.close;
    const done: number[] = [];
    p.server.write('one,', () => done.push(1));
    p.server.write(Buffer.from('two,'), () => done.push(2));
    p.server.write('three', 'latin1', () => done.push(3));
    // Reported written at once: node:http hands the socket to its next response in the same turn.
    await new Promise((resolve) => process.nextTick(resolve));
    expect(done).toEqual([1, 2, 3]);
    expect((await receive(p.client, 13)).toString()).toBe('one,two,three');
    expect(p.writes()).toBe(1);
  });

  it('writes what it holds before the FIN of end()', async () => {
    const p = await pair();
    close = p.close;
    p.server.write('a');
    p.server.end('b');
    const chunks: Buffer[] = [];
    p.client.on('data', (c: Buffer) => chunks.push(c));
    await once(p.client, 'end');
    expect(Buffer.concat(chunks).toString()).toBe('ab');
  });

  it('keeps backpressure: a peer that does not read makes write() return false', async () => {
    const p = await pair();
    close = p.close;
    p.client.pause();
    const chunk = Buffer.alloc(16 * 1024, 1);
    let written = 0;
    // One write per turn, as a server answering requests would; a coalescer that reported everything
    // written at once would never say stop, and hold whatever the peer does not read.
    while (p.server.write(chunk)) {
      written += chunk.length;
      expect(written).toBeLessThan(256 * 1024 * 1024);
      await new Promise((resolve) => setImmediate(resolve));
    }
    p.client.resume();
    let got = 0;
    p.client.on('data', (c: Buffer) => (got += c.length));
    await once(p.server, 'drain');
    const total = written + chunk.length;
    await until(() => got >= total, 'every byte written to reach the peer');
    expect(got).toBe(total);
  });
});
