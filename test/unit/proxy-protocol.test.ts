import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Code } from '../../src/protocol/codes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  PROXY_V1_MAX_LENGTH,
  ProxyHeaderParser,
  encodeProxyV1,
  encodeProxyV2,
  type ProxyHeader,
} from '../../src/proxy/proxy-protocol.js';

const SIGNATURE = '0d0a0d0a000d0a515549540a';
const PAYLOAD = Buffer.from([0x4c, 0x01, 0x01, 0x00]); // the start of a livemux frame after the header

/**
 * Feeds `bytes` in two pieces split at `at` (one piece when `at` is 0 or the end). If the first piece
 * already completes the header, the second is appended to `rest`, as the caller would do.
 */
function parseSplit(bytes: Buffer, at = 0): ProxyHeader | null {
  const parser = new ProxyHeaderParser();
  if (at === 0 || at >= bytes.length) return parser.push(bytes);
  const first = parser.push(bytes.subarray(0, at));
  if (first) return { source: first.source, rest: Buffer.concat([first.rest, bytes.subarray(at)]) };
  return parser.push(bytes.subarray(at));
}

/** Every split point, and one byte at a time: all must give the same header and rest. */
function expectEverywhere(bytes: Buffer, source: ProxyHeader['source']): void {
  for (let at = 0; at <= bytes.length; at++) {
    const result = parseSplit(bytes, at);
    expect(result, `split at ${at}`).not.toBeNull();
    expect(result!.source).toEqual(source);
    expect(result!.rest).toEqual(PAYLOAD);
  }
  // One byte at a time: nothing until the header's last byte, which completes it with no rest.
  const parser = new ProxyHeaderParser();
  const headerLength = bytes.length - PAYLOAD.length;
  for (let i = 0; i < headerLength - 1; i++) expect(parser.push(bytes.subarray(i, i + 1)), `byte ${i}`).toBeNull();
  expect(parser.push(bytes.subarray(headerLength - 1, headerLength))).toEqual({ source, rest: Buffer.alloc(0) });
}

function protocolError(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).wireCode).toBe(Code.PROTOCOL_ERROR);
    return err as ProtocolError;
  }
  throw new Error('expected a ProtocolError');
}

describe('PROXY v1', () => {
  it('parses TCP4 at every split point', () => {
    const bytes = Buffer.concat([Buffer.from('PROXY TCP4 192.0.2.1 198.51.100.7 56324 7000\r\n'), PAYLOAD]);
    expectEverywhere(bytes, { address: '192.0.2.1', port: 56324 });
  });

  it('parses TCP6 at every split point', () => {
    const bytes = Buffer.concat([Buffer.from('PROXY TCP6 2001:db8::1 ::1 65535 7000\r\n'), PAYLOAD]);
    expectEverywhere(bytes, { address: '2001:db8::1', port: 65535 });
  });

  it('parses UNKNOWN, with or without addresses', () => {
    expectEverywhere(Buffer.concat([Buffer.from('PROXY UNKNOWN\r\n'), PAYLOAD]), null);
    expect(parseSplit(Buffer.from('PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n'))).toEqual({ source: null, rest: Buffer.alloc(0) });
  });

  it('accepts the longest legal header (107 bytes, the worst case in the spec)', () => {
    const ip = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const header = Buffer.from(`PROXY UNKNOWN ${ip} ${ip} 65535 65535\r\n`);
    expect(header.length).toBe(PROXY_V1_MAX_LENGTH);
    expect(parseSplit(header)).toEqual({ source: null, rest: Buffer.alloc(0) });
    const tcp6 = Buffer.from(`PROXY TCP6 ${ip} ${ip} 65535 65535\r\n`);
    expect(parseSplit(tcp6)!.source).toEqual({ address: ip, port: 65535 });
  });

  it('refuses a header with no CRLF within 107 bytes, without waiting for more', () => {
    const parser = new ProxyHeaderParser();
    expect(parser.push(Buffer.from(`PROXY TCP4 ${'1'.repeat(90)}`))).toBeNull();
    const err = protocolError(() => parser.push(Buffer.from('x'.repeat(20))));
    expect(err.message).toBe('PROXY v1: header too long (no CRLF within 107 bytes)');
  });

  it.each([
    ['PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY v1: unknown protocol "TCP5"'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', 'PROXY v1: expected 6 space-separated fields (5)'],
    ['PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY v1: expected 6 space-separated fields (7)'],
    ['PROXY TCP4 ::1 5.6.7.8 1 2\r\n', 'PROXY v1: bad TCP4 address "::1"'],
    ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n', 'PROXY v1: bad TCP6 address "1.2.3.4"'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', 'PROXY v1: bad port "65536"'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', 'PROXY v1: bad port "01"'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 x\r\n', 'PROXY v1: bad port "x"'],
    ['PROXY\r\n', 'PROXY v1: bad signature'],
    ['PROXX TCP4\r\n', 'PROXY v1: bad signature'],
  ])('refuses %j', (text, message) => {
    expect(protocolError(() => parseSplit(Buffer.from(text))).message).toBe(message);
  });
});

describe('PROXY v2', () => {
  it('parses a hand-built TCP4 header at every split point', () => {
    // PROXY|v2, INET|STREAM, length 12, 192.0.2.1 → 198.51.100.13, ports 56324 → 7000.
    const header = Buffer.from(`${SIGNATURE}2111000cc0000201c633640ddc041b58`, 'hex');
    expectEverywhere(Buffer.concat([header, PAYLOAD]), { address: '192.0.2.1', port: 56324 });
  });

  it('parses TCP4 with TLVs', () => {
    const header = encodeProxyV2({ address: '10.1.2.3', port: 4000 }, { address: '10.0.0.1', port: 7000 }, [
      { type: 0x01, value: Buffer.from('h2') }, // ALPN
      { type: 0x04, value: Buffer.alloc(0) }, // NOOP
    ]);
    expect(header.readUInt16BE(14)).toBe(12 + 5 + 3);
    expectEverywhere(Buffer.concat([header, PAYLOAD]), { address: '10.1.2.3', port: 4000 });
  });

  it('parses TCP6 at every split point', () => {
    const header = encodeProxyV2({ address: '2001:db8::1', port: 1234 }, { address: '2001:db8:0:0:1:0:0:1', port: 7000 });
    expect(header.subarray(12, 16).toString('hex')).toBe('21210024');
    expect(header.subarray(16, 32).toString('hex')).toBe('20010db8000000000000000000000001');
    expectEverywhere(Buffer.concat([header, PAYLOAD]), { address: '2001:db8::1', port: 1234 });
  });

  it('formats IPv6 sources canonically', () => {
    const cases: [string, string][] = [
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
      ['::ffff:192.0.2.9', '::ffff:192.0.2.9'],
      ['fe80::', 'fe80::'],
    ];
    for (const [input, expected] of cases) {
      const header = encodeProxyV2({ address: input, port: 1 }, { address: '::1', port: 2 });
      expect(parseSplit(header)!.source).toEqual({ address: expected, port: 1 });
    }
  });

  it('parses LOCAL (with TLVs) as no source', () => {
    const header = encodeProxyV2(null, null, [{ type: 0x05, value: Buffer.from('unique-id') }]);
    expect(header.subarray(12, 14).toString('hex')).toBe('2000');
    expectEverywhere(Buffer.concat([header, PAYLOAD]), null);
  });

  it('ignores the address block of LOCAL and of UNSPEC / UNIX families', () => {
    const local = Buffer.from(`${SIGNATURE}2011000c${'00'.repeat(12)}`, 'hex');
    expect(parseSplit(local)!.source).toBeNull();
    const unspec = Buffer.from(`${SIGNATURE}21000000`, 'hex');
    expect(parseSplit(unspec)!.source).toBeNull();
    const unix = Buffer.from(`${SIGNATURE}213100d8${'00'.repeat(216)}`, 'hex');
    expect(parseSplit(unix)!.source).toBeNull();
  });

  it.each([
    [`${SIGNATURE}11110000`, 'PROXY v2: unsupported version (1 vs 2)'],
    [`${SIGNATURE}22110000`, 'PROXY v2: unknown command (0x2)'],
    [`${SIGNATURE}2141000c`, 'PROXY v2: unknown address family (0x4)'],
    [`${SIGNATURE}2112000c`, 'PROXY v2: transport must be STREAM for a TCP proxy (0x2)'],
    [`${SIGNATURE}2111000b`, 'PROXY v2: address block too short (11 vs 12 bytes)'],
    [`${SIGNATURE}21210010`, 'PROXY v2: address block too short (16 vs 36 bytes)'],
    ['0d0a0d0a000d0a5155495420', 'PROXY v2: bad signature'],
  ])('refuses %s from its fixed part alone', (hex, message) => {
    expect(protocolError(() => parseSplit(Buffer.from(hex, 'hex'))).message).toBe(message);
  });

  it('waits for a long address block without buffering past it', () => {
    const header = encodeProxyV2(null, null, [{ type: 0xe0, value: Buffer.alloc(60_000, 7) }]);
    const parser = new ProxyHeaderParser();
    expect(parser.push(header.subarray(0, 30_000))).toBeNull();
    const result = parser.push(Buffer.concat([header.subarray(30_000), PAYLOAD]));
    expect(result).toEqual({ source: null, rest: PAYLOAD });
  });
});

describe('detection and misuse', () => {
  it('refuses a connection without a header on its first byte', () => {
    expect(protocolError(() => parseSplit(Buffer.from([0x16, 0x03, 0x01]))).message).toBe(
      'PROXY header: missing (first byte 0x16 starts neither v1 "PROXY " nor the v2 signature)',
    );
    expect(protocolError(() => parseSplit(Buffer.from([0x4c, 0x01]))).message).toMatch(/^PROXY header: missing \(first byte 0x4c/);
  });

  it('ignores empty chunks', () => {
    const parser = new ProxyHeaderParser();
    expect(parser.push(Buffer.alloc(0))).toBeNull();
    expect(parser.push(encodeProxyV1(null, null))).toEqual({ source: null, rest: Buffer.alloc(0) });
  });

  it('refuses pushes after the header', () => {
    const parser = new ProxyHeaderParser();
    parser.push(encodeProxyV1(null, null));
    expect(() => parser.push(PAYLOAD)).toThrow(/already parsed/);
  });

  it('never throws anything but ProtocolError on random bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.concat([Buffer.from('PROXY '), b])), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.concat([Buffer.from(SIGNATURE, 'hex'), b]))), (bytes) => {
        try {
          parseSplit(Buffer.from(bytes));
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });
});

describe('encoders', () => {
  it('encode v1', () => {
    expect(encodeProxyV1({ address: '1.2.3.4', port: 5 }, { address: '6.7.8.9', port: 10 }).toString()).toBe('PROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n');
    expect(encodeProxyV1({ address: '::1', port: 5 }, { address: '::2', port: 10 }).toString()).toBe('PROXY TCP6 ::1 ::2 5 10\r\n');
    expect(encodeProxyV1(null, null).toString()).toBe('PROXY UNKNOWN\r\n');
  });

  it('encode v2 TCP4 as the spec lays it out', () => {
    const header = encodeProxyV2({ address: '192.0.2.1', port: 56324 }, { address: '198.51.100.13', port: 7000 });
    expect(header.toString('hex')).toBe(`${SIGNATURE}2111000cc0000201c633640ddc041b58`);
  });

  it('refuse mixed families', () => {
    expect(() => encodeProxyV1({ address: '1.2.3.4', port: 1 }, { address: '::1', port: 2 })).toThrow(/must both be IPv4 or both IPv6/);
    expect(() => encodeProxyV2({ address: 'host', port: 1 }, { address: 'host', port: 2 })).toThrow(/must both be IPv4 or both IPv6/);
  });

  it('round-trip random addresses through both versions', () => {
    const address = fc.oneof(fc.ipV4(), fc.ipV6());
    fc.assert(
      fc.property(address, fc.integer({ min: 0, max: 65535 }), (ip, port) => {
        const dst = ip.includes(':') ? { address: '::1', port: 7000 } : { address: '127.0.0.1', port: 7000 };
        const v1 = parseSplit(encodeProxyV1({ address: ip, port }, dst))!.source!;
        const v2 = parseSplit(encodeProxyV2({ address: ip, port }, dst))!.source!;
        expect(v1).toEqual({ address: ip, port });
        expect(v2.port).toBe(port);
        // v2 carries bytes, so its text is canonical: compare as bytes via a second round trip.
        expect(parseSplit(encodeProxyV2(v2, dst))!.source).toEqual(v2);
        if (!ip.includes(':')) expect(v2.address).toBe(ip);
      }),
    );
  });
});
