import { isIP, isIPv4, isIPv6 } from 'node:net';
import { Code } from '../protocol/codes.js';
import { LivemuxError, ProtocolError } from '../protocol/errors.js';

/**
 * HAProxy PROXY protocol, versions 1 and 2 (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
 * A load balancer in front of livemux prepends one header to each TCP connection naming the real
 * client; this module reads it so logs, metrics and backends see the client, not the balancer.
 *
 * v1 is one text line, at most 107 bytes including CRLF:
 *   `PROXY TCP4 192.0.2.1 198.51.100.1 56324 7000\r\n`, or `PROXY UNKNOWN ...\r\n`.
 * v2 is binary: a 12-byte signature, ver/cmd, family/transport, a u16 BE length, then that many
 * bytes of addresses (IPv4 12, IPv6 36, UNIX 216) followed by TLVs, which livemux ignores.
 */

/** A transport address as carried in a PROXY header. */
export interface ProxyAddress {
  address: string;
  port: number;
}

/** A complete PROXY header: the real client (null for LOCAL / UNKNOWN / UNSPEC / UNIX) and the bytes after it. */
export interface ProxyHeader {
  source: ProxyAddress | null;
  /** Bytes that followed the header in the pushed data: the start of the livemux stream. */
  rest: Buffer;
}

/** One v2 TLV (type-length-value) extension. */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Longest v1 header, CRLF included (the spec's worst case: two full IPv6 addresses and ports). */
export const PROXY_V1_MAX_LENGTH = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Fixed part of a v2 header; the u16 length that ends it caps the whole header at 16 + 65535 bytes. */
const V2_FIXED = 16;

const V2_VERSION = 0x2;
const CMD_LOCAL = 0x0;
const CMD_PROXY = 0x1;
const AF_UNSPEC = 0x0;
const AF_INET = 0x1;
const AF_INET6 = 0x2;
const AF_UNIX = 0x3;
const TRANSPORT_STREAM = 0x1;
/** Address block sizes by family (src + dst addresses and ports). */
const ADDRESS_BLOCK: Record<number, number> = { [AF_UNSPEC]: 0, [AF_INET]: 12, [AF_INET6]: 36, [AF_UNIX]: 216 };

function malformed(message: string): ProtocolError {
  return new ProtocolError(Code.PROTOCOL_ERROR, message);
}

/**
 * Push-style reader of the one PROXY header at the start of a connection; v1 or v2 is detected from
 * the first byte. Feed socket chunks to {@link push} until it returns the header, then hand `rest`
 * to the frame decoder. Bytes are checked as they arrive (a TLS ClientHello or a bare livemux frame
 * fails on its first byte), and no more than the spec's maximum header length is ever buffered.
 */
export class ProxyHeaderParser {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;

  /**
   * Adds bytes. Returns null while the header is incomplete, the header once it is complete.
   * Throws {@link ProtocolError} (Code.PROTOCOL_ERROR) if the bytes are not a valid header.
   */
  push(chunk: Buffer): ProxyHeader | null {
    if (this.done) throw new LivemuxError('ERR_PROXY_HEADER_DONE', 'PROXY header: already parsed; pass later bytes to the frame decoder');
    if (chunk.length === 0) return null;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const first = this.chunks[0]![0]!;
    const length = first === V1_PREFIX[0] ? this.v1Length() : first === V2_SIGNATURE[0] ? this.v2Length() : missing(first);
    if (length < 0) return null;
    this.done = true;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    this.chunks.length = 0;
    const header = all.subarray(0, length);
    return { source: first === V1_PREFIX[0] ? parseV1(header) : parseV2(header), rest: all.subarray(length) };
  }

  /** First `n` buffered bytes (n ≤ buffered) as one buffer; small, so a copy when they span chunks is cheap. */
  private peek(n: number): Buffer {
    const head = this.chunks[0]!;
    return head.length >= n ? head.subarray(0, n) : Buffer.concat(this.chunks, this.buffered).subarray(0, n);
  }

  /** Header length once its CRLF has arrived, -1 before. */
  private v1Length(): number {
    const view = this.peek(Math.min(this.buffered, PROXY_V1_MAX_LENGTH));
    expectPrefix(view, V1_PREFIX, 'PROXY v1');
    const cr = view.indexOf('\r\n', 0, 'latin1');
    if (cr >= 0) return cr + 2;
    if (view.length >= PROXY_V1_MAX_LENGTH) {
      throw malformed(`PROXY v1: header too long (no CRLF within ${PROXY_V1_MAX_LENGTH} bytes)`);
    }
    return -1;
  }

  /** Header length once all of it has arrived, -1 before. */
  private v2Length(): number {
    const view = this.peek(Math.min(this.buffered, V2_FIXED));
    expectPrefix(view, V2_SIGNATURE, 'PROXY v2');
    if (view.length < V2_FIXED) return -1;
    checkV2Fixed(view);
    const total = V2_FIXED + view.readUInt16BE(14);
    return this.buffered >= total ? total : -1;
  }
}

function missing(first: number): never {
  throw malformed(`PROXY header: missing (first byte 0x${first.toString(16).padStart(2, '0')} starts neither v1 "PROXY " nor the v2 signature)`);
}

/** Checks the bytes seen so far against the start of `expected`, so garbage fails without waiting for more. */
function expectPrefix(view: Buffer, expected: Buffer, what: string): void {
  const n = Math.min(view.length, expected.length);
  if (view.compare(expected, 0, n, 0, n) !== 0) throw malformed(`${what}: bad signature`);
}

function parseV1(header: Buffer): ProxyAddress | null {
  const line = header.toString('latin1', 0, header.length - 2);
  const parts = line.split(' ');
  const protocol = parts[1];
  if (protocol === 'UNKNOWN') return null;
  if (protocol !== 'TCP4' && protocol !== 'TCP6') throw malformed(`PROXY v1: unknown protocol ${JSON.stringify(protocol ?? '')}`);
  if (parts.length !== 6) throw malformed(`PROXY v1: expected 6 space-separated fields (${parts.length})`);
  const [, , src, dst, srcPort, dstPort] = parts as [string, string, string, string, string, string];
  const family = protocol === 'TCP4' ? 4 : 6;
  for (const address of [src, dst]) {
    if (isIP(address) !== family) throw malformed(`PROXY v1: bad ${protocol} address ${JSON.stringify(address)}`);
  }
  parseV1Port(dstPort);
  return { address: src, port: parseV1Port(srcPort) };
}

function parseV1Port(text: string): number {
  // The spec forbids leading zeros; 1-5 digits keeps Number() exact.
  if (!/^(?:0|[1-9]\d{0,4})$/.test(text) || Number(text) > 65535) throw malformed(`PROXY v1: bad port ${JSON.stringify(text)}`);
  return Number(text);
}

/**
 * Checks the 16 fixed bytes of a v2 header, before waiting for the rest, so a bogus header is
 * refused without buffering up to 64 KiB of whatever follows it.
 */
function checkV2Fixed(fixed: Buffer): void {
  const version = fixed[12]! >> 4;
  const command = fixed[12]! & 0x0f;
  const family = fixed[13]! >> 4;
  const transport = fixed[13]! & 0x0f;
  if (version !== V2_VERSION) throw malformed(`PROXY v2: unsupported version (${version} vs ${V2_VERSION})`);
  if (command !== CMD_LOCAL && command !== CMD_PROXY) throw malformed(`PROXY v2: unknown command (0x${command.toString(16)})`);
  // LOCAL: the balancer's own connection (health check); its address block, if any, is ignored.
  if (command === CMD_LOCAL) return;
  const block = ADDRESS_BLOCK[family];
  if (block === undefined) throw malformed(`PROXY v2: unknown address family (0x${family.toString(16)})`);
  if (family !== AF_UNSPEC && transport !== TRANSPORT_STREAM) {
    throw malformed(`PROXY v2: transport must be STREAM for a TCP proxy (0x${transport.toString(16)})`);
  }
  const length = fixed.readUInt16BE(14);
  if (length < block) throw malformed(`PROXY v2: address block too short (${length} vs ${block} bytes)`);
}

/** The source address of a complete v2 header already checked by {@link checkV2Fixed}. */
function parseV2(header: Buffer): ProxyAddress | null {
  if ((header[12]! & 0x0f) === CMD_LOCAL) return null;
  const family = header[13]! >> 4;
  const a = V2_FIXED;
  if (family === AF_INET) return { address: header.subarray(a, a + 4).join('.'), port: header.readUInt16BE(a + 8) };
  if (family === AF_INET6) return { address: formatIPv6(header.subarray(a, a + 16)), port: header.readUInt16BE(a + 32) };
  return null;
}

/** Encodes a v1 header; null addresses give `PROXY UNKNOWN`. Throws on mixed or invalid families. */
export function encodeProxyV1(src: ProxyAddress | null, dst: ProxyAddress | null): Buffer {
  if (src === null || dst === null) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const family = addressFamily(src, dst);
  return Buffer.from(`PROXY TCP${family} ${src.address} ${dst.address} ${src.port} ${dst.port}\r\n`, 'latin1');
}

/**
 * Encodes a v2 header over TCP; null addresses give the LOCAL command (as sent for balancer health
 * checks). `tlvs` are appended after the address block.
 */
export function encodeProxyV2(src: ProxyAddress | null, dst: ProxyAddress | null, tlvs: readonly ProxyTlv[] = []): Buffer {
  const tlvBytes = Buffer.concat(
    tlvs.map(({ type, value }) => {
      const head = Buffer.alloc(3);
      head.writeUInt8(type, 0);
      head.writeUInt16BE(value.length, 1);
      return Buffer.concat([head, value]);
    }),
  );
  let block: Buffer;
  let command = CMD_PROXY;
  let familyByte: number;
  if (src === null || dst === null) {
    command = CMD_LOCAL;
    familyByte = AF_UNSPEC << 4;
    block = Buffer.alloc(0);
  } else if (addressFamily(src, dst) === 4) {
    familyByte = (AF_INET << 4) | TRANSPORT_STREAM;
    block = Buffer.alloc(12);
    Buffer.from(src.address.split('.').map(Number)).copy(block, 0);
    Buffer.from(dst.address.split('.').map(Number)).copy(block, 4);
    block.writeUInt16BE(src.port, 8);
    block.writeUInt16BE(dst.port, 10);
  } else {
    familyByte = (AF_INET6 << 4) | TRANSPORT_STREAM;
    block = Buffer.alloc(36);
    parseIPv6(src.address).copy(block, 0);
    parseIPv6(dst.address).copy(block, 16);
    block.writeUInt16BE(src.port, 32);
    block.writeUInt16BE(dst.port, 34);
  }
  const fixed = Buffer.alloc(4);
  fixed.writeUInt8((V2_VERSION << 4) | command, 0);
  fixed.writeUInt8(familyByte, 1);
  fixed.writeUInt16BE(block.length + tlvBytes.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, block, tlvBytes]);
}

function addressFamily(src: ProxyAddress, dst: ProxyAddress): 4 | 6 {
  if (isIPv4(src.address) && isIPv4(dst.address)) return 4;
  if (isIPv6(src.address) && isIPv6(dst.address)) return 6;
  throw new LivemuxError('ERR_PROXY_ADDRESS', `PROXY header: addresses must both be IPv4 or both IPv6 (${src.address}, ${dst.address})`);
}

/** 16 bytes of a valid textual IPv6 address (`::` and a dotted IPv4 tail allowed). */
function parseIPv6(address: string): Buffer {
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const out = Buffer.alloc(16);
  [...headGroups, ...zeros, ...tailGroups].forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  return out;
}

/**
 * RFC 5952 text of 16 address bytes (longest zero run of two or more groups compressed), except that
 * IPv4-mapped addresses read `::ffff:a.b.c.d`, as Node reports them in `socket.remoteAddress`.
 */
function formatIPv6(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${bytes.subarray(12).join('.')}`;
  }
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
