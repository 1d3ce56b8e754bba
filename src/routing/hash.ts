/**
 * MurmurHash3, x86 32-bit variant (Austin Appleby, public domain; reference: `MurmurHash3_x86_32` in
 * smhasher/src/MurmurHash3.cpp, https://github.com/aappleby/smhasher). The hash keys of the `hash` and
 * `consistent_hash` policies and the positions on the ring are all computed with it, so a key lands on
 * the same endpoint in every livemux process and version: test/unit/hash.test.ts pins the published
 * vectors (e.g. "Hello, world!" with seed 0x9747b28c → 0x24884cba) and so fixes the routing.
 *
 * Not cryptographic: a client that picks its own room ids can aim many rooms at one endpoint. It is
 * used because it is small, fast in JavaScript (Math.imul, no BigInt) and mixes well enough that
 * consecutive keys (`room-1`, `room-2`) spread evenly.
 *
 * Algorithm, for the bytes b0 b1 b2 ... and a seed:
 *   h = seed
 *   for each 4-byte block k (little endian): k *= c1; k = rotl(k, 15); k *= c2;
 *                                            h ^= k; h = rotl(h, 13); h = h * 5 + 0xe6546b64
 *   the 1-3 tail bytes, if any, form one more k (little endian), mixed as above into h, without the
 *   rotate-and-add on h;  h ^= byte length;  then the finaliser fmix32 (xor-shifts and two multiplies)
 * with c1 = 0xcc9e2d51, c2 = 0x1b873593, all arithmetic mod 2^32.
 *
 * Strings are hashed as their UTF-8 bytes, encoded on the fly (no Buffer per call); a lone surrogate
 * counts as U+FFFD, exactly as `Buffer.from(s, 'utf8')` encodes it.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

// Streaming state of murmur3String. Module-level rather than a closure or object so that hashing a
// key allocates nothing; safe because JavaScript runs one hash at a time.
let h = 0;
let acc = 0;
let shift = 0;

function mixBlock(hash: number, block: number): number {
  let k = Math.imul(block, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  let out = hash ^ k;
  out = (out << 13) | (out >>> 19);
  return (Math.imul(out, 5) + 0xe6546b64) | 0;
}

function mixTail(hash: number, tail: number): number {
  let k = Math.imul(tail, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  return hash ^ k;
}

function finish(hash: number, length: number): number {
  let out = hash ^ length;
  out ^= out >>> 16;
  out = Math.imul(out, 0x85ebca6b);
  out ^= out >>> 13;
  out = Math.imul(out, 0xc2b2ae35);
  out ^= out >>> 16;
  return out >>> 0;
}

function pushByte(byte: number): void {
  acc |= byte << shift;
  shift += 8;
  if (shift === 32) {
    h = mixBlock(h, acc);
    acc = 0;
    shift = 0;
  }
}

/**
 * MurmurHash3 x86_32 of the UTF-8 encoding of `key`: an unsigned 32-bit integer. Allocates nothing.
 * Equal to `murmur3Bytes(Buffer.from(key, 'utf8'), seed)` for every string.
 */
export function murmur3String(key: string, seed = 0): number {
  h = seed | 0;
  acc = 0;
  shift = 0;
  let length = 0;
  const n = key.length;
  for (let i = 0; i < n; i++) {
    let c = key.charCodeAt(i);
    if (c < 0x80) {
      pushByte(c);
      length += 1;
    } else if (c < 0x800) {
      pushByte(0xc0 | (c >> 6));
      pushByte(0x80 | (c & 0x3f));
      length += 2;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < n ? key.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        pushByte(0xf0 | (c >> 18));
        pushByte(0x80 | ((c >> 12) & 0x3f));
        pushByte(0x80 | ((c >> 6) & 0x3f));
        pushByte(0x80 | (c & 0x3f));
        length += 4;
      } else {
        // Lone surrogate: U+FFFD, as Buffer and TextEncoder encode it.
        pushByte(0xef);
        pushByte(0xbf);
        pushByte(0xbd);
        length += 3;
      }
    } else {
      pushByte(0xe0 | (c >> 12));
      pushByte(0x80 | ((c >> 6) & 0x3f));
      pushByte(0x80 | (c & 0x3f));
      length += 3;
    }
  }
  const hash = shift > 0 ? mixTail(h, acc) : h;
  return finish(hash, length);
}

/** MurmurHash3 x86_32 of raw bytes: an unsigned 32-bit integer. */
export function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  let hash = seed | 0;
  const blocks = bytes.length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    hash = mixBlock(hash, bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
  }
  const rest = bytes.length & 3;
  if (rest > 0) {
    let tail = 0;
    for (let j = rest - 1; j >= 0; j--) tail = (tail << 8) | bytes[blocks + j]!;
    hash = mixTail(hash, tail);
  }
  return finish(hash, bytes.length);
}

/**
 * MurmurHash3 x86_32 of one 32-bit integer as 4 little-endian bytes. The ring uses it to place an
 * endpoint's virtual nodes (`murmur3Int(i, murmur3String(address))`) without building a string per node.
 */
export function murmur3Int(value: number, seed = 0): number {
  return finish(mixBlock(seed | 0, value | 0), 4);
}
