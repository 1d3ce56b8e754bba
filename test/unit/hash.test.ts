import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur3Bytes, murmur3Int, murmur3String } from '../../src/routing/hash.js';

// Published MurmurHash3_x86_32 vectors (smhasher; the widely used set from
// https://stackoverflow.com/questions/14747343), checked against the reference C implementation.
// These pin where every key lands: a change here remaps every hash-routed session.
const STRING_VECTORS: [string, number, number][] = [
  ['', 0, 0x00000000],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  ['Hello, world!', 0x9747b28c, 0x24884cba],
  ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
  ['The quick brown fox jumps over the lazy dog', 0, 0x2e4ff723],
  ['ππππππππ', 0x9747b28c, 0xd58063c1],
  ['a', 0, 0x3c2569b2],
  ['ab', 0, 0x9bbfd75f],
  ['abc', 0, 0xb3dd93fa],
  ['abcd', 0, 0x43ed676a],
  ['room-42', 0, 0x41a958b2],
  ['héllo wörld', 0, 0x97f7f274],
  ['😀', 0, 0xbeb42efa],
  ['日本語キー', 0, 0xdffdd7d8],
];

const BYTE_VECTORS: [number[], number, number][] = [
  [[0xff, 0xff, 0xff, 0xff], 0, 0x76293b50],
  [[0x21, 0x43, 0x65, 0x87], 0, 0xf55b516b],
  [[0x21, 0x43, 0x65, 0x87], 0x5082edee, 0x2362f9de],
  [[0x21, 0x43, 0x65], 0, 0x7e4a8634],
  [[0x00, 0x00, 0x00, 0x00], 0, 0x2362f9de],
];

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

describe('murmur3String', () => {
  for (const [input, seed, expected] of STRING_VECTORS) {
    it(`${JSON.stringify(input)} seed ${hex(seed)} → ${hex(expected)}`, () => {
      expect(murmur3String(input, seed)).toBe(expected);
    });
  }

  it('defaults the seed to 0', () => {
    expect(murmur3String('room-42')).toBe(0x41a958b2);
  });

  it('hashes the UTF-8 bytes of any string, lone surrogates as U+FFFD (as Buffer encodes them)', () => {
    expect(murmur3String('\ud800x')).toBe(murmur3Bytes(Buffer.from('\ufffdx', 'utf8')));
    expect(murmur3String('x\udc00')).toBe(murmur3Bytes(Buffer.from('x\ufffd', 'utf8')));
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.integer({ min: 0, max: 0xffffffff }), (s, seed) => {
        expect(murmur3String(s, seed)).toBe(murmur3Bytes(Buffer.from(s, 'utf8'), seed));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('murmur3Bytes', () => {
  for (const [bytes, seed, expected] of BYTE_VECTORS) {
    it(`[${bytes.map((b) => b.toString(16)).join(' ')}] seed ${hex(seed)} → ${hex(expected)}`, () => {
      expect(murmur3Bytes(Uint8Array.from(bytes), seed)).toBe(expected);
    });
  }
});

describe('murmur3Int', () => {
  it('is murmur3 of the 4 little-endian bytes', () => {
    expect(murmur3Int(0x87654321, 0)).toBe(0xf55b516b);
    expect(murmur3Int(0, 0)).toBe(0x2362f9de);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), (value, seed) => {
        const bytes = Buffer.alloc(4);
        bytes.writeUInt32LE(value);
        expect(murmur3Int(value, seed)).toBe(murmur3Bytes(bytes, seed));
      }),
    );
  });
});
