import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';
import { Code } from './codes.js';
import { ProtocolError } from './errors.js';
import { varintLength, writeVarint } from '../util/varint.js';

/**
 * The proto3 rules of PROTOCOL.md §4 that protobufjs does not apply by itself, so that this peer reads a
 * control body exactly as the protobuf reference implementations (and so Kotlin and Swift SDKs) do:
 *
 * - a known field whose wire type is not its type's is an unknown field: skipped, not misread (a
 *   repeated number may come packed or not);
 * - a string (map keys and values included, at any depth) must be valid UTF-8;
 * - wire types 6 and 7, field number 0, an end-group without its start, a varint over 10 bytes or a
 *   length past the end make the body malformed.
 *
 * Returns the body to decode: the same bytes when nothing was skipped, else a copy without the skipped
 * fields (enclosing lengths adjusted). Throws ProtocolError MALFORMED_PAYLOAD naming the field.
 */
export function checkBody(type: protobuf.Type, body: Uint8Array, frame: string): Uint8Array {
  return new Scanner(body, `${frame}: body is not a valid ${type.name}`).message(describe(type), 0, body.length, type.name);
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

/** What the scanner needs to know of one field. */
interface FieldShape {
  readonly name: string;
  /** The wire type its values use; a repeated number also accepts WIRE_LEN (packed). */
  readonly wireType: number;
  readonly packable: boolean;
  readonly utf8: boolean;
  /** For a message (or map entry) field: its fields by number. */
  readonly nested: Shape | null;
}
type Shape = ReadonlyMap<number, FieldShape>;

const VARINT_TYPES = new Set(['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'bool']);
const FIXED64_TYPES = new Set(['fixed64', 'sfixed64', 'double']);
const FIXED32_TYPES = new Set(['fixed32', 'sfixed32', 'float']);

const shapes = new WeakMap<protobuf.Type, Shape>();

function describe(type: protobuf.Type): Shape {
  let shape = shapes.get(type);
  if (shape) return shape;
  const fields = new Map<number, FieldShape>();
  shapes.set(type, fields); // before recursing: a message may contain itself
  for (const field of type.fieldsArray) {
    field.resolve();
    fields.set(field.id, field instanceof protobuf.MapField ? mapShape(field) : scalarOrMessage(field.name, field.type, field.resolvedType, field.repeated));
  }
  shape = fields;
  return shape;
}

function scalarOrMessage(name: string, typeName: string, resolved: protobuf.ReflectionObject | null, repeated: boolean): FieldShape {
  if (resolved instanceof protobuf.Type) return { name, wireType: WIRE_LEN, packable: false, utf8: false, nested: describe(resolved) };
  if (resolved instanceof protobuf.Enum || VARINT_TYPES.has(typeName)) return { name, wireType: WIRE_VARINT, packable: repeated, utf8: false, nested: null };
  if (FIXED64_TYPES.has(typeName)) return { name, wireType: WIRE_FIXED64, packable: repeated, utf8: false, nested: null };
  if (FIXED32_TYPES.has(typeName)) return { name, wireType: WIRE_FIXED32, packable: repeated, utf8: false, nested: null };
  return { name, wireType: WIRE_LEN, packable: false, utf8: typeName === 'string', nested: null };
}

/** A map field is a repeated entry message whose key is field 1 and value field 2. */
function mapShape(field: protobuf.MapField): FieldShape {
  const entry = new Map<number, FieldShape>([
    [1, scalarOrMessage(`${field.name} key`, field.keyType, null, false)],
    [2, scalarOrMessage(`${field.name} value`, field.type, field.resolvedType, false)],
  ]);
  return { name: field.name, wireType: WIRE_LEN, packable: false, utf8: false, nested: entry };
}

class Scanner {
  constructor(
    private readonly buf: Uint8Array,
    /** How every problem is introduced, e.g. "HELLO: body is not a valid Hello". */
    private readonly subject: string,
  ) {}

  /** Checks the message in [start, end); returns its bytes, or a copy without skipped fields. */
  message(shape: Shape, start: number, end: number, path: string): Uint8Array {
    const kept: Uint8Array[] = [];
    let changed = false;
    let pos = start;
    while (pos < end) {
      const fieldStart = pos;
      const [tag, afterTag] = this.varint(pos, end, path);
      const number = Math.floor(tag / 8);
      const wireType = tag % 8;
      if (number === 0) this.malformed(`${path}: field number 0`);
      const field = shape.get(number);
      const where = field ? `${path}.${field.name}` : `${path}.#${number}`;
      const [valueStart, valueEnd, next] = this.value(wireType, number, afterTag, end, where);
      pos = next;
      if (!field) {
        kept.push(this.buf.subarray(fieldStart, next)); // unknown: ignored by the decoder, kept as is
        continue;
      }
      const packed = field.packable && wireType === WIRE_LEN;
      if (wireType !== field.wireType && !packed) {
        changed = true; // skipped, as the reference implementations do with a wrong wire type
        continue;
      }
      if (packed) this.packed(field.wireType, valueStart, valueEnd, where);
      if (field.utf8 && !isUtf8(this.buf.subarray(valueStart, valueEnd))) this.malformed(`${where}: not valid UTF-8`);
      if (field.nested) {
        const inner = this.message(field.nested, valueStart, valueEnd, where);
        // Skipping only ever shortens a body: an inner message of another length had fields skipped.
        if (inner.length !== valueEnd - valueStart) {
          changed = true;
          kept.push(this.buf.subarray(fieldStart, afterTag), encodeVarint(inner.length), inner);
          continue;
        }
      }
      kept.push(this.buf.subarray(fieldStart, next));
    }
    return changed ? Buffer.concat(kept) : this.buf.subarray(start, end);
  }

  /** Where the value of a field of `wireType` lies: [start, end) of its content, and the next field's start. */
  private value(wireType: number, number: number, pos: number, end: number, where: string): [number, number, number] {
    switch (wireType) {
      case WIRE_VARINT: {
        const [, next] = this.varint(pos, end, where);
        return [pos, next, next];
      }
      case WIRE_FIXED64:
        return this.fixed(pos, 8, end, where);
      case WIRE_FIXED32:
        return this.fixed(pos, 4, end, where);
      case WIRE_LEN: {
        const [length, start] = this.varint(pos, end, where);
        if (length > end - start) this.malformed(`${where}: length ${length} runs past the end`);
        return [start, start + length, start + length];
      }
      case WIRE_START_GROUP: {
        // Deprecated groups are skipped whole, nested ones included, up to the matching end-group.
        let at = pos;
        for (;;) {
          const [tag, afterTag] = this.varint(at, end, where);
          const wt = tag % 8;
          if (wt === WIRE_END_GROUP) {
            if (Math.floor(tag / 8) !== number) this.malformed(`${where}: group ends with another field's end-group`);
            return [pos, at, afterTag];
          }
          at = this.value(wt, Math.floor(tag / 8), afterTag, end, where)[2];
        }
      }
      case WIRE_END_GROUP:
        return this.malformed(`${where}: end-group without a start`);
      default:
        return this.malformed(`${where}: invalid wire type ${wireType}`);
    }
  }

  private fixed(pos: number, size: number, end: number, where: string): [number, number, number] {
    if (end - pos < size) this.malformed(`${where}: truncated`);
    return [pos, pos + size, pos + size];
  }

  /** A packed run must hold whole values of the field's wire type. */
  private packed(wireType: number, start: number, end: number, where: string): void {
    let pos = start;
    while (pos < end) pos = this.value(wireType, 0, pos, end, where)[2];
  }

  /** Reads a varint (at most 10 bytes); returns its value (exact up to 2^53) and the position after it. */
  private varint(pos: number, end: number, where: string): [number, number] {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos + i >= end) this.malformed(`${where}: truncated varint`);
      const byte = this.buf[pos + i]!;
      value += (byte & 0x7f) * scale;
      scale *= 128;
      if (byte < 0x80) return [value, pos + i + 1];
    }
    return this.malformed(`${where}: varint longer than 10 bytes`);
  }

  private malformed(problem: string): never {
    throw new ProtocolError(Code.MALFORMED_PAYLOAD, `${this.subject} (${problem})`);
  }
}

function encodeVarint(value: number): Buffer {
  const out = Buffer.allocUnsafe(varintLength(value));
  writeVarint(out, 0, value);
  return out;
}
