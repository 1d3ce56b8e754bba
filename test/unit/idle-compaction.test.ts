import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameType, Priority } from '../../src/protocol/constants.js';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import { encodeData, encodeFrame } from '../../src/protocol/encoder.js';
import { FrameStats } from '../../src/observability/metrics.js';
import { OutboundQueue, type QueueOwner } from '../../src/proxy/outbound-queue.js';
import { until } from '../helpers/until.js';

// What an idle connection gives back (the queue's lanes, the decoder's chunk list) must never cost a
// byte in flight: compaction happens only when nothing is queued or buffered.

const sockets: net.Socket[] = [];
afterEach(() => sockets.splice(0).forEach((s) => s.destroy()));

/** A connected loopback pair: what `client` receives is collected in `received`. */
async function pair(): Promise<{ server: net.Socket; received: () => Buffer }> {
  const chunks: Buffer[] = [];
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('data', (c: Buffer) => chunks.push(c));
  const server = await accepted;
  listener.close();
  sockets.push(client, server);
  return { server, received: () => Buffer.concat(chunks) };
}

const owner: QueueOwner = { discarded: false, onDequeued: () => {} };

describe('idle compaction', () => {
  it('an outbound queue gives back its lanes only when empty, and queues as before afterwards', async () => {
    const { server, received } = await pair();
    const q = new OutboundQueue(server, 1 << 20, { onDrop: () => {}, onOverflow: () => {} }, new FrameStats());
    const ping = encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8, 1));
    const data = encodeData(3, Priority.HIGH, Buffer.from('hello'));
    q.control(ping);
    q.compact(); // a flush is pending: nothing is given back
    q.data(owner, data.subarray(0, 12), data.subarray(12), Priority.HIGH);
    await until(() => received().length === ping.length + data.length, 'the first frames written');
    q.compact();
    q.control(ping);
    q.data(owner, data.subarray(0, 12), data.subarray(12), Priority.HIGH);
    await until(() => received().length === 2 * (ping.length + data.length), 'the frames queued after compaction written');
    expect(received()).toEqual(Buffer.concat([ping, data, ping, data]));
  });

  it('lanes asked back while a lone frame waits for its flush are given back once it is written in one go', async () => {
    // An idle connection's periodic check queues a PING, then asks for compaction: the PING is written
    // whole, by the fast path, which must give the lanes back too (it did not: ~500 B per connection).
    const { server, received } = await pair();
    const q = new OutboundQueue(server, 1 << 20, { onDrop: () => {}, onOverflow: () => {} }, new FrameStats());
    const lanes = (): unknown => (q as unknown as { lanes: unknown }).lanes;
    const ping = encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8, 1));
    q.control(ping);
    q.compact();
    await until(() => received().length === ping.length, 'the PING written');
    expect(lanes()).toBeNull();
    // The writer keeps no write request of its own between writes (~110 B each): one spare serves every writer.
    expect((q as unknown as { writer: { kind: string } }).writer.kind).toBe('handle');
    expect(Object.values((q as unknown as { writer: object }).writer).some((v) => v?.constructor?.name === 'WriteWrap')).toBe(false);
    q.control(ping);
    await until(() => received().length === 2 * ping.length, 'a PING queued after compaction written');
  });

  it("an idle connection's PING is written at once without making lanes; with frames queued it is queued as control()", async () => {
    const { server, received } = await pair();
    const q = new OutboundQueue(server, 1 << 20, { onDrop: () => {}, onOverflow: () => {} }, new FrameStats());
    const lanes = (): unknown => (q as unknown as { lanes: unknown }).lanes;
    const ping = encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8, 1));
    const data = encodeData(3, Priority.HIGH, Buffer.from('hello'));
    q.controlNow(ping);
    expect(lanes()).toBeNull();
    await until(() => received().length === ping.length, 'the PING written');
    // With DATA queued (its flush not yet run), the PING takes the control lane, ahead of DATA as any control frame.
    q.data(owner, data.subarray(0, 12), data.subarray(12), Priority.HIGH);
    q.controlNow(ping);
    expect(lanes()).not.toBeNull();
    await until(() => received().length === 2 * ping.length + data.length, 'the second PING and the DATA written');
    expect(received()).toEqual(Buffer.concat([ping, ping, data]));
  });

  it('a decoder that gives back its chunk list once empty still joins frames split across reads', () => {
    const frames: string[] = [];
    const decoder = new FrameDecoder({ onFrame: (_t, _f, _s, p) => frames.push(p.toString()) }, { maxPayload: 1024 });
    const frame = encodeData(1, Priority.HIGH, Buffer.from('split across reads'));
    decoder.push(frame.subarray(0, 20));
    decoder.push(frame.subarray(20));
    decoder.push(frame);
    decoder.push(Buffer.concat([frame, frame.subarray(0, 5)]));
    decoder.push(frame.subarray(5, 13));
    decoder.push(frame.subarray(13));
    expect(frames).toEqual(Array(4).fill('split across reads'));
    expect(decoder.bufferedBytes).toBe(0);
  });
});
