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
