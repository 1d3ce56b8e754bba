import { describe, expect, it } from 'vitest';
import { decodeBatch, encodeBatch } from '../../src/protocol/batch.js';
import { ProtocolError } from '../../src/protocol/errors.js';

const unpack = (payload: Buffer): { text: string; bytes: number }[] => {
  const out: { text: string; bytes: number }[] = [];
  decodeBatch(payload, (m, bytes) => out.push({ text: m.toString(), bytes }));
  return out;
};

describe('DATA batch payload (PROTOCOL.md §4.9)', () => {
  it('is each message as a u32 big-endian length then its bytes', () => {
    expect(encodeBatch([Buffer.from('hi'), Buffer.alloc(0), Buffer.from('abc')]).toString('hex')).toBe(
      '00000002' + '6869' + '00000000' + '00000003' + '616263',
    );
  });

  it('decodes to the same messages, in order, each credited with its prefix', () => {
    const messages = ['one', '', 'three', 'x'.repeat(1000)];
    expect(unpack(encodeBatch(messages.map((m) => Buffer.from(m))))).toEqual(messages.map((text) => ({ text, bytes: 4 + text.length })));
  });

  it.each([
    ['a truncated length', Buffer.from('000000', 'hex')],
    ['a length past the end', Buffer.from('0000000568656c6c', 'hex')],
    ['garbage after a good message', Buffer.concat([encodeBatch([Buffer.from('ok')]), Buffer.from('ff', 'hex')])],
  ])('rejects %s with MALFORMED_PAYLOAD and delivers nothing', (_name, payload) => {
    const seen: Buffer[] = [];
    expect(() => decodeBatch(payload, (m) => seen.push(m))).toThrow(ProtocolError);
    expect(() => decodeBatch(payload, () => {})).toThrow(/DATA batch/);
    expect(seen).toEqual([]);
  });
});
