import { FrameType, Priority } from '../src/protocol/constants.js';
import { FrameDecoder } from '../src/protocol/decoder.js';
import { encodeData } from '../src/protocol/encoder.js';
import { timed } from './timed.js';

export interface CodecResult {
  name: string;
  framesPerSecond: number;
}

/**
 * Decoder and encoder throughput on one core. The decoder is fed 64 KiB chunks of back-to-back DATA
 * frames, as a socket delivers them under load (so most payloads are zero-copy views and a few span
 * chunks).
 */
export function benchCodec(payloadSize: number, seconds = 1.5): CodecResult[] {
  const payload = Buffer.alloc(payloadSize, 0x61);
  const frame = encodeData(1, Priority.HIGH, payload);
  const perChunk = Math.max(1, Math.floor((64 * 1024) / frame.length));
  // Offset the chunk boundary so frames straddle chunks like real socket reads.
  const stream = Buffer.concat(Array.from({ length: perChunk * 8 }, () => frame));
  const chunks: Buffer[] = [];
  for (let off = 0; off < stream.length; off += 65_000) chunks.push(stream.subarray(off, off + 65_000));
  const framesPerPass = perChunk * 8;

  let decoded = 0;
  let bytes = 0;
  const decoder = new FrameDecoder(
    {
      onFrame(type, _flags, _session, p) {
        if (type === FrameType.DATA) bytes += p.length;
        decoded++;
      },
    },
    { maxPayload: 1 << 20 },
  );
  const decodeRate = timed(seconds, () => {
    for (const c of chunks) decoder.push(c);
    return framesPerPass;
  });
  if (decoded === 0 || bytes === 0) throw new Error('decoder bench decoded nothing');

  const encodeRate = timed(seconds, () => {
    for (let i = 0; i < 1000; i++) encodeData(i + 1, Priority.HIGH, payload);
    return 1000;
  });
  return [
    { name: `decode ${payloadSize} B`, framesPerSecond: decodeRate },
    { name: `encode ${payloadSize} B`, framesPerSecond: encodeRate },
  ];
}
