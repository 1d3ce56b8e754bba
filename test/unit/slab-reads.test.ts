import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import { encodeData } from '../../src/protocol/encoder.js';
import { slabReads } from '../../src/protocol/slab-reads.js';

// Real loopback sockets: what net.connect's onread does with the slab is what is under test.
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function serve(bytes: Buffer): Promise<number> {
  const server = net.createServer((socket) => socket.end(bytes));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

it('reads into slabs, at most readBytes at a time, so frames spanning reads come out as views, in order and intact', async () => {
  // 40 DATA frames of 64 KiB + 1: every one spans two 64 KiB reads.
  const payloads = Array.from({ length: 40 }, (_, i) => Buffer.alloc(64 * 1024 + 1, i));
  const port = await serve(Buffer.concat(payloads.map((p) => encodeData(1, 1, p))));
  const got: Buffer[] = [];
  const reads: number[] = [];
  const decoder = new FrameDecoder({ onFrame: (type, _f, _id, payload) => type === FrameType.DATA && got.push(payload) }, { maxPayload: 1 << 20 });
  const socket = net.connect({
    port,
    host: '127.0.0.1',
    onread: slabReads(
      (chunk) => {
        reads.push(chunk.length);
        decoder.push(chunk);
      },
      512 * 1024,
      64 * 1024,
    ),
  });
  await new Promise((r) => socket.once('end', r));
  socket.destroy();
  expect(got.length).toBe(payloads.length);
  got.forEach((p, i) => expect(p.equals(payloads[i]!)).toBe(true));
  expect(Math.max(...reads)).toBeLessThanOrEqual(64 * 1024);
  // A frame is copied only where it straddles two slabs: one per 512 KiB slab at most, far from all 40.
  const buffers = new Set(got.map((p) => p.buffer));
  const copied = got.filter((p) => p.buffer.byteLength !== 512 * 1024).length;
  expect(copied).toBeLessThanOrEqual(Math.ceil((40 * (64 * 1024 + 13)) / (448 * 1024)));
  expect(buffers.size).toBeLessThan(got.length / 2);
});
