/**
 * Protobuf varints of non-negative integers up to 2^53 (JavaScript numbers: no BigInt on these paths),
 * for the few places that write protobuf bytes by hand because the field layout is fixed and hot.
 */

/** Bytes `value` takes as a varint. */
export function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    n++;
  }
  return n;
}

/** Writes `value` as a varint at `at`; returns the offset after it. */
export function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[at++] = value;
  return at;
}

/** Bytes of a protobuf length-delimited field (one-byte tag) of `length` bytes; none when empty, as proto3 leaves it out. */
export function lengthField(length: number): number {
  return length === 0 ? 0 : 1 + varintLength(length) + length;
}

/** Bytes of a protobuf varint field (one-byte tag); none when 0, as proto3 leaves it out. */
export function numberField(n: number): number {
  return n === 0 ? 0 : 1 + varintLength(n);
}

/** Writes the one-byte field tag `tag`, then `n` as a varint; returns the offset after them. */
export function writeField(out: Buffer, at: number, tag: number, n: number): number {
  out[at] = tag;
  return writeVarint(out, at + 1, n);
}
