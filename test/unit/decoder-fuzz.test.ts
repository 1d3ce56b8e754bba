import fc from 'fast-check';
import { describe, it, expect } from 'vitest';
import { FrameDecoder, maxLength, type FrameSink } from '../../src/protocol/decoder.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import {
  CONNECTION_FRAMES,
  FRAME_VERSION,
  FrameType,
  HEADER_SIZE,
  MAGIC,
  WINDOW_UPDATE_SIZE,
} from '../../src/protocol/constants.js';
import { ProtocolError } from '../../src/protocol/errors.js';

// A small DATA limit keeps generated frames small and makes FRAME_TOO_LARGE reachable by random input.
// Arrays use size 'max' so lengths spread up to the limits instead of fast-check's usual handful of bytes.
const MAX_PAYLOAD = 256;
// Control bodies may be 16 KiB; generating that much per run buys nothing the unit tests do not cover.
const MAX_GENERATED_CONTROL = 300;

interface Frame {
  type: FrameType;
  flags: number;
  sessionId: number;
  payload: Uint8Array;
}

class CollectingSink implements FrameSink {
  readonly frames: { type: number; flags: number; sessionId: number; payload: string }[] = [];
  onFrame(type: FrameType, flags: number, sessionId: number, payload: Buffer): void {
    this.frames.push({ type, flags, sessionId, payload: payload.toString('hex') });
  }
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

const frameArb: fc.Arbitrary<Frame> = fc.constantFrom(...Object.values(FrameType)).chain((type) => {
  const flags = type === FrameType.DATA ? fc.integer({ min: 0, max: 2 }) : fc.constant(0);
  const sessionId = CONNECTION_FRAMES.has(type)
    ? fc.constant(0)
    : type === FrameType.WINDOW_UPDATE
      ? u32
      : fc.integer({ min: 1, max: 0xffff_ffff });
  const payload =
    type === FrameType.WINDOW_UPDATE
      ? fc.uint8Array({ minLength: WINDOW_UPDATE_SIZE, maxLength: WINDOW_UPDATE_SIZE })
      : fc.uint8Array({ maxLength: Math.min(maxLength(type, MAX_PAYLOAD), MAX_GENERATED_CONTROL), size: 'max' });
  return fc.record({ type: fc.constant(type), flags, sessionId, payload });
});

const encode = (f: Frame): Buffer => encodeFrame(f.type, f.flags, f.sessionId, f.payload);
const expected = (frames: Frame[]) => frames.map((f) => ({ ...f, payload: Buffer.from(f.payload).toString('hex') }));

/** Cuts `data` at the given offsets, taken modulo its length + 1 (any order, duplicates allowed). */
function cut(data: Buffer, offsets: number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => o % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const at of [...points, data.length]) {
    chunks.push(data.subarray(from, at));
    from = at;
  }
  return chunks;
}

function decodeChunks(chunks: Buffer[]): CollectingSink['frames'] {
  const sink = new CollectingSink();
  const decoder = new FrameDecoder(sink, { maxPayload: MAX_PAYLOAD });
  for (const chunk of chunks) decoder.push(chunk);
  expect(decoder.bufferedBytes).toBe(0);
  return sink.frames;
}

const offsetsArb = fc.array(fc.nat(), { maxLength: 12 });

/** Valid-looking streams with random damage, so random input also gets past the magic byte. */
const hostileBytes = fc.oneof(
  fc.uint8Array({ maxLength: 512, size: 'max' }),
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 512, size: 'max' }))
    .map(([type, flags, rest]) => Buffer.concat([Buffer.of(MAGIC, FRAME_VERSION, type, flags), rest])),
  fc
    .tuple(fc.array(frameArb, { maxLength: 6 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
    .map(([frames, damage]) => {
      const stream = Buffer.concat(frames.map(encode));
      for (const [at, value] of damage) if (stream.length > 0) stream[at % stream.length] = value;
      return stream;
    }),
);

describe('FrameDecoder properties', () => {
  it('throws nothing but ProtocolError on any input in any chunking, and then keeps throwing it', () => {
    fc.assert(
      fc.property(hostileBytes, offsetsArb, (data, offsets) => {
        const decoder = new FrameDecoder(new CollectingSink(), { maxPayload: MAX_PAYLOAD });
        let failure: unknown = null;
        for (const chunk of cut(Buffer.from(data), offsets)) {
          try {
            decoder.push(chunk);
          } catch (err) {
            if (failure !== null) {
              expect(err).toBe(failure);
            } else {
              expect(err).toBeInstanceOf(ProtocolError);
              failure = err;
            }
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('decodes an encoded frame to exactly that frame', () => {
    fc.assert(
      fc.property(frameArb, (frame) => {
        const bytes = encode(frame);
        expect(bytes.length).toBe(HEADER_SIZE + frame.payload.length);
        expect(decodeChunks([bytes])).toEqual(expected([frame]));
      }),
      { numRuns: 2000 },
    );
  });

  it('decodes a frame sequence split anywhere exactly as the whole', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), offsetsArb, (frames, offsets) => {
        const stream = Buffer.concat(frames.map(encode));
        expect(decodeChunks(cut(stream, offsets))).toEqual(expected(frames));
      }),
      { numRuns: 1000 },
    );
  });
});
