import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType } from '../../src/protocol/constants.js';
import { encodeFrame } from '../../src/protocol/encoder.js';
import { encodeHello } from '../../src/protocol/messages.js';
import { mintToken } from '../../src/proxy/auth.js';
import { RawClient } from '../helpers/raw-client.js';
import { type EchoStack, TEST_SECRET, startEchoStack } from '../helpers/processes.js';
import { scrape } from '../helpers/metrics.js';

// One proxy with small limits so every limit can be reached quickly.
let stack: EchoStack;

beforeAll(async () => {
  stack = await startEchoStack({
    limits: { max_sessions: 4, max_payload: 65536, session_window: 4096, connection_window: 1 << 20, open_reset_rate: 50 },
    timeouts: { handshake_ms: 400 },
  });
});

afterAll(() => stack?.stop());

const header = (type: number, flags: number, session: number, length: number, magic = 0x4c, version = 1): Buffer => {
  const b = Buffer.alloc(12);
  b[0] = magic;
  b[1] = version;
  b[2] = type;
  b[3] = flags;
  b.writeUInt32BE(session, 4);
  b.writeUInt32BE(length, 8);
  return b;
};
const hello = (tok: string, versions = [1]): Buffer => encodeFrame(FrameType.HELLO, 0, 0, encodeHello({ versions, token: tok }));

describe('connection faults answer ERROR with their code and close, before HELLO', () => {
  const cases: [string, () => Buffer | Promise<Buffer>, string][] = [
    ['garbage bytes', () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'BAD_MAGIC'],
    ['wrong framing version', () => header(FrameType.HELLO, 0, 0, 0, 0x4c, 7), 'UNSUPPORTED_VERSION'],
    ['unknown frame type', () => header(0x2a, 0, 0, 0), 'UNKNOWN_FRAME_TYPE'],
    ['OPEN before HELLO', () => encodeFrame(FrameType.OPEN, 0, 1, Buffer.alloc(0)), 'UNEXPECTED_FRAME'],
    ['PING before HELLO', () => encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)), 'UNEXPECTED_FRAME'],
    ['oversized control length', () => header(FrameType.HELLO, 0, 0, 1 << 30), 'FRAME_TOO_LARGE'],
    ['HELLO on a session id', () => header(FrameType.HELLO, 0, 3, 0), 'BAD_SESSION_ID'],
    ['malformed HELLO body', () => encodeFrame(FrameType.HELLO, 0, 0, Buffer.from([0xff, 0xff, 0xff])), 'MALFORMED_PAYLOAD'],
    ['no common version', () => hello(stack.token, [9]), 'UNSUPPORTED_VERSION'],
    ['bad token', () => hello('not-a-jwt'), 'AUTH_FAILED'],
    ['token signed with another secret', async () => hello(await mintToken({ secret: 'other-secret-000000000000000000000', sub: 'u' })), 'AUTH_FAILED'],
    ['expired token', async () => hello(await mintToken({ secret: TEST_SECRET, sub: 'u', ttlSeconds: -60 })), 'AUTH_EXPIRED'],
  ];
  for (const [name, bytes, code] of cases) {
    it(`${name} → ${code}`, async () => {
      const c = await RawClient.connect(stack.proxy.port);
      c.send(await bytes());
      expect(await c.errorCode()).toBe(code);
    });
  }

  it('no HELLO within the handshake timeout → HANDSHAKE_TIMEOUT', async () => {
    const c = await RawClient.connect(stack.proxy.port);
    const started = Date.now();
    expect(await c.errorCode()).toBe('HANDSHAKE_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
  });
});

describe('connection faults after WELCOME', () => {
  const cases: [string, (c: RawClient) => void, string][] = [
    // max_payload 65536 is announced lowered to half the 4096-byte session window (PROTOCOL.md §7); a session
    // window overrun needs credit held back, see protocol-flow.test.ts.
    ['DATA longer than the announced max_payload', (c) => c.send(header(FrameType.DATA, 1, 1, 2049)), 'FRAME_TOO_LARGE'],
    ['second HELLO', (c) => c.send(hello(stack.token)), 'UNEXPECTED_FRAME'],
    ['WELCOME from the client', (c) => c.send(encodeFrame(FrameType.WELCOME, 0, 0, Buffer.alloc(0))), 'UNEXPECTED_FRAME'],
    ['DATA priority 3', (c) => c.send(header(FrameType.DATA, 3, 1, 0)), 'BAD_FLAGS'],
    ['DATA on session 0', (c) => c.send(header(FrameType.DATA, 1, 0, 0)), 'BAD_SESSION_ID'],
    ['WINDOW_UPDATE of 0', (c) => c.windowUpdate(0, 0), 'FLOW_CONTROL_ERROR'],
    ['WINDOW_UPDATE overflowing 2^31-1', (c) => c.windowUpdate(0, 0x7fffffff), 'FLOW_CONTROL_ERROR'],
  ];
  // A session's window is its own field (ProxySession.grantCredit), beside the connection's SendCredit.
  const sessionCases: [string, number][] = [
    ['WINDOW_UPDATE of 0 for an open session', 0],
    ['WINDOW_UPDATE overflowing 2^31-1 for an open session', 0x7fffffff],
  ];
  for (const [name, increment] of sessionCases) {
    it(`${name} → FLOW_CONTROL_ERROR`, async () => {
      const c = await RawClient.handshake(stack.proxy.port, stack.token);
      c.open(1);
      await c.next(FrameType.OPEN_OK, 1);
      c.windowUpdate(1, increment);
      expect(await c.errorCode()).toBe('FLOW_CONTROL_ERROR');
    });
  }
  for (const [name, act, code] of cases) {
    it(`${name} → ${code}`, async () => {
      const c = await RawClient.handshake(stack.proxy.port, stack.token);
      act(c);
      expect(await c.errorCode()).toBe(code);
    });
  }
});

describe('session faults answer RESET or OPEN_FAIL and leave the connection usable', () => {
  const stillAlive = async (c: RawClient): Promise<void> => {
    c.send(encodeFrame(FrameType.PING, 0, 0, Buffer.from('alive')));
    expect((await c.next(FrameType.PONG)).payload.toString()).toBe('alive');
  };

  it('DATA on an unknown session → RESET UNKNOWN_SESSION', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.data(9, 'hi');
    expect(RawClient.codeOf(await c.next(FrameType.RESET, 9))).toBe('UNKNOWN_SESSION');
    await stillAlive(c);
    c.destroy();
  });

  it('DATA on a closed session → RESET UNKNOWN_SESSION', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    c.close(1);
    await c.next(FrameType.CLOSE, 1);
    c.data(1, 'late');
    expect(RawClient.codeOf(await c.next(FrameType.RESET, 1))).toBe('UNKNOWN_SESSION');
    await stillAlive(c);
    c.destroy();
  });

  it('reused or decreasing session id → RESET SESSION_ID_REUSED', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.open(5);
    await c.next(FrameType.OPEN_OK, 5);
    c.open(3);
    expect(RawClient.codeOf(await c.next(FrameType.RESET, 3))).toBe('SESSION_ID_REUSED');
    c.open(5);
    expect(RawClient.codeOf(await c.next(FrameType.RESET, 5))).toBe('SESSION_ID_REUSED');
    await stillAlive(c);
    c.destroy();
  });

  it('OPEN beyond max_sessions → OPEN_FAIL TOO_MANY_SESSIONS', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    for (let id = 1; id <= 4; id++) c.open(id);
    for (let id = 1; id <= 4; id++) await c.next(FrameType.OPEN_OK, id);
    c.open(5);
    expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, 5))).toBe('TOO_MANY_SESSIONS');
    await stillAlive(c);
    c.destroy();
  });

  it('unknown business → OPEN_FAIL UNKNOWN_BUSINESS', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.open(1, 'no-such-business');
    expect(RawClient.codeOf(await c.next(FrameType.OPEN_FAIL, 1))).toBe('UNKNOWN_BUSINESS');
    await stillAlive(c);
    c.destroy();
  });

  it('an OPEN/RESET flood → GOAWAY RATE_LIMITED, then close; other connections unaffected', async () => {
    const bystander = await RawClient.handshake(stack.proxy.port, stack.token);
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    for (let id = 1; id <= 200; id++) {
      c.open(id);
      c.reset(id);
    }
    expect(RawClient.codeOf(await c.next(FrameType.GOAWAY))).toBe('RATE_LIMITED');
    await c.closed;
    await stillAlive(bystander);
    bystander.destroy();
  });
});

describe('after all of the above', () => {
  it('the proxy process is still serving and counted every protocol error by code', async () => {
    const c = await RawClient.handshake(stack.proxy.port, stack.token);
    c.open(1);
    await c.next(FrameType.OPEN_OK, 1);
    c.data(1, 'still here');
    expect((await c.next(FrameType.DATA, 1)).payload.toString()).toBe('still here');
    c.destroy();
    const metrics = await scrape(stack.proxy.adminPort);
    for (const code of ['BAD_MAGIC', 'AUTH_EXPIRED', 'UNKNOWN_SESSION', 'RATE_LIMITED', 'HANDSHAKE_TIMEOUT']) {
      expect(metrics).toMatch(new RegExp(`livemux_protocol_errors_total\\{code="${code}"\\} [1-9]`));
    }
    expect(stack.proxy.child.exitCode).toBeNull();
  });
});
