import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as m from '../../src/protocol/messages.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { Code } from '../../src/protocol/codes.js';

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s/g, ''), 'hex');

function malformed(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).wireCode).toBe(Code.MALFORMED_PAYLOAD);
    return (err as ProtocolError).message;
  }
  throw new Error('expected MALFORMED_PAYLOAD');
}

describe('control bodies are read as the protobuf reference implementations read them (PROTOCOL.md §4)', () => {
  it('skips a known field that comes with another wire type, keeping the rest', () => {
    // Open: field 1 (business) as a varint, then business "chat", then metadata {a: b}.
    expect(m.decodeOpen(hex('0805 0a0463686174 1206 0a0161 120162'))).toEqual({ business: 'chat', metadata: { a: 'b' } });
    expect(m.decodeOpen(hex('0805'))).toEqual({ business: '', metadata: {} });
  });

  it('skips inside a sub-message too, and the enclosing length follows', () => {
    const limits = m.encodeWelcome({ version: 1, connectionId: 'c', userId: 'u', heartbeatIntervalMs: 5, limits: { maxSessions: 0, maxPayload: 7, sessionWindow: 0, connectionWindow: 0, idleTimeoutMs: 0, maxOpenRate: 0 } });
    // Welcome with limits holding max_sessions as a fixed32 (wire type 5) ahead of max_payload 7.
    const body = Buffer.concat([limits.subarray(0, limits.length - 4), hex('2a07 0d01000000 1007')]);
    expect(m.decodeWelcome(limits).limits.maxPayload).toBe(7);
    const welcome = m.decodeWelcome(body);
    expect(welcome.limits).toMatchObject({ maxSessions: 0, maxPayload: 7 });
    expect(welcome.userId).toBe('u');
  });

  it('accepts a repeated number packed or not', () => {
    expect(m.decodeHello(hex('0a020102')).versions).toEqual([1, 2]);
    expect(m.decodeHello(hex('0801 0802')).versions).toEqual([1, 2]);
    malformed(() => m.decodeHello(hex('0a0281')));
  });

  it('refuses a string that is not UTF-8, at any depth, map keys and values included', () => {
    expect(malformed(() => m.decodeHello(hex('0a0101 1202c328')))).toMatch(/^HELLO: body is not a valid Hello \(Hello\.token: not valid UTF-8\)/);
    expect(malformed(() => m.decodeHello(hex('1a04 0a02c328')))).toMatch(/Hello\.client\.sdk: not valid UTF-8/);
    expect(malformed(() => m.decodeOpen(hex('1206 0a01ff 120162')))).toMatch(/Open\.metadata\.metadata key: not valid UTF-8/);
    expect(malformed(() => m.decodeOpen(hex('1206 0a0161 1201ff')))).toMatch(/metadata value: not valid UTF-8/);
    expect(m.decodeOpen(hex('0a06e59ba0e5ad90')).business).toBe('因子');
  });

  it('skips unknown fields of every wire type, groups included', () => {
    // #15 varint, #16 fixed64, #17 bytes, #18 fixed32, #19 a group holding a varint.
    const unknown = hex('7801 810100000000000000008a0100 950100000000 9b01 0801 9c01');
    expect(m.decodeStatus('CLOSE', Buffer.concat([unknown, hex('08cd01')]))).toMatchObject({ code: 205 });
  });

  it('refuses wire types 6 and 7, field number 0, a stray end-group, an 11-byte varint and a length past the end', () => {
    for (const body of ['0e', '0f', '0001', '0c', '08ffffffffffffffffffff01', '1205616263']) {
      expect(malformed(() => m.decodeStatus('ERROR', hex(body))), body).toMatch(/^ERROR: body is not a valid Status/);
    }
  });

  it('property: a well-formed body is read unchanged', () => {
    fc.assert(
      fc.property(fc.string(), fc.dictionary(fc.string(), fc.string()), (business, metadata) => {
        expect(m.decodeOpen(m.encodeOpen({ business, metadata }))).toEqual({ business, metadata });
      }),
    );
  });
});
