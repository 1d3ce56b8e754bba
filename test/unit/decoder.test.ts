import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { FrameDecoder, type FrameSink } from '../../src/protocol/decoder.js';
import { encodeData, encodeFrame } from '../../src/protocol/encoder.js';
import {
  CONNECTION_FRAMES,
  FRAME_TYPE_NAMES,
  FrameType,
  HEADER_SIZE,
  MAX_CONTROL_PAYLOAD,
  MAX_PING_PAYLOAD,
  WINDOW_UPDATE_SIZE,
} from '../../src/protocol/constants.js';
import { Code } from '../../src/protocol/codes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import * as messages from '../../src/protocol/messages.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

interface ValidVector {
  name: string;
  hex: string;
  type: string;
  flags: number;
  sessionId: number;
  length: number;
  body: unknown;
}
interface BadVector {
  name: string;
  hex: string;
  code: keyof typeof Code;
  /** "server": only a server's decoder refuses it (PROTOCOL.md §12.2). */
  receiver?: 'server';
}
const fixture = JSON.parse(readFileSync(`${PACKAGE_ROOT}/test/fixtures/protocol-vectors.json`, 'utf8')) as {
  maxPayload: number;
  valid: ValidVector[];
  invalid: BadVector[];
  malformedBodies: BadVector[];
};

interface Frame {
  type: FrameType;
  flags: number;
  sessionId: number;
  payload: Buffer;
}

class CollectingSink implements FrameSink {
  readonly frames: Frame[] = [];
  onFrame(type: FrameType, flags: number, sessionId: number, payload: Buffer): void {
    this.frames.push({ type, flags, sessionId, payload });
  }
}

function decoder(maxPayload = fixture.maxPayload, acceptBatch = true): { decoder: FrameDecoder; sink: CollectingSink } {
  const sink = new CollectingSink();
  return { decoder: new FrameDecoder(sink, { maxPayload, acceptBatch }), sink };
}

function decodeChunks(chunks: Buffer[]): Frame[] {
  const d = decoder();
  for (const chunk of chunks) d.decoder.push(chunk);
  expect(d.decoder.bufferedBytes).toBe(0);
  return d.sink.frames;
}

/** Comparable form of frames: payload as hex, so equal bytes in different buffers compare equal. */
const plain = (frames: Frame[]) => frames.map((f) => ({ ...f, payload: f.payload.toString('hex') }));

/** The body of a frame in the fixture's JSON form. */
function bodyOf(type: FrameType, payload: Buffer): unknown {
  switch (type) {
    case FrameType.HELLO:
      return messages.decodeHello(payload);
    case FrameType.WELCOME:
      return messages.decodeWelcome(payload);
    case FrameType.OPEN:
      return messages.decodeOpen(payload);
    case FrameType.OPEN_OK:
      return {};
    case FrameType.OPEN_FAIL:
    case FrameType.CLOSE:
    case FrameType.RESET:
    case FrameType.ERROR:
      return messages.decodeStatus(FRAME_TYPE_NAMES[type]!, payload);
    case FrameType.GOAWAY:
      return messages.decodeGoAway(payload);
    case FrameType.REFRESH:
      return messages.decodeRefresh(payload);
    case FrameType.AUTH_STATE:
      return messages.decodeAuthState(payload);
    case FrameType.WINDOW_UPDATE:
      return { increment: payload.readUInt32BE(0) };
    default:
      return { payload: payload.toString('hex') };
  }
}

const bytes = (hex: string): Buffer => Buffer.from(hex, 'hex');

function caught(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('FrameDecoder: valid vectors', () => {
  it.each(fixture.valid.map((v) => [v.name, v] as const))('%s decodes to its fields and body', (_, v) => {
    const frames = decodeChunks([bytes(v.hex)]);
    expect(frames).toHaveLength(1);
    const [f] = frames as [Frame];
    expect(FRAME_TYPE_NAMES[f.type]).toBe(v.type);
    expect({ flags: f.flags, sessionId: f.sessionId, length: f.payload.length }).toEqual({
      flags: v.flags,
      sessionId: v.sessionId,
      length: v.length,
    });
    expect(bodyOf(f.type, f.payload)).toEqual(v.body);
  });

  it('covers every frame type', () => {
    expect(new Set(fixture.valid.map((v) => v.type))).toEqual(new Set(Object.keys(FrameType)));
  });

  it.each(fixture.valid.map((v) => [v.name, v.hex] as const))('%s: byte by byte and every split equal whole', (_, hex) => {
    const whole = bytes(hex);
    const expected = plain(decodeChunks([whole]));
    expect(plain(decodeChunks([...whole].map((b) => Buffer.of(b))))).toEqual(expected);
    for (let at = 0; at <= whole.length; at++) {
      expect(plain(decodeChunks([whole.subarray(0, at), whole.subarray(at)])), `split at ${at}`).toEqual(expected);
    }
  });

  it('decodes all vectors concatenated identically whole, byte by byte and split at every point', () => {
    const stream = Buffer.concat(fixture.valid.map((v) => bytes(v.hex)));
    const expected = plain(decodeChunks([stream]));
    expect(expected).toHaveLength(fixture.valid.length);
    expect(plain(decodeChunks([...stream].map((b) => Buffer.of(b))))).toEqual(expected);
    for (let at = 0; at <= stream.length; at++) {
      expect(plain(decodeChunks([stream.subarray(0, at), stream.subarray(at)])), `split at ${at}`).toEqual(expected);
    }
  });

  it('delivers nothing and buffers the bytes until a frame is complete', () => {
    const frame = bytes(fixture.valid.find((v) => v.name === 'DATA high priority')!.hex);
    const { decoder: d, sink } = decoder();
    d.push(frame.subarray(0, HEADER_SIZE + 2));
    expect(sink.frames).toHaveLength(0);
    expect(d.bufferedBytes).toBe(2);
    d.push(frame.subarray(HEADER_SIZE + 2));
    expect(sink.frames).toHaveLength(1);
    expect(d.bufferedBytes).toBe(0);
  });
});

describe('FrameDecoder: zero copy', () => {
  // Buffer.alloc never draws from Node's shared pool, so an equal ArrayBuffer proves a view, not a copy.
  function unpooled(...parts: Buffer[]): Buffer {
    const all = Buffer.concat(parts);
    const out = Buffer.alloc(all.length);
    all.copy(out);
    return out;
  }

  it('hands out views of the chunk for frames that lie inside it', () => {
    const first = encodeData(1, 1, Buffer.from('first'));
    const second = encodeData(3, 2, Buffer.from('second'));
    const chunk = unpooled(first, second);
    const { decoder: d, sink } = decoder();
    d.push(chunk);
    const [a, b] = sink.frames as [Frame, Frame];
    expect(a.payload.buffer).toBe(chunk.buffer);
    expect(a.payload.byteOffset).toBe(chunk.byteOffset + HEADER_SIZE);
    expect(b.payload.buffer).toBe(chunk.buffer);
    expect(b.payload.byteOffset).toBe(chunk.byteOffset + first.length + HEADER_SIZE);
  });

  it('copies a payload that spans chunks into a buffer of its own', () => {
    const frame = encodeData(1, 1, Buffer.from('spanning'));
    const head = unpooled(frame.subarray(0, HEADER_SIZE + 3));
    const tail = unpooled(frame.subarray(HEADER_SIZE + 3));
    const { decoder: d, sink } = decoder();
    d.push(head);
    d.push(tail);
    const [f] = sink.frames as [Frame];
    expect(f.payload.toString()).toBe('spanning');
    expect(f.payload.buffer).not.toBe(head.buffer);
    expect(f.payload.buffer).not.toBe(tail.buffer);
  });

  it('hands out a view for a frame spanning chunks that are adjacent views of one buffer (slab reads)', () => {
    const frames = [encodeData(1, 1, Buffer.alloc(5000, 0x61)), encodeData(1, 1, Buffer.alloc(7000, 0x62))];
    const slab = unpooled(...frames);
    const { decoder: d, sink } = decoder();
    // Reads that cut both frames, as a socket reading into one slab would.
    for (const [from, to] of [[0, 100], [100, 4000], [4000, 9000], [9000, slab.length]] as const) d.push(slab.subarray(from, to));
    const [a, b] = sink.frames as [Frame, Frame];
    expect(a.payload.equals(Buffer.alloc(5000, 0x61))).toBe(true);
    expect(b.payload.equals(Buffer.alloc(7000, 0x62))).toBe(true);
    expect(a.payload.buffer).toBe(slab.buffer);
    expect(a.payload.byteOffset).toBe(slab.byteOffset + HEADER_SIZE);
    expect(b.payload.buffer).toBe(slab.buffer);
    expect(b.payload.byteOffset).toBe(slab.byteOffset + frames[0]!.length + HEADER_SIZE);
    expect(d.bufferedBytes).toBe(0);
  });

  it('does not join chunks of one buffer that are not adjacent', () => {
    const frame = encodeData(1, 1, Buffer.from('spanning'));
    // The two halves in one buffer, with a gap of garbage between them.
    const slab = unpooled(frame.subarray(0, HEADER_SIZE + 3), Buffer.from('XX'), frame.subarray(HEADER_SIZE + 3));
    const { decoder: d, sink } = decoder();
    d.push(slab.subarray(0, HEADER_SIZE + 3));
    d.push(slab.subarray(HEADER_SIZE + 5));
    const [f] = sink.frames as [Frame];
    expect(f.payload.toString()).toBe('spanning');
  });
});

describe('FrameDecoder: invalid headers', () => {
  it.each(fixture.invalid.map((v) => [v.name, v.code, v] as const))('%s → %s as soon as the header is complete', (_, __, v) => {
    const input = bytes(v.hex);
    const { decoder: d, sink } = decoder(fixture.maxPayload, v.receiver !== 'server');
    d.push(input.subarray(0, HEADER_SIZE - 1));
    const err = caught(() => d.push(input.subarray(HEADER_SIZE - 1, HEADER_SIZE)));
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).wireCode).toBe(Code[v.code]);
    expect((err as ProtocolError).code).toBe(`ERR_${v.code}`);
    expect((err as ProtocolError).sessionScoped).toBe(false);
    expect(sink.frames).toHaveLength(0);
    expect(d.bufferedBytes).toBe(0);
  });

  it.each(fixture.invalid.map((v) => [v.name, v] as const))('%s: every later push throws the same error', (_, v) => {
    const { decoder: d } = decoder(fixture.maxPayload, v.receiver !== 'server');
    const first = caught(() => d.push(bytes(v.hex)));
    expect((first as ProtocolError).wireCode).toBe(Code[v.code]);
    expect(caught(() => d.push(bytes(fixture.valid[0]!.hex)))).toBe(first);
    expect(caught(() => d.push(Buffer.alloc(0)))).toBe(first);
  });

  it('a client accepts what only a server refuses', () => {
    for (const v of fixture.invalid.filter((x) => x.receiver === 'server')) {
      const { decoder: d, sink } = decoder();
      d.push(bytes(v.hex));
      expect(sink.frames, v.name).toHaveLength(1);
    }
  });

  it('fails after frames that came before the bad header were delivered', () => {
    const good = bytes(fixture.valid.find((v) => v.name === 'PING 8 bytes')!.hex);
    const bad = bytes(fixture.invalid.find((v) => v.name === 'bad magic')!.hex);
    const { decoder: d, sink } = decoder();
    const err = caught(() => d.push(Buffer.concat([good, bad])));
    expect((err as ProtocolError).wireCode).toBe(Code.BAD_MAGIC);
    expect(sink.frames).toHaveLength(1);
  });
});

describe('FrameDecoder: length limits', () => {
  const limited = 100;
  // The documented limit of each type (PROTOCOL.md §2.4), DATA with the configured max payload.
  const limits: Record<keyof typeof FrameType, number> = {
    HELLO: MAX_CONTROL_PAYLOAD,
    WELCOME: MAX_CONTROL_PAYLOAD,
    OPEN: MAX_CONTROL_PAYLOAD,
    OPEN_OK: MAX_CONTROL_PAYLOAD,
    OPEN_FAIL: MAX_CONTROL_PAYLOAD,
    DATA: limited,
    CLOSE: MAX_CONTROL_PAYLOAD,
    RESET: MAX_CONTROL_PAYLOAD,
    PING: MAX_PING_PAYLOAD,
    PONG: MAX_PING_PAYLOAD,
    GOAWAY: MAX_CONTROL_PAYLOAD,
    WINDOW_UPDATE: WINDOW_UPDATE_SIZE,
    ERROR: MAX_CONTROL_PAYLOAD,
    REFRESH: MAX_CONTROL_PAYLOAD,
    AUTH_STATE: MAX_CONTROL_PAYLOAD,
  };

  function pushOne(type: FrameType, length: number): Code | null {
    const { decoder: d } = decoder(limited);
    const sessionId = CONNECTION_FRAMES.has(type) ? 0 : 1;
    try {
      d.push(encodeFrame(type, 0, sessionId, Buffer.alloc(length)));
      return null;
    } catch (err) {
      return (err as ProtocolError).wireCode;
    }
  }

  it.each(Object.entries(limits))('%s: accepts %i payload bytes, refuses one more', (name, max) => {
    const type = FrameType[name as keyof typeof FrameType];
    expect(pushOne(type, max)).toBeNull();
    expect(pushOne(type, max + 1)).toBe(Code.FRAME_TOO_LARGE);
  });
});

describe('control bodies', () => {
  it.each(fixture.malformedBodies.map((v) => [v.name, v.code, v] as const))('%s frames fine, body → %s', (_, __, v) => {
    const [f] = decodeChunks([bytes(v.hex)]) as [Frame];
    const err = caught(() => bodyOf(f.type, f.payload));
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).wireCode).toBe(Code[v.code]);
  });

  it.each([
    ['Hello', (b: Buffer) => messages.decodeHello(b)],
    ['Welcome', (b: Buffer) => messages.decodeWelcome(b)],
    ['Open', (b: Buffer) => messages.decodeOpen(b)],
    ['Status', (b: Buffer) => messages.decodeStatus('CLOSE', b)],
    ['GoAway', (b: Buffer) => messages.decodeGoAway(b)],
  ] as const)('%s: truncated or invalid protobuf → MALFORMED_PAYLOAD', (_, decode) => {
    // 0x0a: field 1 with its value missing; 0x07: field number 0, which protobuf forbids; 0xff: a tag cut short.
    for (const body of [bytes('0a'), bytes('07'), bytes('ff')]) {
      const err = caught(() => decode(body));
      expect(err, body.toString('hex')).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).wireCode).toBe(Code.MALFORMED_PAYLOAD);
    }
  });
});

describe('FrameDecoder: onHeader', () => {
  it('shows every header before its payload is buffered, and a throw refuses the frame there', () => {
    const headers: [FrameType, number][] = [];
    const frames: FrameType[] = [];
    const d = new FrameDecoder(
      {
        onHeader(type, _flags, _sessionId, length) {
          headers.push([type, length]);
          if (type === FrameType.DATA) throw new ProtocolError(Code.UNEXPECTED_FRAME, 'DATA: not now');
        },
        onFrame(type) {
          frames.push(type);
        },
      },
      { maxPayload: 1 << 20 },
    );
    const ping = encodeFrame(FrameType.PING, 0, 0, Buffer.from('hi'));
    // The DATA header promises 1 MiB; only its header arrives.
    const dataHeader = encodeData(1, 1, Buffer.alloc(0));
    dataHeader.writeUInt32BE(1 << 20, 8);
    const err = caught(() => d.push(Buffer.concat([ping, dataHeader])));
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).wireCode).toBe(Code.UNEXPECTED_FRAME);
    expect(headers).toEqual([
      [FrameType.PING, 2],
      [FrameType.DATA, 1 << 20],
    ]);
    expect(frames).toEqual([FrameType.PING]);
    expect(d.bufferedBytes).toBe(0);
  });
});
